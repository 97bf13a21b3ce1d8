//! The VMX VP: its VMCS and software state, and the backend's operations
//! (`vm::VpOps`), each written in the module named for it.

use super::{events, registers, run, vmcs};
use crate::arch::memory;
use crate::arch::vm::{EntryFlush, ExecutionState, Exit, GuestGprs, VpOps};
use kerncore::event::Interruption;
use kerncore::frames::Frames;
use kerncore::tags::VpTag;
use kerncore::vmx::msr as cap_msr;
use tlfs::HvRegisterName;

/// Software state of a VP's VMCS.
pub(super) struct VpState {
    /// VMLAUNCH succeeded since the last VMCLEAR: the next entry is VMRESUME.
    pub(super) launched: bool,
    /// Setting the VMCS up failed with this code: the VP cannot run.
    pub(super) broken: Option<u64>,
    pub(super) eptp: u64,
    /// The VPID in the VMCS, and the one it holds on its CPU (`kerncore::tags`).
    pub(super) vpid: u16,
    pub(super) tag: VpTag,
    /// The CPU whose state the VMCS's host fields hold.
    pub(super) host_cpu: usize,
    /// Guest state VMX does not switch, loaded around each entry.
    pub(super) cr2: u64,
    pub(super) dr6: u64,
    pub(super) kernel_gs_base: u64,
    /// The guest's STAR, LSTAR, CSTAR and SFMASK.
    pub(super) syscall: [u64; 4],
}

/// STAR, LSTAR, CSTAR, SFMASK: the MSRs of SYSCALL, in `VpState::syscall` order.
pub(super) const SYSCALL_MSRS: [u32; 4] =
    [cap_msr::IA32_STAR, cap_msr::IA32_LSTAR, cap_msr::IA32_CSTAR, cap_msr::IA32_FMASK];

/// A VP under VMX: its VMCS, one frame the kernel owns, and the software
/// state that goes with it.
pub struct Vp {
    vmcs: Frames,
    /// `None` until the VMCS is first set up (`init`).
    state: Option<VpState>,
}

impl VpOps for Vp {
    fn new() -> Option<Vp> {
        memory::alloc_frames(1).map(|vmcs| Vp { vmcs, state: None })
    }

    fn init(&mut self, ept_root: u64, vpid: u32) {
        self.state = Some(vmcs::init_vmcs(self.vmcs.start(), self.state.is_some(), ept_root, vpid));
    }

    fn run(&mut self, gprs: &mut GuestGprs, flush: EntryFlush) -> Exit {
        run::run(self.vmcs.start(), self.state.as_mut(), gprs, flush)
    }

    fn get_register(&mut self, gprs: &mut GuestGprs, name: HvRegisterName) -> Option<(u64, u64)> {
        registers::get_register(self.vmcs.start(), self.state.as_ref(), gprs, name)
    }

    fn set_register(&mut self, gprs: &mut GuestGprs, name: HvRegisterName, low: u64, high: u64) -> bool {
        registers::set_register(self.vmcs.start(), self.state.as_mut(), gprs, name, low, high)
    }

    fn writable(&mut self, gprs: &mut GuestGprs, name: HvRegisterName) -> bool {
        registers::writable(self.state.is_some(), gprs, name)
    }

    fn general_registers(&mut self, gprs: &mut GuestGprs) -> [u64; 16] {
        // RSP is the VMCS's; the others are switched by software.
        let rsp = self.get_register(gprs, HvRegisterName::RSP).map_or(0, |(low, _)| low);
        gprs.in_exit_order(gprs.rax, rsp)
    }

    fn inject(&mut self, event: &Interruption) -> bool {
        events::inject(self.vmcs.start(), event)
    }

    fn request_window(&mut self, open: bool) {
        events::request_window(self.vmcs.start(), open);
    }

    /// Interrupts go in by VM-entry injection when the window opens.
    fn offers(&self, _: &Interruption) -> bool {
        false
    }

    fn offer(&mut self, _: &Interruption) {}

    fn offer_taken(&mut self) -> bool {
        false
    }

    fn execution_state(&mut self) -> ExecutionState {
        registers::execution_state(self.vmcs.start())
    }

    fn intercept_debug_registers(&mut self, on: bool) {
        vmcs::intercept_debug_registers(self.vmcs.start(), on);
    }

    fn set_pdptes(&mut self, pdptes: [u64; 4]) {
        registers::set_pdptes(self.vmcs.start(), pdptes);
    }

    fn leave_cpu(&mut self) -> u64 {
        match self.state.as_mut() {
            Some(state) => {
                // VMCLEAR on the old CPU: the next entry is a VMLAUNCH.
                state.launched = false;
                self.vmcs.start()
            }
            None => 0,
        }
    }

    fn release(self) {
        vmcs::release(self.vmcs.start(), self.state.is_some());
        memory::free_frames(self.vmcs);
    }
}
