//! The machine as the tests touch it: port I/O, the UART, CPUID, MMIO with
//! fixed instruction forms, the IDT and the 8259/8254 for the hlt test.
//!
//! Memory accesses that the VID must emulate use fixed encodings (address
//! in RDI, data in EAX/RAX/ESI/RSI), so what the VID decodes is known:
//!
//! | access | instruction | bytes |
//! | --- | --- | --- |
//! | read 4 | `mov eax, [rdi]` | `8B 07` |
//! | read 1 | `movzx eax, byte [rdi]` | `0F B6 07` |
//! | read 8 | `mov rax, [rdi]` | `48 8B 07` |
//! | write 4 | `mov [rdi], esi` | `89 37` |
//! | write 8 | `mov [rdi], rsi` | `48 89 37` |
//!
//! A test that expects an instruction to fault (`rdmsr` of an MSR that is
//! not offered: #GP) runs it through a *fixup*: the instruction's address
//! and where to resume are recorded first, and the trap handler, seeing #UD
//! or #GP at exactly that address, resumes there and records the fault
//! instead of stopping the kernel ([`rdmsr_checked`], [`wrmsr_checked`],
//! [`write8_checked`], and the hypercall in [`hv`]).

use core::arch::asm;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use guest_testkernel::protocol::{self, UART_DATA, UART_LINE_STATUS};
use guest_testkernel::tlfs;

pub mod cr;
pub mod hv;
pub mod state;

// ---- Port I/O ------------------------------------------------------------

pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects; the tests own the machine.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

pub fn outl(port: u16, value: u32) {
    // SAFETY: as `outb`.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
}

pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as `outb`.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) }
    value
}

pub fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: as `outb`.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") value, options(nomem, nostack, preserves_flags)) }
    value
}

pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as `outb`.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags)) }
    value
}

/// RAX after `in al`, `in ax` or `in eax` (`size` 1, 2 or 4) from `port`
/// with RAX = `rax` before: what the instruction leaves of the rest.
pub fn in_over(port: u16, size: u8, rax: u64) -> u64 {
    let mut value = rax;
    // SAFETY: as `outb`; only RAX changes.
    unsafe {
        match size {
            1 => asm!("in al, dx", in("dx") port, inout("rax") value, options(nomem, nostack, preserves_flags)),
            2 => asm!("in ax, dx", in("dx") port, inout("rax") value, options(nomem, nostack, preserves_flags)),
            _ => asm!("in eax, dx", in("dx") port, inout("rax") value, options(nomem, nostack, preserves_flags)),
        }
    }
    value
}

/// `rep outsb` of `bytes` to `port`; returns RCX and RSI afterwards.
pub fn rep_outsb(port: u16, bytes: &[u8]) -> (u64, u64) {
    let (rcx, rsi): (u64, u64);
    // SAFETY: reads `bytes` only; DF is clear (the stub and every trap run `cld`).
    unsafe {
        asm!("rep outsb", in("dx") port, inout("rcx") bytes.len() as u64 => rcx,
             inout("rsi") bytes.as_ptr() as u64 => rsi, options(nostack, preserves_flags, readonly))
    }
    (rcx, rsi)
}

/// `insb` (once, no `rep`) from `port` into `buf[0]`; returns RDI afterwards.
pub fn insb(port: u16, buf: &mut [u8; 1]) -> u64 {
    let rdi: u64;
    // SAFETY: writes one byte of `buf`.
    unsafe {
        asm!("insb", in("dx") port, inout("rdi") buf.as_mut_ptr() as u64 => rdi, options(nostack, preserves_flags))
    }
    rdi
}

/// `rep insb` from `port` into `buf`; returns RCX and RDI afterwards.
pub fn rep_insb(port: u16, buf: &mut [u8]) -> (u64, u64) {
    let (rcx, rdi): (u64, u64);
    // SAFETY: writes `buf.len()` bytes of `buf`.
    unsafe {
        asm!("rep insb", in("dx") port, inout("rcx") buf.len() as u64 => rcx,
             inout("rdi") buf.as_mut_ptr() as u64 => rdi, options(nostack, preserves_flags))
    }
    (rcx, rdi)
}

// ---- Console and exit ----------------------------------------------------

/// COM1, polled: one `in` of the line status register before each byte.
pub struct Uart;

/// Held while a CPU prints a line, so lines from several CPUs don't mix.
static UART_LOCK: AtomicBool = AtomicBool::new(false);

/// How long a CPU waits for the UART lock (TSC ticks, about a second or
/// more) before it prints anyway: a CPU that died holding the lock must
/// not silence the others, nor a fault report.
const UART_LOCK_PATIENCE: u64 = 1 << 32;

/// A line being printed: the UART lock, taken (or given up on).
pub struct Line {
    held: bool,
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.held {
            UART_LOCK.store(false, Ordering::Release);
        }
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Uart.write_str(s)
    }
}

impl Uart {
    /// Takes the UART lock for a line.
    pub fn line() -> Line {
        let start = rdtsc();
        loop {
            if UART_LOCK.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
                return Line { held: true };
            }
            if rdtsc().wrapping_sub(start) > UART_LOCK_PATIENCE {
                return Line { held: false };
            }
            core::hint::spin_loop();
        }
    }

    pub fn line_status() -> u8 {
        inb(UART_LINE_STATUS)
    }

    pub fn byte(b: u8) {
        for _ in 0..100_000 {
            if Self::line_status() & 0x20 != 0 {
                break;
            }
        }
        outb(UART_DATA, b);
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(Uart::byte);
        Ok(())
    }
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        let mut line = $crate::hw::Uart::line();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{}\n", format_args!($($arg)*)));
    }};
}

/// Reports `status` through the test-exit port and stops.
pub fn exit(status: u32) -> ! {
    outl(protocol::TEST_EXIT, status);
    loop {
        // SAFETY: stops the CPU with interrupts off.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("testkernel: panic: {}", info.message());
    exit(protocol::exit::EXCEPTION)
}

// ---- CPU -----------------------------------------------------------------

pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: CPUID has no memory effects. RBX is reserved by LLVM: swap it out.
    unsafe {
        asm!("mov {tmp:r}, rbx", "cpuid", "xchg {tmp:r}, rbx", tmp = out(reg) ebx,
             inout("eax") leaf => eax, inout("ecx") subleaf => ecx, out("edx") edx,
             options(nomem, nostack, preserves_flags))
    }
    Cpuid { eax, ebx, ecx, edx }
}

pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads an architectural MSR the caller knows exists.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    u64::from(hi) << 32 | u64::from(lo)
}

/// WRMSR of an MSR the caller knows accepts `value` (no fixup: safe in an
/// interrupt handler while another CPU uses the checked accessors).
pub fn wrmsr(msr: u32, value: u64) {
    let (lo, hi) = (value as u32, (value >> 32) as u32);
    // SAFETY: the callers write APIC registers (EOI), which touch no memory.
    unsafe { asm!("wrmsr", in("ecx") msr, in("eax") lo, in("edx") hi, options(nomem, nostack, preserves_flags)) }
}

/// The TSC's frequency: HV_X64_MSR_TSC_FREQUENCY when the partition
/// offers the Hyper-V interface, else an assumed 2 GHz.
pub fn tsc_hz() -> u64 {
    use guest_testkernel::tlfs::{cpuid as leaf, msr};
    let hyperv =
        cpuid(1, 0).ecx & leaf::LEAF1_ECX_HYPERVISOR != 0 && cpuid(leaf::VENDOR_AND_MAX, 0).eax >= leaf::FEATURES;
    let hz = if hyperv { rdmsr_checked(msr::TSC_FREQUENCY).unwrap_or(0) } else { 0 };
    if hz == 0 { 2_000_000_000 } else { hz }
}

pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads the time-stamp counter.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    u64::from(hi) << 32 | u64::from(lo)
}

// ---- Memory the VID emulates (identity-mapped: address = GPA) ------------

pub fn read32(addr: u64) -> u32 {
    let value: u32;
    // SAFETY: the tests read device or unmapped guest-physical addresses,
    // all inside the identity map of the low 4 GiB.
    unsafe { asm!("mov eax, dword ptr [rdi]", in("rdi") addr, out("eax") value, options(nostack, preserves_flags)) }
    value
}

pub fn read8(addr: u64) -> u8 {
    let value: u32;
    // SAFETY: as `read32`.
    unsafe { asm!("movzx eax, byte ptr [rdi]", in("rdi") addr, out("eax") value, options(nostack, preserves_flags)) }
    value as u8
}

pub fn read64(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: as `read32`.
    unsafe { asm!("mov rax, qword ptr [rdi]", in("rdi") addr, out("rax") value, options(nostack, preserves_flags)) }
    value
}

pub fn write32(addr: u64, value: u32) {
    // SAFETY: the tests write only device, read-only or unmapped addresses,
    // never memory the kernel uses.
    unsafe { asm!("mov dword ptr [rdi], esi", in("rdi") addr, in("esi") value, options(nostack, preserves_flags)) }
}

pub fn write64(addr: u64, value: u64) {
    // SAFETY: as `write32`.
    unsafe { asm!("mov qword ptr [rdi], rsi", in("rdi") addr, in("rsi") value, options(nostack, preserves_flags)) }
}

/// Reads boot information through the identity map.
pub struct Identity;

impl guest_testkernel::multiboot::Memory for Identity {
    fn read(&self, addr: u64, out: &mut [u8]) -> bool {
        if addr.checked_add(out.len() as u64).is_none_or(|end| end > 1 << 32) {
            return false;
        }
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: below 4 GiB, hence identity-mapped; boot information is plain RAM.
            *b = unsafe { core::ptr::read_volatile((addr + i as u64) as *const u8) };
        }
        true
    }
}

/// The kernel image's extent, from the linker script.
pub fn kernel_extent() -> core::ops::Range<u64> {
    unsafe extern "C" {
        static __kernel_start: u8;
        static __kernel_end: u8;
    }
    (&raw const __kernel_start) as u64..(&raw const __kernel_end) as u64
}

// ---- Interrupts ----------------------------------------------------------

#[repr(C)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

#[repr(C, align(16))]
struct Idt(core::cell::UnsafeCell<[u64; 512]>);

// SAFETY: written once by `init_idt` on the BSP before interrupts are
// enabled and before any AP starts; the APs only load it.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(core::cell::UnsafeCell::new([0; 512]));

static TIMER_TICKS: AtomicU64 = AtomicU64::new(0);

/// Points every vector at its stub: exceptions are reported, IRQs counted.
pub fn init_idt() {
    unsafe extern "C" {
        static tk_isr_stubs: u8;
    }
    let stubs = (&raw const tk_isr_stubs) as u64;
    let idt = IDT.0.get();
    for vector in 0..256 {
        let handler = stubs + 16 * vector as u64;
        let low = (handler & 0xffff) | (0x08 << 16) | (0x8e << 40) | ((handler >> 16) & 0xffff) << 48;
        // SAFETY: `idt` is the static table, not yet loaded; one CPU.
        unsafe {
            (*idt)[2 * vector] = low;
            (*idt)[2 * vector + 1] = handler >> 32;
        }
    }
    load_idt();
}

/// Loads the IDT [`init_idt`] filled (on an AP too).
pub fn load_idt() {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let pointer = Pointer { limit: (256 * 16 - 1) as u16, base: IDT.0.get() as u64 };
    // SAFETY: the IDT is static and complete.
    unsafe { asm!("lidt [{}]", in(reg) &pointer, options(readonly, nostack, preserves_flags)) }
}

pub fn timer_ticks() -> u64 {
    TIMER_TICKS.load(Ordering::Relaxed)
}

const EXCEPTIONS: [&str; 22] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "?", "#TS", "#NP", "#SS", "#GP", "#PF", "?", "#MF",
    "#AC", "#MC", "#XM", "#VE", "#CP",
];

#[unsafe(no_mangle)]
extern "C" fn testkernel_trap(frame: &mut TrapFrame) {
    let vector = frame.vector;
    // In the hostile tests' mode an armed instruction takes whatever it
    // raises (they run it with interrupts off, so it is its own).
    if ANY_FAULT.load(Ordering::Relaxed) && fixed_up(frame) {
        return;
    }
    // The fidelity suite's NMIs (vector 2), counted per CPU.
    if crate::fidelity::nmi_trap(vector) {
        return;
    }
    // The smpbench test's IPIs, first: the timed one's handler reads the TSC.
    if crate::smpbench::interrupt(vector) {
        return;
    }
    // The fidelity APIC test's vectors (its timer's handler reads the TSC).
    if crate::fidelity::apic_interrupt(vector) {
        return;
    }
    // The timers test's local APIC timer (its handler reads the TSC too),
    // and the stimer jitter figure's ticks (reference time).
    if crate::timers::interrupt(vector) || crate::stimer_bench::interrupt(vector) {
        return;
    }
    // The RTC test's IRQ 8 (it reads register C).
    if crate::fidelity::rtc_interrupt(vector) {
        return;
    }
    let irq_base = u64::from(protocol::IRQ_BASE);
    if (irq_base..irq_base + 16).contains(&vector) {
        if vector == irq_base {
            TIMER_TICKS.fetch_add(1, Ordering::Relaxed);
        }
        if vector >= irq_base + 8 {
            outb(0xa0, 0x20);
        }
        outb(0x20, 0x20);
        return;
    }
    if vector == u64::from(tlfs::IPI_VECTOR) {
        IPIS.fetch_add(1, Ordering::Relaxed);
        write32(LAPIC_BASE + LAPIC_EOI, 0);
        return;
    }
    // The SynIC tests' SINT and direct-mode timer vectors, the EOI assist
    // test's self-IPI.
    if crate::tlfs_suite::synic_interrupt(vector) || crate::tlfs_suite::eoi_assist_interrupt(vector) {
        return;
    }
    // The messaging test's SINT vectors.
    if crate::messaging::interrupt(vector) {
        return;
    }
    // The testdev test's route vectors on VP 1.
    if crate::testdev::interrupt(vector) {
        return;
    }
    // The smp test's IPI, and the spurious vector (not acknowledged).
    if crate::ap::interrupt(vector) {
        return;
    }
    // Exceptions the state tests provoke (#DB, and faults at CPL 3).
    if crate::state_suite::trap(frame) {
        return;
    }
    // A VTL call or return the VSM test expects to raise #UD.
    if crate::vsm_suite::trap(frame) {
        return;
    }
    if (vector == UD || vector == GP) && fixed_up(frame) {
        return;
    }
    if vector >= 32 && TOLERANT.load(Ordering::Relaxed) {
        // The hostile tests send themselves interrupts on any vector.
        STRAY.fetch_add(1, Ordering::Relaxed);
        write32(LAPIC_BASE + LAPIC_EOI, 0);
        return;
    }
    let name = EXCEPTIONS.get(vector as usize).copied().unwrap_or("interrupt");
    let cr2: u64;
    // SAFETY: reads CR2.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) }
    println!(
        "testkernel: FAIL unexpected {name} (vector {vector}, error {:#x}) at rip {:#x}, cr2 {cr2:#x}",
        frame.error, frame.rip
    );
    exit(protocol::exit::EXCEPTION)
}

// ---- Faults on purpose (fixups) -----------------------------------------

/// Records the fault of the armed instruction and resumes after it, if
/// `frame` is at it: a fault reports the instruction itself, a trap (INT n,
/// INT3, INTO, a debug trap) the one after, which is the resume point.
fn fixed_up(frame: &mut TrapFrame) -> bool {
    let (at, resume) = (FIXUP_AT.load(Ordering::Relaxed), FIXUP_RESUME.load(Ordering::Relaxed));
    if at == 0 || (frame.rip != at && frame.rip != resume) {
        return false;
    }
    FAULT.store(frame.vector + 1, Ordering::Relaxed);
    FAULT_ERROR.store(frame.error, Ordering::Relaxed);
    FIXUP_AT.store(0, Ordering::Relaxed);
    frame.rip = resume;
    // A single-step trap must not step on.
    frame.rflags &= !(1 << 8);
    true
}

const UD: u64 = 6;
const GP: u64 = 13;

/// The address of the instruction that may fault, 0 when none is armed.
pub(crate) static FIXUP_AT: AtomicU64 = AtomicU64::new(0);
/// Where execution resumes if it does.
pub(crate) static FIXUP_RESUME: AtomicU64 = AtomicU64::new(0);
/// The fixup takes any exception (and software interrupt), not only #UD
/// and #GP: the hostile tests' [`checked!`].
static ANY_FAULT: AtomicBool = AtomicBool::new(false);
/// Interrupts on vectors nobody expects are counted and acknowledged
/// instead of failing the run (the hostile tests raise them on purpose).
static TOLERANT: AtomicBool = AtomicBool::new(false);
static STRAY: AtomicU64 = AtomicU64::new(0);

/// The hostile tests' trap mode: any fault at an armed instruction is
/// returned, and stray interrupts are counted.
pub fn hostile_traps() {
    ANY_FAULT.store(true, Ordering::Relaxed);
    TOLERANT.store(true, Ordering::Relaxed);
}

/// Interrupts taken on vectors nobody expected (in [`hostile_traps`] mode).
pub fn stray_interrupts() -> u64 {
    STRAY.load(Ordering::Relaxed)
}
/// The vector + 1 of the fault taken at the armed instruction, 0 if none.
static FAULT: AtomicU64 = AtomicU64::new(0);
static FAULT_ERROR: AtomicU64 = AtomicU64::new(0);

/// A fault a test provoked on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub vector: u8,
    pub error: u64,
}

impl Fault {
    pub const fn is_gp(self) -> bool {
        self.vector == GP as u8
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = EXCEPTIONS.get(usize::from(self.vector)).copied().unwrap_or("?");
        write!(f, "{name} (error {:#x})", self.error)
    }
}

/// Arms the fixup for an instruction at `at` that resumes at `resume`;
/// forgets any earlier fault.
pub(crate) fn arm(at: u64, resume: u64) {
    FAULT.store(0, Ordering::Relaxed);
    FIXUP_RESUME.store(resume, Ordering::Relaxed);
    FIXUP_AT.store(at, Ordering::Relaxed);
}

/// Disarms the fixup; the fault taken since [`arm`], if any.
pub(crate) fn take_fault() -> Option<Fault> {
    FIXUP_AT.store(0, Ordering::Relaxed);
    match FAULT.swap(0, Ordering::Relaxed) {
        0 => None,
        v => Some(Fault { vector: (v - 1) as u8, error: FAULT_ERROR.load(Ordering::Relaxed) }),
    }
}

/// Runs one instruction (`$insn`, at local label 2) under a fixup that
/// resumes after it (label 3). The fixup is armed in the same asm block,
/// so the addresses are exactly the instruction's.
macro_rules! guarded {
    ($insn:expr, $($operands:tt)*) => {
        core::arch::asm!(
            "lea {tmp}, [rip + 3f]",
            "mov qword ptr [{resume}], {tmp}",
            "lea {tmp}, [rip + 2f]",
            "mov qword ptr [{at}], {tmp}",
            "2:",
            $insn,
            "3:",
            at = in(reg) $crate::hw::FIXUP_AT.as_ptr(),
            resume = in(reg) $crate::hw::FIXUP_RESUME.as_ptr(),
            tmp = out(reg) _,
            $($operands)*
        )
    };
}
pub(crate) use guarded;

/// Runs one instruction under the fixup (as `guarded!`, from any module)
/// and returns the fault it raised, if any. In [`hostile_traps`] mode any
/// exception counts; otherwise only #UD and #GP. Running the caller's
/// instruction and operands in `unsafe` is the point: each caller says why
/// its instruction is safe to run.
macro_rules! checked {
    ($insn:expr $(, $($operands:tt)*)?) => {{
        $crate::hw::arm(0, 0);
        // SAFETY: the caller's instruction; the fixup's statics are written
        // as the atomics they are (8-byte stores).
        unsafe { $crate::hw::guarded!($insn, $($($operands)*)?) }
        $crate::hw::take_fault()
    }};
}
pub(crate) use checked;

/// `rdmsr`; a #GP (or #UD) is returned, not fatal.
pub fn rdmsr_checked(msr: u32) -> Result<u64, Fault> {
    arm(0, 0);
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR has no memory effects on the kernel; the
    // fixup's statics are written as the atomics they are (8-byte stores).
    unsafe { guarded!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nostack)) }
    match take_fault() {
        None => Ok(u64::from(hi) << 32 | u64::from(lo)),
        Some(fault) => Err(fault),
    }
}

/// `wrmsr`; a #GP (or #UD) is returned, not fatal. The tests write only
/// synthetic MSRs.
pub fn wrmsr_checked(msr: u32, value: u64) -> Result<(), Fault> {
    arm(0, 0);
    // SAFETY: the synthetic MSRs the tests write place overlay pages over
    // the kernel's own page buffers (`hv::Page`), or must fault.
    unsafe {
        guarded!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    }
    take_fault().map_or(Ok(()), Err)
}

/// `xsetbv` of XCR `index`; a #UD or #GP is returned, not fatal.
pub fn xsetbv_checked(index: u32, value: u64) -> Result<(), Fault> {
    arm(0, 0);
    // SAFETY: XCR0 selects which state components are enabled; the kernel
    // uses none (it is built soft-float) but those the state tests use.
    unsafe {
        guarded!("xsetbv", in("ecx") index, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    }
    take_fault().map_or(Ok(()), Err)
}

/// `monitor` on `addr` (ECX, EDX 0); a #UD (not offered) is returned.
pub fn monitor_checked(addr: u64) -> Result<(), Fault> {
    arm(0, 0);
    // SAFETY: MONITOR only arms address monitoring; it changes no memory.
    unsafe { guarded!("monitor", in("rax") addr, in("ecx") 0, in("edx") 0, options(nostack)) }
    take_fault().map_or(Ok(()), Err)
}

/// XCR0 (XGETBV with ECX 0); the caller has set CR4.OSXSAVE.
pub fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads XCR0; no memory effects.
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    u64::from(hi) << 32 | u64::from(lo)
}

/// `rdpmc` of counter `index`; a #GP (or #UD) is returned, not fatal.
pub fn rdpmc_checked(index: u32) -> Result<u64, Fault> {
    arm(0, 0);
    let (lo, hi): (u32, u32);
    // SAFETY: reading a counter has no memory effects.
    unsafe { guarded!("rdpmc", in("ecx") index, out("eax") lo, out("edx") hi, options(nostack)) }
    match take_fault() {
        None => Ok(u64::from(hi) << 32 | u64::from(lo)),
        Some(fault) => Err(fault),
    }
}

/// `mov cr4, value`; a #GP (a bit the CPU does not offer) is returned, not fatal.
pub fn write_cr4_checked(value: u64) -> Result<(), Fault> {
    arm(0, 0);
    // SAFETY: the state tests set or clear only OSFXSR and OSXSAVE, which
    // change no mapping or memory the kernel relies on; the fidelity
    // tests write values the architecture refuses (and put CR4 back
    // should one be taken).
    unsafe { guarded!("mov cr4, {value}", value = in(reg) value, options(nostack)) }
    take_fault().map_or(Ok(()), Err)
}

/// `int1` (ICEBP): its #DB is the caller's to expect. Returns the address
/// after it and the #UD of a CPU (QEMU 7.2) that does not know it, if any.
pub fn icebp_checked() -> (u64, Option<Fault>) {
    arm(0, 0);
    // SAFETY: INT1 raises #DB, which the caller's handler takes.
    unsafe { guarded!(".byte 0xf1", options(nostack)) }
    let after = FIXUP_RESUME.load(Ordering::Relaxed);
    (after, take_fault())
}

pub fn read_cr4() -> u64 {
    let value: u64;
    // SAFETY: reading CR4 has no side effects.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// `mov byte ptr [rdi], sil`; a #GP is returned, not fatal.
pub fn write8_checked(addr: u64, value: u8) -> Result<(), Fault> {
    arm(0, 0);
    // SAFETY: the tests write only to an overlay page (where the TLFS asks
    // for #GP) or to their own scratch page, a byte the test then checks.
    unsafe { guarded!("mov byte ptr [rdi], sil", in("rdi") addr, in("sil") value, options(nostack)) }
    take_fault().map_or(Ok(()), Err)
}

// ---- The local APIC (xAPIC, at its reset base) ----------------------------

pub const LAPIC_BASE: u64 = 0xfee0_0000;
const LAPIC_EOI: u64 = 0xb0;
const LAPIC_SVR: u64 = 0xf0;
const LAPIC_SPURIOUS_VECTOR: u8 = 0xff;

static IPIS: AtomicU64 = AtomicU64::new(0);

/// Interrupts on [`tlfs::IPI_VECTOR`] so far.
pub fn ipis() -> u64 {
    IPIS.load(Ordering::Relaxed)
}

/// Software-enables the local APIC (SVR bit 8, spurious vector 0xff) so it
/// accepts fixed interrupts, and masks every 8259 line.
pub fn lapic_enable() {
    stop_timer();
    write32(LAPIC_BASE + LAPIC_SVR, 0x100 | u32::from(LAPIC_SPURIOUS_VECTOR));
}

/// Lets interrupts in until `done()` or the TSC advanced by `ticks`;
/// returns the TSC ticks waited.
pub fn interrupt_window(ticks: u64, done: impl Fn() -> bool) -> u64 {
    let start = rdtsc();
    // SAFETY: the IDT handles every vector; the 8259 lines are masked.
    unsafe { asm!("sti", options(nomem, nostack)) }
    while !done() && rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
    // SAFETY: as above.
    unsafe { asm!("cli", options(nomem, nostack)) }
    rdtsc().wrapping_sub(start)
}

/// Remaps the 8259s to vectors 0x20..0x2f with only IRQ 0 unmasked, and
/// starts the PIT at [`protocol::PIT_HZ`].
pub fn start_timer() {
    let base = protocol::IRQ_BASE;
    for (port, value) in [
        (0x20, 0x11),
        (0xa0, 0x11),
        (0x21, base),
        (0xa1, base + 8),
        (0x21, 4),
        (0xa1, 2),
        (0x21, 1),
        (0xa1, 1),
        (0x21, 0xfe),
        (0xa1, 0xff),
    ] {
        outb(port, value);
    }
    let divisor = 1_193_182 / protocol::PIT_HZ;
    outb(0x43, 0x34); // channel 0, lobyte/hibyte, rate generator
    outb(0x40, divisor as u8);
    outb(0x40, (divisor >> 8) as u8);
}

/// Masks every 8259 line again.
pub fn stop_timer() {
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
}

/// `sti; hlt; cli`: STI's shadow keeps an interrupt from slipping in before HLT.
pub fn halt_once() {
    // SAFETY: the IDT handles every vector.
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
}

// ---- The isolation record and the crash ----------------------------------

/// Writes `bytes` to RAM at `addr` (volatile: the other partition must not
/// be able to hide behind a cached value).
pub fn write_ram(addr: u64, bytes: &[u8]) {
    for (i, &b) in bytes.iter().enumerate() {
        // SAFETY: the caller passes plain RAM below 4 GiB (identity-mapped)
        // that is neither the kernel image nor the boot information.
        unsafe { core::ptr::write_volatile((addr + i as u64) as *mut u8, b) }
    }
}

/// Reads RAM at `addr` into `out` (volatile).
pub fn read_ram(addr: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        // SAFETY: as `write_ram`.
        *b = unsafe { core::ptr::read_volatile((addr + i as u64) as *const u8) };
    }
}

/// The 8-byte word of shared memory at `addr`, for atomic access: RAM that
/// another partition or the hypervisor writes too (a monitor page's
/// trigger group, whose bits change only by `lock`ed instructions).
pub fn shared_u64(addr: u64) -> &'static AtomicU64 {
    assert!(addr.is_multiple_of(8) && addr < 1 << 32, "{addr:#x}: not an aligned word below 4 GiB");
    // SAFETY: aligned (checked) and below 4 GiB, hence identity-mapped; the
    // caller passes memory that is neither the kernel image nor the boot
    // information, and that the kernel accesses only atomically.
    unsafe { AtomicU64::from_ptr(addr as *mut u64) }
}

/// Spins until the TSC advanced by `ticks` or `max_iterations` passed;
/// returns (TSC ticks elapsed, iterations).
pub fn spin(ticks: u64, max_iterations: u64) -> (u64, u64) {
    let start = rdtsc();
    let mut n = 0;
    while n < max_iterations {
        n += 1;
        let elapsed = rdtsc().wrapping_sub(start);
        if elapsed >= ticks {
            return (elapsed, n);
        }
        core::hint::spin_loop();
    }
    (rdtsc().wrapping_sub(start), n)
}

/// Loads an IDT with limit 0 and executes `int3`: vector 3 is past the
/// limit (#GP), so is 13 (#DF), so is 8: the CPU shuts down (triple fault).
pub fn triple_fault() -> ! {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let empty = Pointer { limit: 0, base: 0 };
    // SAFETY: on purpose: no interrupt can be delivered afterwards, and the
    // `int3` that follows ends the machine.
    unsafe { asm!("cli", "lidt [{}]", "int3", "ud2", in(reg) &empty, options(readonly, nostack, noreturn)) }
}

/// Jumps to `target` with the fixup armed there: the fault its fetch
/// raises (#UD where nothing is) resumes after the jump and is returned.
/// A target that does not fault never comes back.
pub fn jump_checked(target: u64) -> Option<Fault> {
    arm(0, 0);
    // SAFETY: the target is a GPA with nothing behind it, whose fetch
    // faults; the fixup's statics are written as 8-byte stores.
    unsafe {
        asm!(
            "lea {tmp}, [rip + 3f]",
            "mov qword ptr [{resume}], {tmp}",
            "mov qword ptr [{at}], {target}",
            "jmp {target}",
            "3:",
            at = in(reg) FIXUP_AT.as_ptr(),
            resume = in(reg) FIXUP_RESUME.as_ptr(),
            target = in(reg) target,
            tmp = out(reg) _,
            options(nostack)
        )
    }
    take_fault()
}

pub fn outw(port: u16, value: u16) {
    // SAFETY: as `outb`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) }
}

/// `rep outsb` of `count` bytes from `from` (backwards with `down`: DF
/// set for the instruction); returns RCX and RSI afterwards.
pub fn rep_outsb_raw(port: u16, from: u64, count: u64, down: bool) -> (u64, u64) {
    let (rcx, rsi): (u64, u64);
    // SAFETY: reads `count` bytes of the kernel's own RAM from `from`
    // (the caller's range); DF is set only around the instruction.
    unsafe {
        if down {
            asm!("std", "rep outsb", "cld", in("dx") port, inout("rcx") count => rcx, inout("rsi") from => rsi,
                 options(nostack, readonly))
        } else {
            asm!("rep outsb", in("dx") port, inout("rcx") count => rcx, inout("rsi") from => rsi,
                 options(nostack, readonly))
        }
    }
    (rcx, rsi)
}

/// `rep insb` of `count` bytes to guest-physical `to`, which must not be
/// RAM the kernel uses (a GPA with nothing behind it); returns RCX and RDI.
pub fn rep_insb_raw(port: u16, to: u64, count: u64) -> (u64, u64) {
    let (rcx, rdi): (u64, u64);
    // SAFETY: the bytes go to a GPA that is not RAM (the caller's).
    unsafe {
        asm!("rep insb", in("dx") port, inout("rcx") count => rcx, inout("rdi") to => rdi,
             options(nostack, preserves_flags))
    }
    (rcx, rdi)
}
