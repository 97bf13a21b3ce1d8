//! The one seam between the kernel's partitions and virtual processors and
//! the two hardware backends: AMD SVM with nested paging (`svm.rs`) and
//! Intel VMX with EPT (`vmx.rs`). Above this module nothing knows which CPU
//! it runs on; exits arrive as backend-neutral [`Exit`]s and registers are
//! named by TLFS register names.

use super::{memory, svm};
use kerncore::event::Interruption;
use kerncore::frames::Frames;
use kerncore::intercept::IoPortAccess;
use kerncore::npt::{NptFormat, NptMapper};
use kerncore::slat::{GuestMapError, GuestRights, RemovedMapping, SlatConfig};
use kerncore::tags::{Entry as TagEntry, TagPool, VpTag};
use kerncore::virt::VirtSupport;
use kerncore::xstate::XCR0_RESET;
use tlfs::HvRegisterName;
use tlfs::exit_state::ExitState;

pub use svm::GuestGprs;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Svm,
    Vmx,
}

/// The backend this CPU offers, if the kernel can run guests on it.
pub fn backend() -> Option<Backend> {
    match crate::boot::virt_support()? {
        VirtSupport::Svm(s) if s.features.nested_paging() => Some(Backend::Svm),
        VirtSupport::Vmx(v) if v.has_usable_ept() && super::vmx::IMPLEMENTED => Some(Backend::Vmx),
        _ => None,
    }
}

/// Turns the backend on for this CPU (idempotent).
pub fn enable() -> Result<Backend, &'static str> {
    match backend() {
        Some(Backend::Svm) => svm::enable().map(|()| Backend::Svm),
        Some(Backend::Vmx) => super::vmx::enable().map(|()| Backend::Vmx),
        None => Err("this CPU cannot run guests with the implemented backends"),
    }
}

/// CR4 bits a guest may set (`kerncore::cr::cr4_offered`): those of the
/// features this CPU has (and, under VMX, allows in VMX operation).
pub fn cr4_offered() -> u64 {
    static OFFERED: spin::Once<u64> = spin::Once::new();
    *OFFERED.call_once(|| {
        let leaf1 = x86::cpuid::cpuid!(1);
        let max = x86::cpuid::cpuid!(0).eax;
        let leaf7 = if max >= 7 {
            x86::cpuid::cpuid!(7, 0)
        } else {
            x86::cpuid::CpuIdResult { eax: 0, ebx: 0, ecx: 0, edx: 0 }
        };
        let features = kerncore::cr::Cr4Features::from_cpuid(leaf1.ecx, leaf7.ebx, leaf7.ecx);
        kerncore::cr::cr4_offered(features) & super::vmx::cr4_settable()
    })
}

/// How the guest touched memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Execute,
}

/// Why a VP stopped running, whatever the hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// A host interrupt, NMI or the preemption timer: ring 0's business.
    HostInterrupt,
    /// The guest can now take the interrupt that waited (ring 0 injects it).
    InterruptWindow,
    Io(IoPortAccess),
    Cpuid,
    Hlt,
    /// VMCALL (Intel) or VMMCALL (AMD).
    Hypercall,
    Msr {
        write: bool,
    },
    /// Second-level translation failed: `mapped` if a mapping exists but
    /// lacks the right (e.g. a write to read-only memory).
    GuestMemory {
        gpa: u64,
        access: Access,
        mapped: bool,
    },
    /// Triple fault or shutdown.
    Shutdown,
    /// XSETBV: ring 0 emulates it against the state it can switch.
    Xsetbv,
    /// INVD or WBINVD: never executed for a guest (ring 0 skips it).
    CacheFlush,
    /// RDPMC: no performance counters are offered (ring 0 raises #GP).
    Rdpmc,
    /// An instruction the guest is not offered (SVM, VMX, SMX,
    /// MONITOR/MWAIT) that exits anyway: ring 0 raises #UD, as a CPU
    /// without it does, and RIP stays.
    NotOffered,
    /// A debug-register access while they are intercepted (the VP's
    /// first): ring 0 lets them through and the access runs again.
    DebugRegister,
    /// An intercepted exception (`kerncore::intercept::REFLECTED_EXCEPTIONS`)
    /// to deliver to the guest as it is: the backend has already done what
    /// delivery does to DR6 and DR7.
    Exception(Interruption),
    /// A write to CR0 or CR4 (MOV, CLTS, LMSW) that ring 0 emulates with
    /// the SDM's checks (`kerncore::cr`).
    ControlRegister(CrAccess),
    /// A machine check while the guest ran (intercepted: the host's).
    MachineCheck,
    /// Anything else, with the backend's own exit code.
    Other(u64),
}

/// The control-register write an exit stopped at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrAccess {
    /// MOV to CR`cr` from the general-purpose register numbered `gpr`.
    Mov {
        cr: u8,
        gpr: u8,
    },
    Clts,
    /// LMSW with this source operand.
    Lmsw(u16),
    /// A write to CR`cr` the CPU did not decode (SVM without decode
    /// assists): ring 0 decodes it from the guest's memory.
    Undecoded {
        cr: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub reason: ExitReason,
    pub rip: u64,
    /// Length of the exiting instruction; 0 if the hardware did not say.
    pub instruction_length: u8,
    /// An event whose delivery the exit cut short, to deliver again.
    pub interrupted: Option<Interruption>,
}

/// The guest's execution state for intercept message headers.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecutionState {
    pub cpl: u8,
    pub cr0: u64,
    pub efer: u64,
    pub rflags: u64,
}

/// What an intercept message's header takes from the VP.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterceptState {
    pub execution: ExecutionState,
    /// CS as a TLFS 128-bit value.
    pub cs: (u64, u64),
    pub interrupt_shadow: bool,
}

/// What each backend does for one VP. `svm::Vp` and `vmx::Vp` implement it,
/// each owning its VMCB or VMCS frame (and, for VMX, the guest state the
/// hardware does not switch); [`BackendVp`] is the one place a call is
/// routed to one of them.
pub trait VpOps: Sized {
    /// A VP of this backend, its frame freshly allocated; `None` without memory.
    fn new() -> Option<Self>;
    /// Prepares the state for a partition whose second-level tables are at
    /// `slat_root`, tagged `tag` (ASID or VPID), as after INIT.
    fn init(&mut self, slat_root: u64, tag: u32);
    /// Runs the guest until it exits, first flushing what `flush` says.
    /// Host interrupts that arrived are left pending for the caller.
    fn run(&mut self, gprs: &mut GuestGprs, flush: EntryFlush) -> Exit;
    /// A register as a TLFS 128-bit value (low, high); `None` if this
    /// backend does not keep it.
    fn get_register(&mut self, gprs: &mut GuestGprs, name: HvRegisterName) -> Option<(u64, u64)>;
    /// Sets a register from a TLFS 128-bit value; false if unsupported.
    fn set_register(&mut self, gprs: &mut GuestGprs, name: HvRegisterName, low: u64, high: u64) -> bool;
    /// Whether [`set_register`](VpOps::set_register) takes a value for
    /// `name` (it checks no value); changes nothing.
    fn writable(&mut self, gprs: &mut GuestGprs, name: HvRegisterName) -> bool;
    /// The state `mask` sends with an exit, laid out in `out`; returns the
    /// words used. A backend may read it in one go.
    fn exit_state(&mut self, gprs: &mut GuestGprs, mask: ExitState, out: &mut [u64]) -> usize {
        mask.fill(out, |name| self.get_register(gprs, name))
    }
    /// The sixteen general registers in `tlfs::exit_state::GPRS` order,
    /// read in one go: what intercept messages carry.
    fn general_registers(&mut self, gprs: &mut GuestGprs) -> [u64; 16];
    /// What an intercept message's header takes; a backend may read it in
    /// one go.
    fn intercept_state(&mut self, gprs: &mut GuestGprs) -> InterceptState {
        let shadow = self.get_register(gprs, HvRegisterName::INTERRUPT_STATE);
        InterceptState {
            execution: self.execution_state(),
            cs: self.get_register(gprs, HvRegisterName::CS).unwrap_or((0, 0)),
            interrupt_shadow: shadow
                .is_some_and(|(s, _)| tlfs::HvX64InterruptStateRegister::from_bits(s).interrupt_shadow()),
        }
    }
    /// DS and ES as TLFS 128-bit values (an I/O port intercept's); a
    /// backend may read them in one go.
    fn data_segments(&mut self, gprs: &mut GuestGprs) -> [(u64, u64); 2] {
        [HvRegisterName::DS, HvRegisterName::ES].map(|name| self.get_register(gprs, name).unwrap_or((0, 0)))
    }
    /// Injects `event` at the next entry if the guest can take it now
    /// (true); otherwise arranges an interrupt-window exit (false).
    fn inject(&mut self, event: &Interruption) -> bool;
    /// Asks for (or stops asking for) an exit when the guest can take an
    /// interrupt; withdraws an offer.
    fn request_window(&mut self, open: bool);
    /// Whether `event` can wait in the hardware for the guest to take it
    /// by itself, with no exit: SVM's virtual interrupt (V_IRQ) for an
    /// external interrupt.
    fn offers(&self, event: &Interruption) -> bool;
    /// Holds `event`, one [`offers`](VpOps::offers) accepts, for the guest
    /// to take as soon as RFLAGS.IF and no interrupt shadow allow.
    fn offer(&mut self, event: &Interruption);
    /// After an exit: the offered interrupt was taken.
    fn offer_taken(&mut self) -> bool;
    /// CPL and mode bits for intercept messages.
    fn execution_state(&mut self) -> ExecutionState;
    /// Intercepts (or stops intercepting) every debug-register access.
    fn intercept_debug_registers(&mut self, on: bool);
    /// The four PDPTEs PAE paging uses from the next entry, loaded from
    /// guest memory by ring 0's emulation of a CR write (VMX keeps them
    /// in the VMCS; SVM's nested paging reads them from memory).
    fn set_pdptes(&mut self, pdptes: [u64; 4]);
    /// The VP moves to another CPU: returns the VMCS its old CPU must
    /// VMCLEAR (0: nothing to clear); its next entry starts afresh.
    fn leave_cpu(&mut self) -> u64;
    /// Forgets the VP in the hardware and frees its frame.
    fn release(self);
}

/// A VP of either backend.
enum BackendVp {
    Svm(svm::Vp),
    Vmx(super::vmx::Vp),
}

/// Routes `$call` on the VP of whichever backend `$vp` holds, named `$b`.
macro_rules! on_backend {
    ($vp:expr, $b:ident => $call:expr) => {
        match $vp {
            BackendVp::Svm($b) => $call,
            BackendVp::Vmx($b) => $call,
        }
    };
}

impl BackendVp {
    fn new(backend: Backend) -> Option<BackendVp> {
        match backend {
            Backend::Svm => svm::Vp::new().map(BackendVp::Svm),
            Backend::Vmx => super::vmx::Vp::new().map(BackendVp::Vmx),
        }
    }

    fn kind(&self) -> Backend {
        match self {
            BackendVp::Svm(_) => Backend::Svm,
            BackendVp::Vmx(_) => Backend::Vmx,
        }
    }

    fn init(&mut self, slat_root: u64, tag: u32) {
        on_backend!(self, b => b.init(slat_root, tag))
    }

    fn run(&mut self, gprs: &mut GuestGprs, flush: EntryFlush) -> Exit {
        on_backend!(self, b => b.run(gprs, flush))
    }

    fn get_register(&mut self, gprs: &mut GuestGprs, name: HvRegisterName) -> Option<(u64, u64)> {
        on_backend!(self, b => b.get_register(gprs, name))
    }

    fn set_register(&mut self, gprs: &mut GuestGprs, name: HvRegisterName, low: u64, high: u64) -> bool {
        on_backend!(self, b => b.set_register(gprs, name, low, high))
    }

    fn writable(&mut self, gprs: &mut GuestGprs, name: HvRegisterName) -> bool {
        on_backend!(self, b => b.writable(gprs, name))
    }

    fn exit_state(&mut self, gprs: &mut GuestGprs, mask: ExitState, out: &mut [u64]) -> usize {
        on_backend!(self, b => b.exit_state(gprs, mask, out))
    }

    fn general_registers(&mut self, gprs: &mut GuestGprs) -> [u64; 16] {
        on_backend!(self, b => b.general_registers(gprs))
    }

    fn intercept_state(&mut self, gprs: &mut GuestGprs) -> InterceptState {
        on_backend!(self, b => b.intercept_state(gprs))
    }

    fn data_segments(&mut self, gprs: &mut GuestGprs) -> [(u64, u64); 2] {
        on_backend!(self, b => b.data_segments(gprs))
    }

    fn inject(&mut self, event: &Interruption) -> bool {
        on_backend!(self, b => b.inject(event))
    }

    fn request_window(&mut self, open: bool) {
        on_backend!(self, b => b.request_window(open))
    }

    fn offers(&self, event: &Interruption) -> bool {
        on_backend!(self, b => b.offers(event))
    }

    fn offer(&mut self, event: &Interruption) {
        on_backend!(self, b => b.offer(event))
    }

    fn offer_taken(&mut self) -> bool {
        on_backend!(self, b => b.offer_taken())
    }

    fn execution_state(&mut self) -> ExecutionState {
        on_backend!(self, b => b.execution_state())
    }

    fn intercept_debug_registers(&mut self, on: bool) {
        on_backend!(self, b => b.intercept_debug_registers(on))
    }

    fn set_pdptes(&mut self, pdptes: [u64; 4]) {
        on_backend!(self, b => b.set_pdptes(pdptes))
    }

    fn leave_cpu(&mut self) -> u64 {
        on_backend!(self, b => b.leave_cpu())
    }

    fn release(self) {
        on_backend!(self, b => b.release())
    }
}

/// A VP's hardware state: the backend's VP and what is the same on both
/// backends, the registers the hardware does not switch.
pub struct VpHardware {
    backend: BackendVp,
    /// The extended-state save area (see `fpu`). Its address also names the
    /// VP to `fpu` and `dr`.
    fpu: Frames,
    /// The guest's XCR0.
    xcr0: u64,
    /// The guest's DR0-DR3, and whether they are switched (see `dr`).
    dr: [u64; 4],
    dr_active: bool,
    pub gprs: GuestGprs,
    /// The CPU whose caches may hold its state (VMCS, extended state).
    cpu: usize,
    /// It came from another CPU: flush what this one cached for its tags.
    moved: bool,
    /// See [`take_interrupted`](VpHardware::take_interrupted).
    interrupted: Option<Interruption>,
    /// An interrupt offered to the guest (see [`VpOps::offer`]).
    offer: Offer,
    /// The second-level tables of the active VTL's view (`init`), for
    /// ring 0's reads of guest memory.
    slat_root: u64,
    /// The active VTL (TLFS 15): whose context `backend` is.
    vtl: u8,
    /// The other VTL's context, once VTL 1 is enabled (`enable_vtl`).
    parked: Option<ParkedContext>,
}

/// The context of the VTL that is not running (TLFS 15.11): its own VMCB
/// or VMCS, its view, and what ring 0 keeps beside it for its events.
struct ParkedContext {
    vtl: u8,
    backend: BackendVp,
    slat_root: u64,
    offer: Offer,
    interrupted: Option<Interruption>,
}

/// Leaves a context active on no CPU (VMCLEAR here), as a parked one
/// must be: only the active context is handed over between CPUs (`claim`).
fn park(backend: &mut BackendVp) {
    let vmcs = backend.leave_cpu();
    if vmcs != 0 {
        super::vmx::release_here(vmcs);
    }
}

/// The registers every VTL shares (TLFS 15.11.2) that a backend may keep
/// in its context rather than in [`GuestGprs`] (RBX..R15), the extended
/// state, DR0-DR3 or XCR0, which a VP has one of: a VTL switch carries
/// them over. RAX is the VMCB's on SVM, CR2 the VMCB's or the VMX state's.
const SHARED_IN_CONTEXT: [HvRegisterName; 2] = [HvRegisterName::RAX, HvRegisterName::CR2];

/// Where an offered interrupt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offer {
    None,
    /// This vector, offered at the last entry, not taken when the guest
    /// last exited.
    Waiting(u8),
    /// Taken (or its delivery cut short by the exit: `interrupted` holds
    /// it), and not yet seen by `take_offer_taken`.
    Taken,
}

/// What an entry flushes from the TLBs of its CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct EntryFlush {
    /// Everything cached for the partition's second-level tables (they
    /// changed since this CPU last ran one of its VPs).
    pub partition: bool,
    /// The VP's own translations: it takes a fresh ASID or VPID.
    pub vp: bool,
}

/// Each CPU's ASIDs or VPIDs (`kerncore::tags`), made at its first entry
/// with the backend's count.
static TAG_POOLS: super::percpu::CpuLocal<Option<TagPool>> = super::percpu::CpuLocal::empty();

/// The tag `vp` enters with on this CPU, out of `count` (see
/// `kerncore::tags`), with interrupts off, just before the entry. The
/// CPU's first entry flushes every tag: whatever ran before the kernel
/// leaves nothing.
pub fn enter_tag(vp: &mut VpTag, fresh: bool, count: u32) -> TagEntry {
    TAG_POOLS.with(|pool| {
        let first = pool.is_none();
        let entry = pool.get_or_insert_with(|| TagPool::new(count)).enter(vp, fresh);
        TagEntry { flush_all: entry.flush_all || first, reused: entry.reused || first, ..entry }
    })
}

/// Gives up VP state on this CPU for the lock holder on another
/// (`ipi::release_vp_on`): VMCLEAR `vmcs` (0: none), save the extended
/// state of area `id` if the registers hold it, forget its DR0-DR3.
pub fn release_here(vmcs: u64, id: u64) {
    if vmcs != 0 {
        super::vmx::release_here(vmcs);
    }
    super::fpu::give_up(id);
    super::dr::forget(id);
}

/// Runs the guest of `hw`, which the caller [`prepare`](VpHardware::prepare)d,
/// after dropping the kernel lock; host interrupts that arrived are left
/// pending.
pub fn run_unlocked(hw: *mut VpHardware, flush: EntryFlush) -> Exit {
    // SAFETY: `hw` points into the static kernel state, where the VP stays
    // until it is destroyed. This CPU announced it in guest mode
    // (`ipi::leaving`) before it dropped the lock, and every other CPU
    // claims a VP (`VpHardware::claim`, under the lock) before it touches
    // or frees it, which waits until this CPU is back (`ipi::back`): until
    // then this is the only access.
    unsafe { (*hw).run(flush) }
}

/// Frames a VP's hardware state takes (the VMCB or VMCS, the
/// extended-state area, and the VMCB or VMCS of VTL 1 once it is
/// enabled): `abi::cost::VP` pays for them.
const VP_FRAMES: u64 = 3;
const _: () = assert!(abi::cost::VP == abi::cost::POOL_ENTRY + VP_FRAMES);

impl VpHardware {
    pub fn new(backend: Backend) -> Option<VpHardware> {
        // This CPU runs it first: VMX or SVM must be on here (the boot CPU
        // turns it on lazily, and a partition may be made on another CPU).
        enable().ok()?;
        let backend = BackendVp::new(backend)?;
        let Some(fpu) = memory::alloc_frames(1) else {
            backend.release();
            return None;
        };
        super::fpu::init(fpu.start());
        Some(VpHardware {
            backend,
            fpu,
            xcr0: XCR0_RESET,
            dr: [0; 4],
            dr_active: false,
            gprs: GuestGprs::default(),
            cpu: super::percpu::index(),
            moved: false,
            interrupted: None,
            offer: Offer::None,
            slat_root: 0,
            vtl: 0,
            parked: None,
        })
    }

    /// Makes this CPU the only one with the VP's state, before anything
    /// reads or writes it: waits until no other CPU runs it in guest mode
    /// (kicking it out), then has the CPU it last ran on give its state up.
    /// Only the holder of the kernel lock calls this.
    ///
    /// A VP whose state is already this CPU's runs nowhere else: a CPU
    /// enters a VP only after claiming it, under the lock, and this CPU,
    /// holding the lock in ring 0, is not in guest mode. Only a VP held
    /// elsewhere needs the wait (every register access claims).
    #[inline]
    fn claim(&mut self) {
        let here = super::percpu::index();
        if self.cpu != here {
            self.claim_from(here);
        }
    }

    #[inline(never)]
    fn claim_from(&mut self, here: usize) {
        super::ipi::wait_out(super::ipi::Outside::Guest(self.id()));
        // Every CPU that schedules has VMX or SVM on (an AP that could
        // not turn it on stays parked) but the boot CPU, lazily.
        let _ = enable();
        let vmcs = self.backend.leave_cpu();
        super::ipi::release_vp_on(self.cpu, vmcs, self.id());
        (self.cpu, self.moved) = (here, true);
    }

    /// Takes the VP out of guest mode on every CPU and gives its state to
    /// this one (before it is destroyed).
    pub fn quiesce(&mut self) {
        self.claim();
    }

    /// An event the last exit cut short, to deliver again; kept here by the
    /// CPU that ran the VP, so that an exit dropped for a VP stopped or
    /// moved meanwhile does not lose it.
    pub fn take_interrupted(&mut self) -> Option<Interruption> {
        self.interrupted.take()
    }

    /// Claims the VP for an entry on this CPU; returns what the entry must
    /// flush: `partition` (this CPU's cached translations of the
    /// partition are stale: VMX flushes them by EPTP), `vp` (the VP's own
    /// are: it takes a fresh tag), or both for a VP new to this CPU.
    pub fn prepare(&mut self, partition: bool, vp: bool) -> EntryFlush {
        self.claim();
        let moved = core::mem::take(&mut self.moved);
        EntryFlush { partition: partition || moved, vp: vp || moved }
    }

    /// The name `ipi` and `dr` know this VP by.
    pub fn name(&self) -> u64 {
        self.id()
    }

    /// The VP's name for `dr`.
    fn id(&self) -> u64 {
        self.fpu.start()
    }

    /// Prepares the state for a partition whose second-level tables are at
    /// `slat_root`, tagged `tag` (ASID or VPID).
    fn init(&mut self, slat_root: u64, tag: u32) {
        self.claim();
        self.backend.init(slat_root, tag);
        self.slat_root = slat_root;
        // As after INIT: XCR0 and DR0-DR3 at their reset values (x87 and
        // SSE state is kept), debug registers intercepted again.
        self.xcr0 = XCR0_RESET;
        self.dr = [0; 4];
        self.dr_active = false;
        super::dr::forget(self.id());
    }

    /// As [`init`](Self::init), and as at power-on (SDM 3A 10.1 table
    /// 10-1) also the general-purpose registers, x87, SSE and AVX state,
    /// and what an exit left to deliver: nothing of its last run stays.
    /// The VP leaves with VTL 0 alone, as every VP starts (TLFS 15.3.4).
    pub fn power_on(&mut self, slat_root: u64, tag: u32) {
        self.claim();
        if self.vtl != 0 {
            self.switch_vtl(0);
        }
        if let Some(parked) = self.parked.take() {
            parked.backend.release();
        }
        self.init(slat_root, tag);
        super::fpu::forget(self.fpu.start());
        super::fpu::init(self.fpu.start());
        self.gprs = GuestGprs::default();
        (self.interrupted, self.offer) = (None, Offer::None);
    }

    /// Runs the guest until it exits (see [`run_unlocked`]).
    fn run(&mut self, flush: EntryFlush) -> Exit {
        super::fpu::load(self.fpu.start(), self.xcr0);
        if self.dr_active {
            super::dr::load(self.id(), &self.dr);
        }
        let exit = self.backend.run(&mut self.gprs, flush);
        if let Some(event) = exit.interrupted {
            self.interrupted = Some(event);
        }
        if let Offer::Waiting(vector) = self.offer {
            // An exit in the middle of its delivery (a nested page fault
            // on the stack or IDT) reports it as cut short, to deliver
            // again, and QEMU leaves V_IRQ set: it is no longer offered.
            let cut_short = exit.interrupted.is_some_and(|e| e.is_maskable() && e.vector == vector);
            if cut_short {
                self.backend.request_window(false);
            }
            if cut_short || self.backend.offer_taken() {
                self.offer = Offer::Taken;
            }
        }
        self.xcr0 = super::fpu::unload(self.xcr0);
        if self.dr_active {
            super::dr::save(&mut self.dr);
        }
        exit
    }

    /// Stops intercepting debug-register accesses: from the next entry the
    /// VP's DR0-DR3 are in the hardware whenever it runs.
    pub fn activate_debug_registers(&mut self) {
        self.claim();
        if !self.dr_active {
            self.dr_active = true;
            super::dr::forget(self.id());
            self.backend.intercept_debug_registers(false);
        }
    }

    /// The guest's XCR0 from now on: a value `kerncore::xstate::xsetbv`
    /// accepted against [`super::fpu::offered`].
    pub fn set_xcr0(&mut self, value: u64) {
        self.xcr0 = value;
    }

    pub fn get(&mut self, name: HvRegisterName) -> Option<(u64, u64)> {
        self.claim();
        if let Some(n) = name.xmm_index() {
            return Some(super::fpu::xmm(self.fpu.start(), n));
        }
        let hardware = self.backend.get_register(&mut self.gprs, name);
        // Registers kept here, asked for seldom: after the backend's.
        hardware.or_else(|| match name.dr_index() {
            Some(n) => Some((self.dr[n], 0)),
            None => (name == HvRegisterName::XFEM).then_some((self.xcr0, 0)),
        })
    }

    /// The state `mask` sends with an exit, laid out in `out` (the words
    /// after the message); returns the words used. The groups hold no
    /// register kept here ([`VpHardware::get`]'s XMM, DR0-DR3, XFEM).
    pub fn exit_state(&mut self, mask: ExitState, out: &mut [u64]) -> usize {
        self.claim();
        self.backend.exit_state(&mut self.gprs, mask, out)
    }

    /// See [`VpOps::general_registers`].
    pub fn general_registers(&mut self) -> [u64; 16] {
        self.claim();
        self.backend.general_registers(&mut self.gprs)
    }

    /// See [`VpOps::intercept_state`].
    pub fn intercept_state(&mut self) -> InterceptState {
        self.claim();
        self.backend.intercept_state(&mut self.gprs)
    }

    /// See [`VpOps::data_segments`].
    pub fn data_segments(&mut self) -> [(u64, u64); 2] {
        self.claim();
        self.backend.data_segments(&mut self.gprs)
    }

    /// The XCR0 a VMM's XFEM value `low` sets: its own, or one XSETBV
    /// would accept against [`super::fpu::offered`]; `None` if refused.
    fn xfem(&self, low: u64) -> Option<u64> {
        if low == self.xcr0 { Some(low) } else { kerncore::xstate::xsetbv(0, low, 0, true, super::fpu::offered()).ok() }
    }

    /// Whether [`set`](Self::set) would take `low` for `name`; changes
    /// nothing. A reply's registers are all checked before any is set.
    pub fn accepts(&mut self, name: HvRegisterName, low: u64) -> bool {
        // The general registers, RIP and RFLAGS (a reply's usual ones):
        // every backend writes them, any value.
        if (HvRegisterName::RAX.0..=HvRegisterName::RFLAGS.0).contains(&name.0) {
            return true;
        }
        self.claim();
        if name.xmm_index().is_some() {
            return true;
        }
        if name == HvRegisterName::XFEM {
            return self.xfem(low).is_some();
        }
        if refused(name, low) {
            return false;
        }
        name.dr_index().is_some() || self.backend.writable(&mut self.gprs, name)
    }

    pub fn set(&mut self, name: HvRegisterName, low: u64, high: u64) -> bool {
        self.claim();
        if let Some(n) = name.xmm_index() {
            super::fpu::set_xmm(self.fpu.start(), n, low, high);
            return true;
        }
        if let Some(n) = name.dr_index() {
            if refused(name, low) {
                return false;
            }
            self.dr[n] = low;
            super::dr::forget(self.id());
            self.activate_debug_registers();
            return true;
        }
        if name == HvRegisterName::XFEM {
            let Some(value) = self.xfem(low) else { return false };
            self.xcr0 = value;
            return true;
        }
        if refused(name, low) {
            return false;
        }
        if name == HvRegisterName::DR7 {
            // Breakpoints it enables must find the VP's own DR0-DR3.
            self.activate_debug_registers();
        }
        self.backend.set_register(&mut self.gprs, name, low, high)
    }

    /// Injects `event` at the next entry if the guest can take it now
    /// (true); otherwise arranges an interrupt-window exit (false).
    pub fn inject(&mut self, event: &Interruption) -> bool {
        self.claim();
        self.backend.inject(event)
    }

    /// XMM0..XMM5 as (low, high): what an XMM fast hypercall passes.
    pub fn xmm_fast(&mut self) -> [[u64; 2]; 6] {
        self.claim();
        super::fpu::xmm_fast(self.fpu.start())
    }

    /// Asks for (or stops asking for) an exit when the guest can take an
    /// interrupt; withdraws an offer.
    pub fn request_window(&mut self, open: bool) {
        self.claim();
        self.offer = Offer::None;
        self.backend.request_window(open)
    }

    /// Whether the backend holds `event` for the guest to take by itself
    /// (see [`VpOps::offers`]).
    pub fn offers(&self, event: &Interruption) -> bool {
        self.backend.offers(event)
    }

    /// Offers `event` (one that [`offers`](Self::offers) accepts) until the
    /// guest takes it or the offer is replaced or withdrawn.
    pub fn offer(&mut self, event: &Interruption) {
        self.claim();
        self.offer = Offer::Waiting(event.vector);
        self.backend.offer(event)
    }

    /// An offer is in the hardware (it may have been taken since).
    pub fn offering(&self) -> bool {
        self.offer != Offer::None
    }

    /// Whether the guest took the offered interrupt before its last exit;
    /// true once per offer. Kept here by the CPU that ran the VP, like
    /// [`take_interrupted`](Self::take_interrupted): the next entry, on
    /// whichever CPU, looks first.
    pub fn take_offer_taken(&mut self) -> bool {
        let taken = self.offer == Offer::Taken;
        if taken {
            self.offer = Offer::None;
        }
        taken
    }

    pub fn execution_state(&mut self) -> ExecutionState {
        self.claim();
        self.backend.execution_state()
    }

    /// See [`VpOps::set_pdptes`].
    pub fn set_pdptes(&mut self, pdptes: [u64; 4]) {
        self.claim();
        self.backend.set_pdptes(pdptes);
    }

    /// Reads guest-physical memory within one page; false if it is not
    /// readable guest RAM.
    pub fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let fits = (gpa & 0xfff) as usize + buf.len() <= 0x1000;
        let backend = self.backend.kind();
        if !fits || self.slat_root == 0 {
            return false;
        }
        match slat::translate(backend, self.slat_root, gpa) {
            Some(hpa) => {
                memory::read_phys(hpa, buf);
                true
            }
            _ => false,
        }
    }

    /// Whether `gpa` is mapped in the active VTL's view, whatever rights
    /// it keeps there.
    pub fn maps(&self, gpa: u64) -> bool {
        self.slat_root != 0 && slat::is_mapped(self.backend.kind(), self.slat_root, gpa)
    }

    /// The partition's second-level tables are gone: no guest-memory read
    /// may walk them again.
    pub fn forget_slat(&mut self) {
        self.slat_root = 0;
        if let Some(parked) = self.parked.as_mut() {
            parked.slat_root = 0;
        }
    }

    pub fn release(mut self) {
        self.claim();
        super::fpu::forget(self.fpu.start());
        super::dr::forget(self.id());
        memory::free_frames(self.fpu);
        self.backend.release();
        if let Some(parked) = self.parked.take() {
            parked.backend.release();
        }
    }

    /// The active VTL.
    pub fn vtl(&self) -> u8 {
        self.vtl
    }

    /// Whether the VP has a context for `vtl`.
    pub fn has_vtl(&self, vtl: u8) -> bool {
        self.vtl == vtl || self.parked.as_ref().is_some_and(|p| p.vtl == vtl)
    }

    /// Gives the VP a context for `vtl`, as after INIT, in the view at
    /// `slat_root`; it stays in the VTL it is in. False without memory.
    pub fn enable_vtl(&mut self, vtl: u8, slat_root: u64, tag: u32) -> bool {
        self.claim();
        let Some(mut backend) = BackendVp::new(self.backend.kind()) else { return false };
        backend.init(slat_root, tag);
        park(&mut backend);
        self.parked = Some(ParkedContext { vtl, backend, slat_root, offer: Offer::None, interrupted: None });
        true
    }

    /// Makes the context of `vtl` (one [`has_vtl`](Self::has_vtl)) the
    /// active one: the private state becomes that VTL's, the shared
    /// state stays (TLFS 15.11). The next entry flushes the VP's
    /// translations: the view changed.
    pub fn switch_vtl(&mut self, vtl: u8) {
        self.claim();
        let Some(parked) = self.parked.as_mut().filter(|p| p.vtl == vtl) else { return };
        // Read out of the context going, written into the one coming, each
        // while it is the active one: a VMX register access loads its VMCS.
        let shared = SHARED_IN_CONTEXT.map(|name| (name, self.backend.get_register(&mut self.gprs, name)));
        core::mem::swap(&mut self.backend, &mut parked.backend);
        park(&mut parked.backend);
        for (name, value) in shared {
            if let Some((low, high)) = value {
                self.backend.set_register(&mut self.gprs, name, low, high);
            }
        }
        // Debug registers are the VP's: intercepted as they are in the
        // context going out.
        self.backend.intercept_debug_registers(!self.dr_active);
        core::mem::swap(&mut self.slat_root, &mut parked.slat_root);
        core::mem::swap(&mut self.offer, &mut parked.offer);
        core::mem::swap(&mut self.interrupted, &mut parked.interrupted);
        core::mem::swap(&mut self.vtl, &mut parked.vtl);
        self.moved = true;
    }
}

/// Bits 63:47 are copies of bit 47 (48-bit linear addresses).
fn is_canonical(address: u64) -> bool {
    ((address as i64) << 16 >> 16) as u64 == address
}

/// Second-level page tables of a partition (NPT or EPT), 4 KiB leaves so
/// any page can be unmapped on its own.
pub mod slat {
    use super::*;
    use kerncore::paging::{Budgeted, PageTableMemory};

    fn npt<M: PageTableMemory>(mem: &mut M, root: u64) -> NptMapper<'_, M> {
        NptMapper::new(mem, root, NptFormat, SlatConfig { large_pages: false, ..SlatConfig::default() })
    }

    pub fn new_root(backend: Backend) -> Result<u64, GuestMapError> {
        let mut mem = memory::DirectMap;
        match backend {
            Backend::Svm => NptMapper::new_root(&mut mem),
            Backend::Vmx => super::super::vmx::ept_new_root(&mut mem),
        }
    }

    /// Maps guest memory, adding at most `tables` second-level tables;
    /// returns the outcome and the tables added (a refused map adds no
    /// translation, but may leave empty tables, freed with the hierarchy).
    pub fn map(
        backend: Backend,
        root: u64,
        gpa: u64,
        hpa: u64,
        len: u64,
        rights: GuestRights,
        tables: u64,
    ) -> (Result<(), GuestMapError>, u64) {
        let mut direct = memory::DirectMap;
        let mut mem = Budgeted::new(&mut direct, tables);
        let outcome = match backend {
            Backend::Svm => npt(&mut mem, root).map(gpa, hpa, len, rights),
            Backend::Vmx => super::super::vmx::ept_map(&mut mem, root, gpa, hpa, len, rights),
        };
        (outcome, mem.used)
    }

    pub fn unmap(backend: Backend, root: u64, gpa: u64, len: u64) -> Result<(), GuestMapError> {
        let mut mem = memory::DirectMap;
        let removed = |_: RemovedMapping| {};
        match backend {
            Backend::Svm => npt(&mut mem, root).unmap(gpa, len, removed),
            Backend::Vmx => super::super::vmx::ept_unmap(&mut mem, root, gpa, len),
        }
    }

    /// Lets the mapped pages of `[gpa, gpa+len)` do what the map granted
    /// and `allowed` allows (NONE: no access, still mapped), adding at most
    /// `tables` tables (splits); returns the outcome, true if a leaf
    /// changed (the caller shoots the partition down), and the tables added.
    pub fn protect(
        backend: Backend,
        root: u64,
        gpa: u64,
        len: u64,
        allowed: GuestRights,
        tables: u64,
    ) -> (Result<bool, GuestMapError>, u64) {
        let mut direct = memory::DirectMap;
        let mut mem = Budgeted::new(&mut direct, tables);
        let outcome = match backend {
            Backend::Svm => npt(&mut mem, root).protect(gpa, len, allowed),
            Backend::Vmx => super::super::vmx::ept_protect(&mut mem, root, gpa, len, allowed),
        };
        (outcome, mem.used)
    }

    /// Maps every page of the hierarchy at `from` into the one at `to`
    /// with the rights the map granted (no protection, no held write),
    /// adding at most `tables` tables; returns the outcome and the tables
    /// added. On an error `to` holds part of the copy: free it whole.
    pub fn copy(backend: Backend, from: u64, to: u64, tables: u64) -> (Result<(), GuestMapError>, u64) {
        let mut source = memory::DirectMap;
        let mut direct = memory::DirectMap;
        let mut mem = Budgeted::new(&mut direct, tables);
        let outcome = match backend {
            Backend::Svm => npt(&mut source, from).copy_into(&mut npt(&mut mem, to)),
            Backend::Vmx => super::super::vmx::ept_copy(&mut source, from, &mut mem, to),
        };
        (outcome, mem.used)
    }

    /// Withholds or gives back the write access of one mapped 4 KiB page
    /// (a protection's withholding stays); true if its hardware rights
    /// changed (the caller shoots the partition down).
    pub fn hold_write(backend: Backend, root: u64, gpa: u64, held: bool) -> Result<bool, GuestMapError> {
        let mut mem = memory::DirectMap;
        match backend {
            Backend::Svm => npt(&mut mem, root).hold_write(gpa, held),
            Backend::Vmx => super::super::vmx::ept_hold_write(&mut mem, root, gpa, held),
        }
    }

    /// The host-physical address of readable guest memory at `gpa`.
    pub fn translate(backend: Backend, root: u64, gpa: u64) -> Option<u64> {
        let mut mem = memory::DirectMap;
        let translation = match backend {
            Backend::Svm => npt(&mut mem, root).translate(gpa),
            Backend::Vmx => super::super::vmx::ept_translate(&mut mem, root, gpa),
        }?;
        translation.rights.read.then_some(translation.hpa)
    }

    /// Takes every protection away (see `SlatMapper::lift_protections`);
    /// true if a leaf changed (the caller shoots the partition down).
    pub fn lift_protections(backend: Backend, root: u64) -> bool {
        let mut mem = memory::DirectMap;
        match backend {
            Backend::Svm => npt(&mut mem, root).lift_protections(),
            Backend::Vmx => super::super::vmx::ept_lift_protections(&mut mem, root),
        }
    }

    /// Whether `gpa` is mapped, whatever rights it keeps (a protection may
    /// leave none: the hardware then reports the page as not present).
    pub fn is_mapped(backend: Backend, root: u64, gpa: u64) -> bool {
        let mut mem = memory::DirectMap;
        match backend {
            Backend::Svm => npt(&mut mem, root).translate(gpa).is_some(),
            Backend::Vmx => super::super::vmx::ept_translate(&mut mem, root, gpa).is_some(),
        }
    }

    /// Removes whatever leaves `[gpa, gpa+len)` has (teardown: it cannot fail).
    pub fn unmap_present(backend: Backend, root: u64, gpa: u64, len: u64) {
        let mut mem = memory::DirectMap;
        match backend {
            Backend::Svm => npt(&mut mem, root).unmap_present(gpa, len, |_| {}),
            Backend::Vmx => super::super::vmx::ept_unmap_present(&mut mem, root, gpa, len),
        }
    }

    /// Frees every table of the hierarchy, however many. Each is freed once
    /// the walk has left it (children before their parent, the root last),
    /// so the walk never reads a freed table.
    /// Returns how many.
    pub fn free(backend: Backend, root: u64) -> u64 {
        let mut mem = memory::DirectMap;
        let mut count = 0;
        let mut free = |t| {
            memory::free_frames(Frames::reclaim(t, 1));
            count += 1;
        };
        match backend {
            Backend::Svm => npt(&mut mem, root).for_each_table(&mut free),
            Backend::Vmx => super::super::vmx::ept_tables(&mut mem, root, &mut free),
        }
        count
    }
}

/// Values the architecture refuses with #GP (WRMSR, MOV DR): ring 0 loads
/// KERNEL_GS_BASE and DR6 itself around a VMX entry, where such a value
/// would fault in ring 0, and the CPU checks DR7 on entry; MOV to DR0-DR3
/// refuses a non-canonical address (SDM Vol. 3B §19.2.1).
fn refused(name: HvRegisterName, low: u64) -> bool {
    match name {
        HvRegisterName::KERNEL_GS_BASE
        | HvRegisterName::LSTAR
        | HvRegisterName::CSTAR
        | HvRegisterName::SYSENTER_ESP
        | HvRegisterName::SYSENTER_EIP => !is_canonical(low),
        HvRegisterName::DR6 | HvRegisterName::DR7 => low >> 32 != 0,
        _ => name.dr_index().is_some() && !is_canonical(low),
    }
}
