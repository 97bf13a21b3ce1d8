//! The tests of extended state, debug state and the intercepts ring 0
//! handles itself (see [`guest_testkernel::state`] for what they expect).
//!
//! The kernel is built soft-float, so the compiler never uses an XMM
//! register: what these tests load into the vector registers stays there
//! until they read it back. (The asm blocks that load them therefore
//! declare no vector clobbers, which the soft-float target cannot name.)

use crate::hw::state::CR4_OSFXSR;
use crate::hw::{self, TrapFrame};
use crate::println;
use crate::ring3::{self, Routine};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use guest_testkernel::state::{self, CR4_OSXSAVE, Outcome, XSETBV_CASES, dr6, dr7, xcr0};
use guest_testkernel::{Detail, detail, isolation};

type Result = core::result::Result<(), Detail>;

const CR0_AM: u64 = 1 << 18;
const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_RF: u64 = 1 << 16;
const DEBUG: u64 = 1;
const ALIGNMENT_CHECK: u8 = 17;
const GENERAL_PROTECTION: u8 = 13;
const INVALID_OPCODE: u8 = 6;

// ---- Registers -----------------------------------------------------------

macro_rules! debug_register {
    ($read:ident, $write:ident, $reg:literal) => {
        fn $read() -> u64 {
            let value: u64;
            // SAFETY: reading a debug register has no side effects.
            unsafe { asm!(concat!("mov {}, ", $reg), out(reg) value, options(nomem, nostack, preserves_flags)) }
            value
        }

        fn $write(value: u64) {
            // SAFETY: the tests set breakpoints only where they expect
            // (and handle) the #DB, or on addresses nothing uses.
            unsafe { asm!(concat!("mov ", $reg, ", {}"), in(reg) value, options(nomem, nostack, preserves_flags)) }
        }
    };
}

debug_register!(dr0, set_dr0, "dr0");
debug_register!(dr1, set_dr1, "dr1");
debug_register!(dr2, set_dr2, "dr2");
debug_register!(dr3, set_dr3, "dr3");
debug_register!(dr6, set_dr6, "dr6");
debug_register!(dr7, set_dr7, "dr7");

fn read_cr0() -> u64 {
    let value: u64;
    // SAFETY: reading CR0 has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

fn write_cr0(value: u64) {
    // SAFETY: the tests toggle only AM (alignment checking at CPL 3).
    unsafe { asm!("mov cr0, {}", in(reg) value, options(nostack, preserves_flags)) }
}

fn xgetbv() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads XCR0 (CR4.OSXSAVE is set by the caller).
    unsafe { asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    u64::from(hi) << 32 | u64::from(lo)
}

/// Sets CR4 bits; a #GP means the machine does not offer them.
fn enable_cr4(bits: u64) -> Result {
    hw::write_cr4_checked(hw::read_cr4() | bits).map_err(|f| detail!("setting CR4 bits {bits:#x}: {f}"))
}

fn disable_cr4(bits: u64) {
    let _ = hw::write_cr4_checked(hw::read_cr4() & !bits);
}

fn load_xmm(values: &[[u64; 4]; 16]) {
    // SAFETY: loads XMM0-XMM15 from `values` (16 x 32 bytes); CR4.OSFXSR is set.
    unsafe {
        asm!(
            "movdqu xmm0, [{p}]", "movdqu xmm1, [{p} + 32]", "movdqu xmm2, [{p} + 64]", "movdqu xmm3, [{p} + 96]",
            "movdqu xmm4, [{p} + 128]", "movdqu xmm5, [{p} + 160]", "movdqu xmm6, [{p} + 192]",
            "movdqu xmm7, [{p} + 224]", "movdqu xmm8, [{p} + 256]", "movdqu xmm9, [{p} + 288]",
            "movdqu xmm10, [{p} + 320]", "movdqu xmm11, [{p} + 352]", "movdqu xmm12, [{p} + 384]",
            "movdqu xmm13, [{p} + 416]", "movdqu xmm14, [{p} + 448]", "movdqu xmm15, [{p} + 480]",
            p = in(reg) values.as_ptr(), options(readonly, nostack, preserves_flags)
        )
    }
}

fn store_xmm(values: &mut [[u64; 4]; 16]) {
    // SAFETY: stores XMM0-XMM15 into the low halves of `values`.
    unsafe {
        asm!(
            "movdqu [{p}], xmm0", "movdqu [{p} + 32], xmm1", "movdqu [{p} + 64], xmm2", "movdqu [{p} + 96], xmm3",
            "movdqu [{p} + 128], xmm4", "movdqu [{p} + 160], xmm5", "movdqu [{p} + 192], xmm6",
            "movdqu [{p} + 224], xmm7", "movdqu [{p} + 256], xmm8", "movdqu [{p} + 288], xmm9",
            "movdqu [{p} + 320], xmm10", "movdqu [{p} + 352], xmm11", "movdqu [{p} + 384], xmm12",
            "movdqu [{p} + 416], xmm13", "movdqu [{p} + 448], xmm14", "movdqu [{p} + 480], xmm15",
            p = in(reg) values.as_mut_ptr(), options(nostack, preserves_flags)
        )
    }
}

fn load_ymm(values: &[[u64; 4]; 16]) {
    // SAFETY: loads YMM0-YMM15 from `values`; XCR0 enables AVX.
    unsafe {
        asm!(
            "vmovdqu ymm0, [{p}]", "vmovdqu ymm1, [{p} + 32]", "vmovdqu ymm2, [{p} + 64]",
            "vmovdqu ymm3, [{p} + 96]", "vmovdqu ymm4, [{p} + 128]", "vmovdqu ymm5, [{p} + 160]",
            "vmovdqu ymm6, [{p} + 192]", "vmovdqu ymm7, [{p} + 224]", "vmovdqu ymm8, [{p} + 256]",
            "vmovdqu ymm9, [{p} + 288]", "vmovdqu ymm10, [{p} + 320]", "vmovdqu ymm11, [{p} + 352]",
            "vmovdqu ymm12, [{p} + 384]", "vmovdqu ymm13, [{p} + 416]", "vmovdqu ymm14, [{p} + 448]",
            "vmovdqu ymm15, [{p} + 480]",
            p = in(reg) values.as_ptr(), options(readonly, nostack, preserves_flags)
        )
    }
}

fn store_ymm(values: &mut [[u64; 4]; 16]) {
    // SAFETY: stores YMM0-YMM15 into `values`.
    unsafe {
        asm!(
            "vmovdqu [{p}], ymm0", "vmovdqu [{p} + 32], ymm1", "vmovdqu [{p} + 64], ymm2",
            "vmovdqu [{p} + 96], ymm3", "vmovdqu [{p} + 128], ymm4", "vmovdqu [{p} + 160], ymm5",
            "vmovdqu [{p} + 192], ymm6", "vmovdqu [{p} + 224], ymm7", "vmovdqu [{p} + 256], ymm8",
            "vmovdqu [{p} + 288], ymm9", "vmovdqu [{p} + 320], ymm10", "vmovdqu [{p} + 352], ymm11",
            "vmovdqu [{p} + 384], ymm12", "vmovdqu [{p} + 416], ymm13", "vmovdqu [{p} + 448], ymm14",
            "vmovdqu [{p} + 480], ymm15",
            p = in(reg) values.as_mut_ptr(), options(nostack, preserves_flags)
        )
    }
}

// ---- Exceptions the tests provoke ---------------------------------------

/// #DB is expected: the handler counts it and records DR6, DR7 and RIP.
static DB_ARMED: AtomicBool = AtomicBool::new(false);
/// Resume with RF set (after an instruction breakpoint, a fault).
static DB_RESUME_FLAG: AtomicBool = AtomicBool::new(false);
static DB_COUNT: AtomicU64 = AtomicU64::new(0);
static DB_DR6: AtomicU64 = AtomicU64::new(0);
static DB_DR7: AtomicU64 = AtomicU64::new(0);
static DB_RIP: AtomicU64 = AtomicU64::new(0);

/// Called by the trap handler first: true if the exception was one of ours.
pub fn trap(frame: &mut TrapFrame) -> bool {
    if frame.vector == DEBUG && DB_ARMED.load(Ordering::Relaxed) {
        DB_COUNT.fetch_add(1, Ordering::Relaxed);
        DB_DR6.store(dr6(), Ordering::Relaxed);
        DB_DR7.store(dr7(), Ordering::Relaxed);
        DB_RIP.store(frame.rip, Ordering::Relaxed);
        set_dr6(dr6::CLEAR);
        frame.rflags &= !RFLAGS_TF;
        if DB_RESUME_FLAG.load(Ordering::Relaxed) {
            frame.rflags |= RFLAGS_RF;
        }
        return true;
    }
    ring3::trap(frame)
}

/// What the #DB handler saw: (count, DR6, DR7, RIP).
struct Seen {
    count: u64,
    dr6: u64,
    dr7: u64,
    rip: u64,
}

/// Runs `f` with #DB expected; `f` returns the RIP the #DB should report.
fn expect_debug(resume_flag: bool, f: impl FnOnce() -> u64) -> (Seen, u64) {
    DB_COUNT.store(0, Ordering::Relaxed);
    DB_RESUME_FLAG.store(resume_flag, Ordering::Relaxed);
    DB_ARMED.store(true, Ordering::Relaxed);
    let expected = f();
    DB_ARMED.store(false, Ordering::Relaxed);
    let seen = Seen {
        count: DB_COUNT.load(Ordering::Relaxed),
        dr6: DB_DR6.load(Ordering::Relaxed),
        dr7: DB_DR7.load(Ordering::Relaxed),
        rip: DB_RIP.load(Ordering::Relaxed),
    };
    (seen, expected)
}

/// One #DB at `expected` with `causes` (and no other DR6 cause bit) in DR6.
fn check_debug(what: &str, (seen, expected): (Seen, u64), causes: u64, others: u64) -> Result {
    if seen.count != 1 {
        return Err(detail!("{what}: {} #DB delivered, expected 1", seen.count));
    }
    if seen.rip != expected {
        return Err(detail!("{what}: #DB at rip {:#x}, expected {expected:#x}", seen.rip));
    }
    if seen.dr6 & causes != causes || seen.dr6 & others != 0 {
        return Err(detail!("{what}: DR6 {:#x}, expected {causes:#x} set and {others:#x} clear", seen.dr6));
    }
    println!("testkernel: debug: {what}: #DB at {:#x}, DR6 {:#x}", seen.rip, seen.dr6);
    Ok(())
}

// ---- The tests -----------------------------------------------------------

/// `state-isolation`: DR0-DR3, DR7, XCR0 and the vector registers stay
/// this partition's while another runs.
pub fn isolation(cmdline: &str) -> Result {
    let mark = guest_testkernel::mark_option(cmdline).ok_or(detail!("no mark=<word> on the command line"))?;
    let xcr0 = state::xcr0_option(cmdline)?;
    let avx = xcr0 & xcr0::AVX != 0;
    enable_cr4(CR4_OSFXSR | CR4_OSXSAVE)?;
    hw::xsetbv_checked(0, xcr0).map_err(|f| detail!("XSETBV {xcr0:#x}: {f}"))?;
    let addresses = state::debug_addresses(mark);
    set_dr0(addresses[0]);
    set_dr1(addresses[1]);
    set_dr2(addresses[2]);
    set_dr3(addresses[3]);
    set_dr7(state::ISOLATION_DR7);
    let mut patterns: [[u64; 4]; 16] = core::array::from_fn(|n| state::vector_pattern(mark, n));
    if avx {
        load_ymm(&patterns);
    } else {
        load_xmm(&patterns);
        for p in &mut patterns {
            p[2..].fill(0);
        }
    }
    println!(
        "testkernel: state-isolation: mark {mark}: DR0 {:#x}, XCR0 {xcr0:#x}, {}0 {:#x}",
        addresses[0],
        if avx { "YMM" } else { "XMM" },
        patterns[0][0]
    );
    let (ticks, iterations) = hw::spin(isolation::WAIT_TSC, isolation::WAIT_ITERATIONS);
    let now = [dr0(), dr1(), dr2(), dr3()];
    let dr7_now = dr7();
    let xcr0_now = xgetbv();
    let mut vectors = [[0u64; 4]; 16];
    if avx {
        store_ymm(&mut vectors);
    } else {
        store_xmm(&mut vectors);
    }
    set_dr7(dr7::FIXED_1);
    println!("testkernel: state-isolation: waited {ticks} TSC ticks, {iterations} iterations");
    if let Some(n) = (0..4).find(|&n| now[n] != addresses[n]) {
        return Err(detail!("DR{n} is {:#x}, was set to {:#x}", now[n], addresses[n]));
    }
    if dr7_now & 0xffff_00ff != state::ISOLATION_DR7 & 0xffff_00ff {
        return Err(detail!("DR7 is {dr7_now:#x}, was set to {:#x}", state::ISOLATION_DR7));
    }
    if xcr0_now != xcr0 {
        return Err(detail!("XCR0 is {xcr0_now:#x}, was set to {xcr0:#x}"));
    }
    if let Some(n) = (0..16).find(|&n| vectors[n] != patterns[n]) {
        return Err(detail!("vector register {n} is {:#x?}", vectors[n]));
    }
    Ok(())
}

/// `xsetbv`: the SDM's outcome for each case, XCR0 read back after each
/// accepted one, #UD without CR4.OSXSAVE and #GP at CPL 3.
pub fn xsetbv() -> Result {
    disable_cr4(CR4_OSXSAVE);
    match hw::xsetbv_checked(0, xcr0::X87) {
        Err(f) if f.vector == INVALID_OPCODE => {}
        other => return Err(detail!("XSETBV without CR4.OSXSAVE: {other:?}, expected #UD")),
    }
    enable_cr4(CR4_OSFXSR | CR4_OSXSAVE)?;
    for case in XSETBV_CASES {
        let before = xgetbv();
        let got = match hw::xsetbv_checked(case.index, case.value) {
            Ok(()) => Outcome::Completes,
            Err(f) if f.vector == INVALID_OPCODE => Outcome::InvalidOpcode,
            Err(f) if f.is_gp() && f.error == 0 => Outcome::GeneralProtection,
            Err(f) => return Err(detail!("XSETBV {}: {f}", case.what)),
        };
        if got != case.expect {
            return Err(detail!("XSETBV {}: {got:?}, expected {:?}", case.what, case.expect));
        }
        let want = if got == Outcome::Completes { case.value } else { before };
        let now = xgetbv();
        if now != want {
            return Err(detail!("after XSETBV {}: XCR0 {now:#x}, expected {want:#x}", case.what));
        }
    }
    let fault = ring3::call(Routine::Xsetbv, 0, xcr0::X87 | xcr0::SSE);
    let expected = Routine::Xsetbv.address();
    if (fault.vector, fault.error, fault.rip) != (GENERAL_PROTECTION, 0, expected) {
        return Err(detail!("XSETBV at CPL 3: {fault:x?}, expected #GP(0) at {expected:#x}"));
    }
    let now = xgetbv();
    hw::xsetbv_checked(0, xcr0::X87).map_err(|f| detail!("restoring XCR0: {f}"))?;
    disable_cr4(CR4_OSXSAVE);
    if now != xcr0::X87 {
        return Err(detail!("XCR0 {now:#x} after XSETBV at CPL 3, expected {:#x}", xcr0::X87));
    }
    println!("testkernel: xsetbv: {} cases and CPL 3 as the SDM says", XSETBV_CASES.len());
    Ok(())
}

/// `intercepts`: INVD and WBINVD complete and lose nothing; RDPMC #GP(0).
pub fn intercepts() -> Result {
    let mut cell = 0u64;
    let pattern = 0x1bad_cafe_0000_0001;
    // SAFETY: `cell` is a local; INVD and WBINVD (their effect on the
    // caches is the hypervisor's to decide) come between a store and a load.
    let back = unsafe {
        core::ptr::write_volatile(&mut cell, pattern);
        asm!("invd", options(nostack, preserves_flags));
        let after_invd = core::ptr::read_volatile(&cell);
        core::ptr::write_volatile(&mut cell, !pattern);
        asm!("wbinvd", options(nostack, preserves_flags));
        (after_invd, core::ptr::read_volatile(&cell))
    };
    if back != (pattern, !pattern) {
        return Err(detail!("RAM after INVD/WBINVD: {:#x}/{:#x}", back.0, back.1));
    }
    for counter in [0, 1 << 30] {
        match hw::rdpmc_checked(counter) {
            Err(f) if f.is_gp() && f.error == 0 => {}
            other => return Err(detail!("RDPMC {counter:#x}: {other:x?}, expected #GP(0)")),
        }
    }
    println!("testkernel: intercepts: INVD and WBINVD completed, RDPMC raised #GP(0)");
    Ok(())
}

/// `debug`: #DB for each cause, delivered once, with DR6 saying which.
pub fn debug(cmdline: &str) -> Result {
    set_dr6(dr6::CLEAR);
    check_debug(
        "single step",
        expect_debug(false, || {
            let expected: u64;
            // SAFETY: sets TF for one instruction; the #DB handler clears it.
            unsafe {
                asm!("lea {e}, [rip + 2f]", "pushfq", "or qword ptr [rsp], 0x100", "popfq", "nop", "2:",
                     e = out(reg) expected)
            }
            expected
        }),
        dr6::BS,
        dr6::BD,
    )?;
    let mut unknown = None;
    let icebp = expect_debug(false, || {
        let (after, fault) = hw::icebp_checked();
        unknown = fault;
        after
    });
    match unknown {
        None => check_debug("ICEBP", icebp, 0, dr6::BS | dr6::BD)?,
        Some(f) if f.vector == INVALID_OPCODE && guest_testkernel::lacks(cmdline, "icebp") => {
            println!("testkernel: debug: ICEBP: #UD: this CPU does not know INT1 (lacks=icebp)")
        }
        Some(f) => return Err(detail!("ICEBP: {f}, expected #DB")),
    }
    let cell = AtomicU64::new(0);
    check_debug(
        "data breakpoint",
        expect_debug(false, || {
            set_dr0(cell.as_ptr() as u64);
            set_dr7(dr7::breakpoint(0, dr7::RW_WRITE, dr7::LEN_4) | dr7::FIXED_1);
            let expected: u64;
            // SAFETY: a write to `cell`, which breakpoint 0 watches.
            unsafe {
                asm!("lea {e}, [rip + 2f]", "mov dword ptr [{c}], 1", "2:", c = in(reg) cell.as_ptr(),
                     e = out(reg) expected, options(nostack))
            }
            set_dr7(dr7::FIXED_1);
            expected
        }),
        dr6::B0,
        dr6::BS | dr6::BD,
    )?;
    check_debug(
        "instruction breakpoint",
        expect_debug(true, || {
            let at: u64;
            // SAFETY: breakpoint 0 on the `nop` at label 3, which faults
            // once (the handler resumes with RF set).
            unsafe {
                asm!("lea {a}, [rip + 3f]", "mov dr0, {a}", "mov {t}, {dr7}", "mov dr7, {t}", "jmp 3f", "3:", "nop",
                     a = out(reg) at, t = out(reg) _,
                     dr7 = const dr7::breakpoint(0, dr7::RW_EXECUTE, dr7::LEN_1) | dr7::FIXED_1,
                     options(nostack))
            }
            set_dr7(dr7::FIXED_1);
            at
        }),
        dr6::B0,
        dr6::BS | dr6::BD,
    )?;
    let (seen, expected) = expect_debug(false, || {
        let at: u64;
        // SAFETY: with DR7.GD set, the read of DR0 raises #DB before it
        // executes; delivery clears GD, so it runs when the handler returns.
        unsafe {
            asm!("mov {t}, {gd}", "mov dr7, {t}", "lea {a}, [rip + 3f]", "3:", "mov {t}, dr0",
                 a = out(reg) at, t = out(reg) _, gd = const dr7::GD | dr7::FIXED_1, options(nostack))
        }
        at
    });
    if seen.count == 0 && guest_testkernel::lacks(cmdline, "gd") {
        println!("testkernel: debug: general detect: no #DB: this CPU ignores DR7.GD (lacks=gd)");
    } else if seen.dr7 & dr7::GD != 0 {
        return Err(detail!("general detect: DR7 {:#x} in the handler: GD still set", seen.dr7));
    } else {
        check_debug("general detect", (seen, expected), dr6::BD, dr6::BS)?;
    }
    set_dr7(dr7::FIXED_1);
    set_dr0(0);
    Ok(())
}

/// `alignment`: a misaligned load at CPL 3 with CR0.AM and RFLAGS.AC.
pub fn alignment(cmdline: &str) -> Result {
    write_cr0(read_cr0() | CR0_AM);
    let fault = ring3::call(Routine::Load, ring3::RFLAGS_AC, ring3::user_data() + 1);
    write_cr0(read_cr0() & !CR0_AM);
    let expected = Routine::Load.address();
    if (fault.vector, fault.error, fault.rip) == (ALIGNMENT_CHECK, 0, expected) {
        println!("testkernel: alignment: #AC(0) at {expected:#x}");
        return Ok(());
    }
    if fault.vector == INVALID_OPCODE && guest_testkernel::lacks(cmdline, "ac") {
        println!("testkernel: alignment: no #AC: this CPU does not check alignment (lacks=ac)");
        return Ok(());
    }
    Err(detail!("misaligned load at CPL 3: {fault:x?}, expected #AC(0) at {expected:#x}"))
}
