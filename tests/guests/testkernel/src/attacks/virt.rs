//! The virtualization instructions of both vendors, and MONITOR/MWAIT and
//! GETSEC, which this guest is not offered (CPUID has no SVM, VMX, SMX,
//! and EFER.SVME and CR4.VMXE read clear): each must raise #UD, as on a
//! CPU without them. An instruction the hypervisor intercepts for its own
//! sake must still look like that to the guest, not end the partition.
//!
//! At CPL 3 too: in VMX non-root operation VMX's instructions exit before
//! the CPU checks the CPL (SDM Vol. 2, VMXON's operation), so VMXON must
//! still raise #UD. SVM's are checked for the CPL before the intercept
//! (APM Vol. 2, "Instruction Intercepts"): on an AMD CPU, whose guest runs
//! with EFER.SVME set, VMRUN at CPL 3 raises #GP(0), not #UD
//! (docs/ARCHITECTURE.md §7); which one it was is reported.

use super::{Ctx, Failures, GP, Outcome, UD, is_vector, say};
use crate::hw::checked;
use crate::hw::{self, Fault};
use crate::ring3::{self, Routine};
use guest_testkernel::hostile::Tally;
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileVirt;
const ROUNDS: u32 = 3;

/// A page of zeros for the memory operands.
#[repr(C, align(4096))]
struct Scratch([u8; 4096]);
static SCRATCH: Scratch = Scratch([0; 4096]);

/// Runs an instruction with RAX and RCX at the given page; the fault taken.
type Raise = fn(u64) -> Option<Fault>;

/// (name, raise): the instruction with RAX and RCX at [`SCRATCH`].
fn instructions() -> [(&'static str, Raise); 20] {
    macro_rules! bytes {
        ($name:literal, $bytes:literal) => {
            ($name, |p: u64| checked!(concat!(".byte ", $bytes), inout("rax") p => _, inout("rcx") p => _, options(nostack)))
        };
    }
    [
        bytes!("VMRUN", "0x0f, 0x01, 0xd8"),
        bytes!("VMLOAD", "0x0f, 0x01, 0xda"),
        bytes!("VMSAVE", "0x0f, 0x01, 0xdb"),
        bytes!("STGI", "0x0f, 0x01, 0xdc"),
        bytes!("CLGI", "0x0f, 0x01, 0xdd"),
        bytes!("SKINIT", "0x0f, 0x01, 0xde"),
        bytes!("INVLPGA", "0x0f, 0x01, 0xdf"),
        bytes!("VMXON", "0xf3, 0x0f, 0xc7, 0x30"),
        bytes!("VMPTRLD", "0x0f, 0xc7, 0x30"),
        bytes!("VMCLEAR", "0x66, 0x0f, 0xc7, 0x30"),
        bytes!("VMPTRST", "0x0f, 0xc7, 0x38"),
        bytes!("VMREAD", "0x0f, 0x78, 0xc1"),
        bytes!("VMWRITE", "0x0f, 0x79, 0xc8"),
        bytes!("VMLAUNCH", "0x0f, 0x01, 0xc2"),
        bytes!("VMRESUME", "0x0f, 0x01, 0xc3"),
        bytes!("VMXOFF", "0x0f, 0x01, 0xc4"),
        bytes!("INVEPT", "0x66, 0x0f, 0x38, 0x80, 0x01"),
        bytes!("INVVPID", "0x66, 0x0f, 0x38, 0x81, 0x01"),
        bytes!("VMFUNC", "0x0f, 0x01, 0xd4"),
        bytes!("GETSEC", "0x0f, 0x37"),
    ]
}

pub fn run(_ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    let leaf1 = hw::cpuid(1, 0);
    let ext = hw::cpuid(0x8000_0001, 0);
    let offered = [("VMX", leaf1.ecx & (1 << 5)), ("SMX", leaf1.ecx & (1 << 6)), ("SVM", ext.ecx & (1 << 2))];
    for (name, bit) in offered {
        f.require(bit == 0, || detail!("CPUID offers {name}"));
    }
    let p = SCRATCH.0.as_ptr() as u64;
    for (name, raise) in instructions() {
        for _ in 0..ROUNDS {
            let fault = raise(p);
            t.note(fault.is_some());
            f.require(is_vector(fault, UD), || detail!("{name}: {fault:?}, expected #UD"));
        }
    }
    let p3 = ring3::user_data();
    let vmxon = ring3::call(Routine::Vmxon, 0, p3);
    let at = Routine::Vmxon.address();
    t.note(vmxon.rip == at);
    f.require((vmxon.vector, vmxon.rip) == (UD, at), || detail!("VMXON at CPL 3: {vmxon:x?}, expected #UD at {at:#x}"));
    let vmrun = ring3::call(Routine::Vmrun, 0, p3);
    let at = Routine::Vmrun.address();
    t.note(vmrun.rip == at);
    match (vmrun.vector, vmrun.error, vmrun.rip) {
        (UD, _, rip) if rip == at => say!(TEST, "VMRUN at CPL 3: #UD"),
        (GP, 0, rip) if rip == at => say!(TEST, "VMRUN at CPL 3: #GP(0) (the CPU checks the CPL first)"),
        _ => f.fail(detail!("VMRUN at CPL 3: {vmrun:x?}, expected #UD or #GP(0) at {at:#x}")),
    }
    // MONITOR and MWAIT: #UD unless CPUID.1:ECX.MONITOR.
    let monitor = leaf1.ecx & (1 << 3) != 0;
    let m = checked!(".byte 0x0f, 0x01, 0xc8", in("rax") p, in("ecx") 0, in("edx") 0, options(nostack));
    let w = checked!(".byte 0x0f, 0x01, 0xc9", in("eax") 0, in("ecx") 0, options(nostack));
    t.note(m.is_some());
    t.note(w.is_some());
    if monitor {
        say!(TEST, "MONITOR/MWAIT offered: MONITOR {m:?}, MWAIT {w:?}");
    } else {
        f.require(is_vector(m, UD) && is_vector(w, UD), || {
            detail!("MONITOR {m:?}, MWAIT {w:?} (not offered): #UD expected")
        });
    }
    f.finish(&t)
}
