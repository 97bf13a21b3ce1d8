//! The processor's decoding mode (SDM Vol. 1 §3.6.1, Vol. 3A §2.2; APM
//! Vol. 2 §1.2): shared by the VID's decoder and ring 0, which completes
//! the instructions it handles itself.

/// The decoding mode, which fixes the default operand and address sizes
/// and the width the instruction pointer wraps at.
///
/// | mode | CPU state | default operand / address size |
/// | --- | --- | --- |
/// | `Real16` | CR0.PE = 0, or virtual-8086 mode | 16 / 16 |
/// | `Protected16` | protected or compatibility mode, CS.D = 0 | 16 / 16 |
/// | `Protected32` | protected or compatibility mode, CS.D = 1 | 32 / 32 |
/// | `Long64` | EFER.LMA = 1 and CS.L = 1 | 32 / 64 |
///
/// `Real16` and `Protected16` decode identically; they are distinct so a
/// caller computing the linear address knows which segmentation applies.
/// [`CpuMode::from_state`] derives the mode from the guest's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuMode {
    Real16,
    Protected16,
    Protected32,
    Long64,
}

/// The guest state bits that select a [`CpuMode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModeState {
    /// CR0.PE.
    pub cr0_pe: bool,
    /// RFLAGS.VM (virtual-8086 mode; meaningless in long mode).
    pub rflags_vm: bool,
    /// EFER.LMA.
    pub efer_lma: bool,
    /// CS.L, the long-mode bit of the CS descriptor.
    pub cs_l: bool,
    /// CS.D, the default-size bit of the CS descriptor.
    pub cs_d: bool,
}

impl CpuMode {
    /// The mode the CPU decodes in for this state. In real mode the
    /// attributes of CS are not consulted; with EFER.LMA = 1 and CS.L = 0 the
    /// CPU is in compatibility mode, which decodes as protected mode.
    pub const fn from_state(state: ModeState) -> CpuMode {
        if !state.cr0_pe {
            CpuMode::Real16
        } else if state.efer_lma && state.cs_l {
            CpuMode::Long64
        } else if state.rflags_vm && !state.efer_lma {
            CpuMode::Real16
        } else if state.cs_d {
            CpuMode::Protected32
        } else {
            CpuMode::Protected16
        }
    }

    /// The mask the instruction pointer wraps at: IP in 16-bit code, EIP
    /// in 32-bit code (SDM Vol. 1 §3.5 and §3.6.1), RIP in 64-bit code.
    pub const fn ip_mask(self) -> u64 {
        match self {
            CpuMode::Long64 => u64::MAX,
            CpuMode::Protected32 => 0xffff_ffff,
            CpuMode::Real16 | CpuMode::Protected16 => 0xffff,
        }
    }

    /// The instruction pointer after an instruction of `len` bytes at
    /// `rip`: it wraps within the mode's width, and the bits above it
    /// stay.
    pub const fn next_ip(self, rip: u64, len: u64) -> u64 {
        let mask = self.ip_mask();
        (rip & !mask) | (rip.wrapping_add(len) & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(cr0_pe: bool, rflags_vm: bool, efer_lma: bool, cs_l: bool, cs_d: bool) -> ModeState {
        ModeState { cr0_pe, rflags_vm, efer_lma, cs_l, cs_d }
    }

    #[test]
    fn the_mode_follows_pe_vm_lma_and_cs() {
        assert_eq!(CpuMode::from_state(state(false, false, false, false, true)), CpuMode::Real16);
        assert_eq!(CpuMode::from_state(state(true, true, false, false, true)), CpuMode::Real16, "virtual-8086");
        assert_eq!(CpuMode::from_state(state(true, false, true, true, false)), CpuMode::Long64);
        assert_eq!(CpuMode::from_state(state(true, false, true, false, true)), CpuMode::Protected32, "compatibility");
        assert_eq!(CpuMode::from_state(state(true, false, false, false, false)), CpuMode::Protected16);
    }

    #[test]
    fn the_instruction_pointer_wraps_at_the_modes_width() {
        assert_eq!(CpuMode::Real16.next_ip(0xfffe, 3), 0x0001);
        assert_eq!(CpuMode::Protected16.next_ip(0x1_fffe, 3), 0x1_0001, "bits above IP stay");
        assert_eq!(CpuMode::Protected32.next_ip(0xffff_fffe, 3), 0x0000_0001);
        assert_eq!(CpuMode::Protected32.next_ip(0xfffe, 3), 0x1_0001);
        assert_eq!(CpuMode::Long64.next_ip(0xffff_fffe, 3), 0x1_0000_0001);
        assert_eq!(CpuMode::Long64.next_ip(u64::MAX, 1), 0);
    }
}
