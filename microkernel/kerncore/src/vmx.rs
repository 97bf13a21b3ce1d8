//! Intel VMX: VMCS field encodings, execution controls and their
//! adjustment to the CPU, and the VM-exit information decoders. Pure data;
//! the arch layer issues VMREAD, VMWRITE and VMLAUNCH with these.

mod controls;
mod exit;
mod fields;

pub use controls::*;
pub use exit::*;
pub use fields::*;

#[cfg(test)]
mod tests;
