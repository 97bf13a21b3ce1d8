//! The smp test's machine side: the AP trampoline, starting the APs with
//! INIT-SIPI-SIPI through the BSP's local APIC, and each AP's [`ap_main`].
//!
//! # The trampoline
//!
//! `tk_ap_trampoline..tk_ap_trampoline_end` is copied to a page below
//! 1 MiB (the STARTUP vector is the page number), its parameter block
//! ([`trampoline`]) written at offset 0xf00 of the same page. An AP starts
//! there in real mode (CS = page >> 4, IP = 0) and:
//!
//! 1. `lgdtl` the trampoline's GDT (pointer in the block), sets CR0.PE and
//!    far-jumps (pointer in the block) to 32-bit code (selector 0x18);
//! 2. sets CR4.PAE, loads the BSP's CR3 (in the block), writes IA32_EFER :=
//!    LME (no read first, as the BSP's stub), sets CR0.PG and far-jumps to
//!    64-bit code (selector 0x08: the kernel's, which the IDT gates name);
//! 3. takes a stack slot with `lock xadd` on the block's counter (an AP past
//!    the slots halts) and calls the 64-bit entry with the slot in EDI.
//!
//! The entry loads the kernel's IDT, reads its APIC ID from its local APIC,
//! checks it against CPUID and IA32_APIC_BASE, prints
//! `testkernel: smp: AP <id> up`, records its arrival, enables its local
//! APIC and sends the BSP a fixed IPI ([`smp::IPI_VECTOR`]), then halts for
//! good with interrupts off.
//!
//! # Waits
//!
//! The BSP waits on the PIT (IRQ 0 at 100 Hz through the 8259, as the hlt
//! test), halting with interrupts on between ticks: 2 ticks (10 to 20 ms)
//! after INIT, 2 after the first STARTUP, then up to [`AP_WAIT_TICKS`] for
//! every AP to check in and its IPI to arrive. A TSC budget bounds every
//! wait should the PIT stop.

use crate::hw;
use crate::println;
use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use guest_testkernel::smp::{self, Icr, lapic, trampoline};
use guest_testkernel::{Detail, detail, multiboot};

global_asm!(
    r#"
    .pushsection .rodata.tk_ap_trampoline, "a"
    .balign 16
    .global tk_ap_trampoline
    .code16
tk_ap_trampoline:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds                       /* the parameter block at DS:{params} */
    xorl %ebx, %ebx
    movw %ax, %bx
    shll $4, %ebx                       /* EBX: the page's address, for later */
    lgdtl {gdt_pointer}
    movl %cr0, %eax
    andl $0x9fffffff, %eax              /* caches on (CD, NW clear after INIT) */
    orl $1, %eax                        /* PE */
    movl %eax, %cr0
    ljmpl *{protected_jump}

    .global tk_ap_protected
    .code32
tk_ap_protected:
    movw ${data}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax
    orl $(1 << 5), %eax                 /* PAE */
    movl %eax, %cr4
    movl {cr3}(%ebx), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx              /* IA32_EFER := LME (no read first) */
    movl $(1 << 8), %eax
    xorl %edx, %edx
    wrmsr
    movl %cr0, %eax
    orl $0x80000000, %eax               /* PG */
    movl %eax, %cr0
    ljmpl *{long_jump}(%ebx)

    .global tk_ap_long
    .code64
tk_ap_long:
    movl %ebx, %ebx                     /* the upper halves are undefined */
    movw ${data}, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    movl $1, %eax
    lock xaddl %eax, {next_slot}(%rbx)
    cmpl {slots}(%rbx), %eax
    jae 1f
    movl %eax, %edi                     /* the slot: the entry's argument */
    incl %eax
    imulq {stack_size}(%rbx), %rax
    addq {stacks}(%rbx), %rax
    movq %rax, %rsp                     /* the top of slot EDI's stack */
    xorl %ebp, %ebp
    callq *{entry}(%rbx)
1:  cli
    hlt
    jmp 1b

    .balign 8
    .global tk_ap_gdt
tk_ap_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF            /* 0x08: 64-bit code */
    .quad 0x00CF93000000FFFF            /* 0x10: data */
    .quad 0x00CF9B000000FFFF            /* 0x18: 32-bit code */
    .global tk_ap_gdt_end
tk_ap_gdt_end:
    .global tk_ap_trampoline_end
tk_ap_trampoline_end:
    .popsection
"#,
    params = const trampoline::PARAMS,
    gdt_pointer = const trampoline::GDT_POINTER,
    protected_jump = const trampoline::PROTECTED_JUMP,
    long_jump = const trampoline::LONG_JUMP,
    cr3 = const trampoline::CR3,
    entry = const trampoline::ENTRY,
    stacks = const trampoline::STACKS,
    stack_size = const trampoline::STACK_SIZE,
    slots = const trampoline::SLOTS,
    next_slot = const trampoline::NEXT_SLOT,
    data = const trampoline::DATA,
    options(att_syntax)
);

/// Each AP's stack.
const STACK_SIZE: usize = 16 * 1024;
/// Stack slots: one per possible AP, and one to spare for an AP that
/// would (wrongly) start twice.
const SLOTS: usize = smp::MAX_CPUS as usize;

/// The ticks the BSP waits after INIT and after the first STARTUP (PIT at
/// 100 Hz: 10 to 20 ms; the SDM asks for 10 ms and 200 µs).
const INIT_WAIT_TICKS: u64 = 2;
const STARTUP_WAIT_TICKS: u64 = 2;
/// The most the BSP waits for every AP to check in (5 s).
pub const AP_WAIT_TICKS: u64 = 500;
/// A bound on any wait in TSC ticks (seconds even at 5 GHz), should the PIT stop.
const TSC_BUDGET: u64 = 1 << 35;
/// Reads of the ICR's delivery status before a send counts as stuck.
const ICR_POLLS: u32 = 1000;

#[repr(C, align(16))]
struct Stacks(UnsafeCell<[[u8; STACK_SIZE]; SLOTS]>);

// SAFETY: only the APs use the stacks, each its own slot (taken with
// `lock xadd` in the trampoline); Rust code never touches them.
unsafe impl Sync for Stacks {}

static STACKS: Stacks = Stacks(UnsafeCell::new([[0; STACK_SIZE]; SLOTS]));

/// Arrivals, per APIC ID and in all.
static SEEN: [AtomicU8; 256] = [const { AtomicU8::new(0) }; 256];
static ARRIVED: AtomicU32 = AtomicU32::new(0);
/// APs whose APIC ID register, CPUID and IA32_APIC_BASE disagreed.
static WRONG: [AtomicBool; 256] = [const { AtomicBool::new(false) }; 256];
/// Fixed IPIs on [`smp::IPI_VECTOR`] the BSP took.
static IPIS: AtomicU64 = AtomicU64::new(0);
/// The BSP's APIC ID, where the APs send their IPI.
static BSP: AtomicU8 = AtomicU8::new(0);

fn lapic_read(register: u64) -> u32 {
    hw::read32(lapic::BASE + register)
}

/// Writes a register of this CPU's local APIC (an ICR_LOW write sends).
pub fn lapic_write(register: u64, value: u32) {
    hw::write32(lapic::BASE + register, value);
}

/// The trap handler's share: counts (and acknowledges) the APs' IPIs and
/// ignores the local APIC's spurious interrupts. True if `vector` was one.
pub fn interrupt(vector: u64) -> bool {
    if vector == u64::from(smp::IPI_VECTOR) {
        IPIS.fetch_add(1, Ordering::Relaxed);
        lapic_write(lapic::EOI, 0);
        true
    } else {
        // A spurious interrupt is not acknowledged.
        vector == u64::from(lapic::SPURIOUS_VECTOR)
    }
}

/// The BSP's APIC ID register.
pub fn lapic_id_register() -> u32 {
    lapic_read(lapic::ID)
}

/// Software-enables this CPU's local APIC (spurious vector 0xff) unless it
/// is, and opens the task priority; returns the SVR before and after, and LINT0.
pub fn enable_lapic() -> (u32, u32, u32) {
    let before = lapic_read(lapic::SVR);
    if before & lapic::SVR_ENABLE == 0 {
        lapic_write(lapic::SVR, lapic::SVR_ENABLE | u32::from(lapic::SPURIOUS_VECTOR));
    }
    lapic_write(lapic::TPR, 0);
    (before, lapic_read(lapic::SVR), lapic_read(lapic::LVT_LINT0))
}

/// Sends `icr` and waits (boundedly) for its delivery status to go idle.
pub fn send(icr: Icr) -> Result<(), Detail> {
    lapic_write(lapic::ICR_HIGH, icr.high);
    lapic_write(lapic::ICR_LOW, icr.low);
    for _ in 0..ICR_POLLS {
        if lapic_read(lapic::ICR_LOW) & lapic::ICR_SEND_PENDING == 0 {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(detail!("ICR {:#010x}:{:#010x} still pending after {ICR_POLLS} reads", icr.high, icr.low))
}

/// Halts (interrupts on) until `done()`, `ticks` PIT ticks passed, or the
/// TSC advanced by [`TSC_BUDGET`]; returns the ticks waited.
pub fn wait(ticks: u64, done: impl Fn() -> bool) -> u64 {
    let (start, tsc) = (hw::timer_ticks(), hw::rdtsc());
    while !done() && hw::timer_ticks() - start < ticks && hw::rdtsc().wrapping_sub(tsc) < TSC_BUDGET {
        hw::halt_once();
    }
    hw::timer_ticks() - start
}

/// Puts the trampoline in a free page below 1 MiB (from the Multiboot
/// memory map of `magic` and `info`), its APs to call `entry`, and returns
/// the STARTUP vector that runs it.
pub fn prepare(magic: u32, info: u64, entry: extern "C" fn(u32) -> !) -> Result<u8, Detail> {
    let kernel = hw::kernel_extent();
    let summary = multiboot::check(&hw::Identity, magic, info, kernel.clone())?;
    let page = smp::trampoline_page(&hw::Identity, &summary, info, &kernel)?;
    let vector = smp::startup_vector(page).ok_or(detail!("no STARTUP vector for {page:#x}"))?;
    install(page, entry)?;
    Ok(vector)
}

/// Copies the trampoline to `page` and writes its parameter block: the
/// APs it starts call `entry` on their own stack, interrupts off.
pub fn install(page: u64, entry: extern "C" fn(u32) -> !) -> Result<(), Detail> {
    unsafe extern "C" {
        static tk_ap_trampoline: u8;
        static tk_ap_protected: u8;
        static tk_ap_long: u8;
        static tk_ap_gdt: u8;
        static tk_ap_gdt_end: u8;
        static tk_ap_trampoline_end: u8;
    }
    let start = (&raw const tk_ap_trampoline) as u64;
    let offset = |label: *const u8| label as u64 - start;
    let cr3: u64;
    // SAFETY: reads CR3.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) }
    let params = trampoline::Params {
        page,
        image_len: offset(&raw const tk_ap_trampoline_end),
        gdt: offset(&raw const tk_ap_gdt),
        gdt_len: offset(&raw const tk_ap_gdt_end) - offset(&raw const tk_ap_gdt),
        protected: offset(&raw const tk_ap_protected),
        long: offset(&raw const tk_ap_long),
        cr3,
        entry: entry as usize as u64,
        stacks: STACKS.0.get() as u64,
        stack_size: STACK_SIZE as u64,
        slots: SLOTS as u32,
    }
    .bytes()?;
    // SAFETY: the image is the bytes between the two labels in .rodata.
    let image =
        unsafe { core::slice::from_raw_parts(start as *const u8, offset(&raw const tk_ap_trampoline_end) as usize) };
    hw::write_ram(page, image);
    hw::write_ram(page + trampoline::PARAMS, &params);
    Ok(())
}

/// Starts every AP of `cpus` (APIC IDs 0..cpus but `bsp`) from the
/// trampoline at `page`, waits for them, and gives the verdict.
pub fn start_aps(page: u64, cpus: u32, bsp: u8) -> Result<(), Detail> {
    let vector = smp::startup_vector(page).ok_or(detail!("no STARTUP vector for {page:#x}"))?;
    SEEN.iter().for_each(|s| s.store(0, Ordering::Relaxed));
    WRONG.iter().for_each(|w| w.store(false, Ordering::Relaxed));
    ARRIVED.store(0, Ordering::Relaxed);
    IPIS.store(0, Ordering::Relaxed);
    BSP.store(bsp, Ordering::Relaxed);
    install(page, ap_entry)?;
    let aps = cpus - 1;
    hw::start_timer();
    // Below MAX_CPUS: the casts keep the ID.
    let started = (0..cpus).filter(|&id| id != u32::from(bsp)).try_for_each(|id| start_one(id as u8, vector));
    let done = || ARRIVED.load(Ordering::Acquire) >= aps && IPIS.load(Ordering::Relaxed) >= u64::from(aps);
    let ticks = if started.is_ok() { wait(AP_WAIT_TICKS, done) } else { 0 };
    // Late IPIs or arrivals still count: a second look after a short grace.
    wait(2, || false);
    hw::stop_timer();
    started?;
    let (arrived, ipis) = (ARRIVED.load(Ordering::Acquire), IPIS.load(Ordering::Relaxed));
    println!("testkernel: smp: {arrived} of {aps} APs up and {ipis} IPIs after {ticks} ticks of 10 ms");
    let seen = core::array::from_fn(|id| SEEN[id].load(Ordering::Acquire));
    let wrong = core::array::from_fn(|id| WRONG[id].load(Ordering::Acquire));
    smp::verdict(cpus, bsp, &seen, &wrong, ipis)
}

/// INIT, STARTUP, STARTUP to APIC ID `id`, with the waits between (the
/// PIT must be running): the AP starts at the trampoline whose page
/// STARTUP vector `vector` names.
pub fn start_one(id: u8, vector: u8) -> Result<(), Detail> {
    send(Icr::init(id))?;
    wait(INIT_WAIT_TICKS, || false);
    send(Icr::startup(id, vector))?;
    wait(STARTUP_WAIT_TICKS, || false);
    // Harmless if the first one started it: a running AP ignores STARTUP.
    send(Icr::startup(id, vector))
}

/// Where the trampoline lands: on the AP's own stack, interrupts off.
extern "C" fn ap_entry(_slot: u32) -> ! {
    hw::load_idt();
    let id_register = lapic_read(lapic::ID);
    let identity = smp::identity(id_register, hw::cpuid(1, 0).ebx, hw::rdmsr(lapic::BASE_MSR), false);
    ap_main(lapic::id(id_register), identity)
}

/// An AP: reports, checks in, sends the BSP its IPI and stops.
fn ap_main(apic_id: u8, identity: Result<u8, Detail>) -> ! {
    let id = usize::from(apic_id);
    match identity {
        Ok(_) => println!("testkernel: smp: AP {apic_id} up"),
        Err(why) => {
            WRONG[id].store(true, Ordering::Release);
            println!("testkernel: smp: AP {apic_id} up, but {why}");
        }
    }
    SEEN[id].fetch_add(1, Ordering::Release);
    ARRIVED.fetch_add(1, Ordering::Release);
    enable_lapic();
    if let Err(why) = send(Icr::fixed(BSP.load(Ordering::Relaxed), smp::IPI_VECTOR)) {
        println!("testkernel: smp: AP {apic_id}: IPI to the BSP: {why}");
    }
    loop {
        // SAFETY: stops this CPU with interrupts off; nothing wakes it but INIT or NMI.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
