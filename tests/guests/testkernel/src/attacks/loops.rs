//! The event-delivery loops of CVE-2015-5307 (#AC) and CVE-2015-8104
//! (#DB), each on an AP that never comes back, while the BSP carries on.
//!
//! - #AC: an AP in 32-bit protected mode at CPL 3 with CR0.AM and
//!   EFLAGS.AC set, its stack pointer odd, and the #AC gate leading to a
//!   CPL-3 handler: delivering #AC pushes onto the misaligned stack, which
//!   raises #AC, which is delivered the same way, forever. A CPU spins in
//!   microcode; only a hypervisor that intercepts #AC (and reflects it)
//!   keeps the host responsive.
//! - #DB: an AP in 64-bit mode whose #DB gate uses IST1, with a data
//!   breakpoint on the IST1 slot where delivery pushes SS: every #DB
//!   delivery triggers the next.
//!
//! An emulator may not loop (QEMU does not check alignment at all): the AP
//! then spins in its handler or after it. Either way the AP is gone for
//! good; the BSP makes exits for a second to show it still runs, and the
//! partition's end stops the APs. Whether the host stayed responsive is
//! seen outside. `loops=ac`, `loops=db` or `loops=ac,db` (the default)
//! chooses the loops: QEMU 7.2's TCG aborts on its own assertion when a
//! data breakpoint hits during event delivery, so its runs leave out `db`.

use super::{Ctx, Failures, Outcome, quiet_lapic, say};
use crate::ap;
use crate::hw::{self, state};
use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};
use guest_testkernel::hostile::Tally;
use guest_testkernel::smp::{Icr, startup_vector};
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileLoops;

// The #AC loop's AP code, copied to a page below 1 MiB. Offsets from the
// page: the image from 0 (its GDT inside), the start counter at 0x800,
// the user stack below 0xb01 (odd), the IDT at 0xc00, the kernel stack for
// the IRET frame below 0xe00, parameters at 0xf00 (GDT pointer), 0xf08
// (far pointer to the 32-bit code), 0xf10 (IDT pointer).
global_asm!(
    r#"
    .pushsection .rodata.tk_ac_loop, "a"
    .balign 16
    .global tk_ac_loop
    .code16
tk_ac_loop:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    xorl %ebx, %ebx
    movw %ax, %bx
    shll $4, %ebx
    lgdtl 0xf00
    movl %cr0, %eax
    andl $0x9fffffff, %eax
    orl $0x00040001, %eax               /* PE, AM */
    movl %eax, %cr0
    ljmpl *0xf08

    .code32
    .global tk_ac_protected
tk_ac_protected:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    lidt 0xf10(%ebx)
    lock incl 0x800(%ebx)
    leal 0xe00(%ebx), %esp              /* a kernel stack for the IRET frame */
    pushl $0x23                         /* SS: user data */
    leal 0xb01(%ebx), %eax              /* an odd user stack pointer */
    pushl %eax
    pushl $0x40002                      /* EFLAGS: AC, interrupts off */
    pushl $0x1b                         /* CS: user code */
    leal (tk_ac_user - tk_ac_loop)(%ebx), %eax
    pushl %eax
    iretl

    .global tk_ac_user
tk_ac_user:
    movl 1(%esp), %eax                  /* misaligned at CPL 3: #AC */
1:  jmp 1b

    .global tk_ac_handler
tk_ac_handler:                          /* if ever reached: pop the error code, again */
    addl $4, %esp
    iretl

    .global tk_ac_spin
tk_ac_spin:
    jmp tk_ac_spin

    .balign 8
    .global tk_ac_gdt
tk_ac_gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF            /* 0x08: code, CPL 0 */
    .quad 0x00CF92000000FFFF            /* 0x10: data, CPL 0 */
    .quad 0x00CFFA000000FFFF            /* 0x18: code, CPL 3 */
    .quad 0x00CFF2000000FFFF            /* 0x20: data, CPL 3 */
    .global tk_ac_gdt_end
tk_ac_gdt_end:
    .global tk_ac_loop_end
tk_ac_loop_end:

    .code64
    .popsection

    .section .text
    .balign 16
    .global tk_db_handler
tk_db_handler:                          /* if ever reached: back, and spin */
    iretq
    .global tk_db_spin
tk_db_spin:
    cli
    hlt
    jmp tk_db_spin
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static tk_ac_loop: u8;
    static tk_ac_protected: u8;
    static tk_ac_handler: u8;
    static tk_ac_spin: u8;
    static tk_ac_gdt: u8;
    static tk_ac_gdt_end: u8;
    static tk_ac_loop_end: u8;
    static tk_db_handler: u8;
    static tk_db_spin: u8;
}

const AC_COUNTER: u64 = 0x800;
const AC_IDT: u64 = 0xc00;

/// Copies the #AC loop's code to `page` with its GDT, IDT and pointers.
fn install_ac(page: u64) {
    let start = (&raw const tk_ac_loop) as u64;
    let offset = |label: *const u8| label as u64 - start;
    let len = offset(&raw const tk_ac_loop_end);
    assert!(len <= AC_COUNTER, "the #AC loop's image overlaps its counter");
    // SAFETY: the image is the bytes between the two labels in .rodata.
    let image = unsafe { core::slice::from_raw_parts(start as *const u8, len as usize) };
    hw::write_ram(page, image);
    let gdt = page + offset(&raw const tk_ac_gdt);
    let gdt_len = offset(&raw const tk_ac_gdt_end) - offset(&raw const tk_ac_gdt);
    let mut params = [0u8; 24];
    params[..2].copy_from_slice(&((gdt_len - 1) as u16).to_le_bytes());
    params[2..6].copy_from_slice(&(gdt as u32).to_le_bytes());
    params[8..12].copy_from_slice(&((page + offset(&raw const tk_ac_protected)) as u32).to_le_bytes());
    params[12..14].copy_from_slice(&0x08u16.to_le_bytes());
    params[16..18].copy_from_slice(&(32 * 8 - 1u16).to_le_bytes());
    params[18..22].copy_from_slice(&((page + AC_IDT) as u32).to_le_bytes());
    hw::write_ram(page + 0xf00, &params);
    // 32-bit interrupt gates (type 0xE, DPL 3) to CPL-3 code (0x18): #AC
    // to its handler, the rest to a spin.
    for vector in 0..32u64 {
        let target = page + offset(if vector == 17 { &raw const tk_ac_handler } else { &raw const tk_ac_spin });
        let gate = (target & 0xffff) | 0x18 << 16 | 0xee00 << 32 | (target >> 16) << 48;
        hw::write_ram(page + AC_IDT + 8 * vector, &gate.to_le_bytes());
    }
    hw::write_ram(page + AC_COUNTER, &[0; 4]);
}

// The #DB loop's AP: its own GDT (with a 64-bit TSS), IDT and IST stack.
#[repr(C, align(16))]
struct DbLoop {
    gdt: [u64; 5],
    tss: [u8; 104],
    idt: [u64; 512],
    ist: [u8; 4096],
}

struct Shared(UnsafeCell<DbLoop>);

// SAFETY: written by the one AP that runs the #DB loop, once.
unsafe impl Sync for Shared {}

static DB_LOOP: Shared = Shared(UnsafeCell::new(DbLoop { gdt: [0; 5], tss: [0; 104], idt: [0; 512], ist: [0; 4096] }));
static DB_ARRIVED: AtomicU32 = AtomicU32::new(0);

fn gate(handler: u64, ist: u64) -> (u64, u64) {
    let low = (handler & 0xffff) | 0x08 << 16 | ist << 32 | 0x8e << 40 | ((handler >> 16) & 0xffff) << 48;
    (low, handler >> 32)
}

/// The #DB loop's AP, from the trampoline (64-bit, its own stack).
extern "C" fn db_loop(_slot: u32) -> ! {
    // SAFETY: this AP alone uses `DB_LOOP` (the BSP starts one AP here),
    // and what it loads (GDT, TSS, IDT) stays valid for good: statics.
    unsafe {
        let l = &mut *DB_LOOP.0.get();
        let ist_top = l.ist.as_ptr() as u64 + 4096;
        l.tss[36..44].copy_from_slice(&ist_top.to_le_bytes());
        l.tss[102..104].copy_from_slice(&104u16.to_le_bytes());
        let tss = l.tss.as_ptr() as u64;
        l.gdt = [
            0,
            0x00AF_9B00_0000_FFFF,
            0x00CF_9300_0000_FFFF,
            103 | (tss & 0xff_ffff) << 16 | 0x89 << 40 | ((tss >> 24) & 0xff) << 56,
            tss >> 32,
        ];
        let (handler, spin) = ((&raw const tk_db_handler) as u64, (&raw const tk_db_spin) as u64);
        for vector in 0..256 {
            let (low, high) = if vector == 1 { gate(handler, 1) } else { gate(spin, 0) };
            l.idt[2 * vector] = low;
            l.idt[2 * vector + 1] = high;
        }
        #[repr(C, packed)]
        struct Pointer {
            limit: u16,
            base: u64,
        }
        let gdt = Pointer { limit: 5 * 8 - 1, base: l.gdt.as_ptr() as u64 };
        let idt = Pointer { limit: 256 * 16 - 1, base: l.idt.as_ptr() as u64 };
        asm!(
            "lgdt [{gdt}]",
            "push 0x08",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {tmp:e}, 0x10",
            "mov ds, {tmp:e}",
            "mov ss, {tmp:e}",
            "mov {tmp:e}, 0x18",
            "ltr {tmp:x}",
            "lidt [{idt}]",
            gdt = in(reg) &gdt, idt = in(reg) &idt, tmp = out(reg) _,
        );
        DB_ARRIVED.fetch_add(1, Ordering::Release);
        // A write breakpoint (RW 01) of 8 bytes (LEN 10) on where #DB
        // delivery through IST1 pushes SS; then a write there.
        let watched = ist_top - 8;
        state::set_dr(0, watched);
        state::set_dr(7, 0x400 | 1 | 0b01 << 16 | 0b10 << 18);
        asm!("mov qword ptr [{}], 0", in(reg) watched, options(nostack));
        loop {
            asm!("pause", options(nomem, nostack));
        }
    }
}

fn ac_starts(page: u64) -> u32 {
    let mut b = [0u8; 4];
    hw::read_ram(page + AC_COUNTER, &mut b);
    u32::from_le_bytes(b)
}

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    if ctx.cpus < 2 {
        say!(TEST, "one CPU: the loops need an AP each");
        return f.finish(&t);
    }
    quiet_lapic();
    let trampoline = ctx.low_page(&[])?;
    ap::install(trampoline, db_loop)?;
    let chosen = guest_testkernel::option(ctx.cmdline, "loops").unwrap_or("ac,db");
    let (ac, db) = (chosen.split(',').any(|l| l == "ac"), chosen.split(',').any(|l| l == "db"));
    let (db_ap, ac_ap) = (1u8, if db { 2u8 } else { 1 });
    let go = |id: u8, page: u64| -> Result<(), guest_testkernel::Detail> {
        let vector = startup_vector(page).ok_or(detail!("no STARTUP vector for {page:#x}"))?;
        ap::send(Icr::init(id))?;
        ctx.wait(10, || false);
        ap::send(Icr::startup(id, vector))?;
        ctx.wait(10, || false);
        Ok(())
    };
    if db {
        go(db_ap, trampoline)?;
        let arrived = ctx.wait(1000, || DB_ARRIVED.load(Ordering::Acquire) != 0);
        t.note(false);
        f.require(DB_ARRIVED.load(Ordering::Acquire) == 1, || {
            detail!("the #DB loop's AP did not arrive ({arrived} ms)")
        });
    }
    if ac && u32::from(ac_ap) < ctx.cpus {
        let page = ctx.low_page(&[trampoline])?;
        install_ac(page);
        go(ac_ap, page)?;
        let waited = ctx.wait(1000, || ac_starts(page) != 0);
        t.note(false);
        f.require(ac_starts(page) == 1, || {
            detail!("the #AC loop's AP started {} times ({waited} ms)", ac_starts(page))
        });
    }
    // The BSP runs on while the APs loop: a second of its own work (a
    // hypercall-free stream of port exits, each answered).
    let (start, mut exits) = (hw::rdtsc(), 0u64);
    while hw::rdtsc().wrapping_sub(start) < ctx.tsc_ticks(1000) {
        hw::outb(0x80, 0);
        exits += 1;
    }
    say!(TEST, "loops {chosen}: the BSP made {exits} exits in a second with them going");
    f.require(exits > 0, || detail!("no exit answered while the loops ran"));
    f.finish(&t)
}
