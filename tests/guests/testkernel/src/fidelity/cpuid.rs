//! Fidelity: CPUID (SDM Vol. 2A "CPUID"; APM Vol. 3 appendix E). Both VPs
//! read the same leaves; what they see must agree but for the APIC ID and
//! the bits that follow each VP's own CR4 and XCR0. Then the BSP checks the
//! leaves against the architecture: the vendor, the maximum leaves, the
//! features the virtual machine offers (x2APIC, TSC-deadline, MTRR, PAT,
//! the hypervisor bit) and hides (VMX, SVM, MONITOR, the PMU, MCE), the
//! topology of 2 VPs, and XSAVE against what XSETBV accepts.

use super::{Outcome, checks};
use crate::checks::{fail_unless, ok};
use crate::hw::state::{CR4_OSFXSR, CR4_OSXSAVE};
use crate::{ap, hw};
use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};
use guest_testkernel::smp::{self, lapic};
use guest_testkernel::{Detail, detail};

/// The leaves both VPs read, (leaf, subleaf).
const LEAVES: [(u32, u32); 12] = [
    (0, 0),
    (1, 0),
    (6, 0),
    (7, 0),
    (0xb, 0),
    (0xb, 1),
    (0xd, 0),
    (0xd, 1),
    (0x8000_0000, 0),
    (0x8000_0001, 0),
    (0x8000_0007, 0),
    (0x8000_0008, 0),
];
const WORDS: usize = LEAVES.len() * 4;
/// The VPs compared: the BSP (APIC ID 0) and one AP (1).
const VPS: usize = 2;

static READ: [[AtomicU32; WORDS]; VPS] = [const { [const { AtomicU32::new(0) }; WORDS] }; VPS];
static DONE: [AtomicU32; VPS] = [const { AtomicU32::new(0) }; VPS];

/// Bits of leaf 1 ECX and leaf 0xD (subleaf 0 EBX) that follow the VP's
/// own CR4.OSXSAVE and XCR0, and the APIC ID fields.
const OSXSAVE: u32 = 1 << 27;

fn record() {
    let id = lapic::id(ap::lapic_id_register()) as usize;
    let Some(slot) = READ.get(id) else { return };
    for (n, &(leaf, subleaf)) in LEAVES.iter().enumerate() {
        let r = hw::cpuid(leaf, subleaf);
        for (i, w) in [r.eax, r.ebx, r.ecx, r.edx].into_iter().enumerate() {
            slot[4 * n + i].store(w, Ordering::Relaxed);
        }
    }
    DONE[id].store(1, Ordering::Release);
}

extern "C" fn ap_entry(_slot: u32) -> ! {
    hw::load_idt();
    record();
    loop {
        // SAFETY: stops this CPU with interrupts off; nothing wakes it but INIT or NMI.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// What VP `id` read of leaf `(leaf, subleaf)` (one of [`LEAVES`]).
fn seen(id: usize, leaf: u32, subleaf: u32) -> [u32; 4] {
    let n = LEAVES.iter().position(|&l| l == (leaf, subleaf)).unwrap_or(0);
    core::array::from_fn(|i| READ[id][4 * n + i].load(Ordering::Relaxed))
}

/// A VP's leaves without the APIC ID fields (leaf 1 EBX[31:24], 0xB EDX)
/// and what follows its CR4 and XCR0 (OSXSAVE, leaf 0xD.0 EBX).
fn shared(id: usize) -> [[u32; 4]; LEAVES.len()] {
    core::array::from_fn(|n| {
        let (leaf, subleaf) = LEAVES[n];
        let mut r = seen(id, leaf, subleaf);
        match (leaf, subleaf) {
            (1, _) => (r[1], r[2]) = (r[1] & 0x00ff_ffff, r[2] & !OSXSAVE),
            (0xb, _) => r[3] = 0,
            (0xd, 0) => r[1] = 0,
            _ => {}
        }
        r
    })
}

/// Starts the AP with APIC ID 1 and waits for its leaves.
fn read_on_both(magic: u32, info: u64) -> Result<(), Detail> {
    ap::enable_lapic();
    let vector = ap::prepare(magic, info, ap_entry)?;
    hw::start_timer();
    let started = ap::start_one(1, vector);
    let done = || DONE[1].load(Ordering::Acquire) == 1;
    let ticks = if started.is_ok() { ap::wait(ap::AP_WAIT_TICKS, done) } else { 0 };
    hw::stop_timer();
    started?;
    if !done() {
        return Err(detail!("the AP did not read its CPUID within {ticks} ticks of 10 ms"));
    }
    Ok(())
}

pub fn run(magic: u32, info: u64, cmdline: &str) -> Outcome {
    let mut c = checks();
    let cpus = smp::cpus_option(cmdline)?;
    if lapic::id(ap::lapic_id_register()) != 0 {
        return Err(detail!("the BSP's APIC ID is not 0"));
    }
    record();
    let both = if cpus >= 2 { read_on_both(magic, info) } else { Err(detail!("cpus={cpus}: needs 2")) };
    if c.require(
        "the AP runs and reads CPUID (SDM Vol. 3A, MP initialization: INIT-SIPI-SIPI)",
        both.map(|()| Detail::new()),
    ) {
        let (bsp, ap) = (shared(0), shared(1));
        let differs = LEAVES.iter().zip(bsp.iter().zip(ap.iter())).find(|(_, (a, b))| a != b);
        c.require(
            "CPUID is the same on both VPs but the APIC ID and the CR4/XCR0-dependent bits (SDM Vol. 2A CPUID)",
            match differs {
                None => ok(),
                Some((&(leaf, sub), (a, b))) => Err(detail!("leaf {leaf:#x}.{sub}: BSP {a:x?}, AP {b:x?}")),
            },
        );
        let ids = |id: usize| (seen(id, 1, 0)[1] >> 24, seen(id, 0xb, 0)[3], seen(id, 0xb, 1)[3]);
        c.require(
            "each VP's initial APIC ID (leaf 1 EBX[31:24]) and x2APIC ID (leaf 0BH EDX) is its own (SDM Vol. 2A CPUID)",
            fail_unless(ids(0) == (0, 0, 0) && ids(1) == (1, 1, 1), detail!("BSP {:?}, AP {:?}", ids(0), ids(1))),
        );
    }
    leaves(&mut c);
    topology(&mut c);
    xsave(&mut c);
    c.finish()
}

/// Vendor, maximum leaves, offered and hidden features.
fn leaves(c: &mut crate::checks::Checks) {
    let l0 = seen(0, 0, 0);
    let mut vendor = [0u8; 12];
    for (i, w) in [l0[1], l0[3], l0[2]].into_iter().enumerate() {
        vendor[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
    }
    let name = core::str::from_utf8(&vendor).unwrap_or("?");
    c.require(
        "leaf 0 vendor is the host's, GenuineIntel or AuthenticAMD (SDM Vol. 2A CPUID leaf 0; APM E.3.1)",
        fail_unless(matches!(&vendor, b"GenuineIntel" | b"AuthenticAMD"), detail!("{name:?}"))
            .map(|_| detail!("{name}")),
    );
    c.require(
        "leaf 0 maximum basic leaf is at least 0DH (XSAVE) (SDM Vol. 2A CPUID)",
        fail_unless(l0[0] >= 0xd, detail!("{:#x}", l0[0])),
    );
    let e0 = seen(0, 0x8000_0000, 0)[0];
    c.require(
        "leaf 80000000H maximum extended leaf is at least 80000008H (SDM Vol. 2A CPUID; APM E.4.1)",
        fail_unless(e0 >= 0x8000_0008, detail!("{e0:#x}")),
    );
    let [_, _, ecx, edx] = seen(0, 1, 0);
    let set = |r: u32, bits: &[u32]| bits.iter().all(|b| r >> b & 1 == 1);
    let clear = |r: u32, bits: &[u32]| bits.iter().all(|b| r >> b & 1 == 0);
    c.require(
        "leaf 1 ECX x2APIC (21) and TSC-deadline (24) set: the local APIC has both (SDM Vol. 3A 11.12, 11.5.4.1)",
        fail_unless(set(ecx, &[21, 24]), detail!("ECX {ecx:#x}")),
    );
    c.require(
        "leaf 1 ECX bit 31 set: a hypervisor is present (TLFS 2.2; SDM Vol. 2A CPUID)",
        fail_unless(set(ecx, &[31]), detail!("ECX {ecx:#x}")),
    );
    c.require(
        "leaf 1 EDX APIC (9), MTRR (12), PAT (16) set; MCE (7), MCA (14) clear: the MSRs are emulated or absent (SDM Vol. 2A Table 3-11)",
        fail_unless(set(edx, &[9, 12, 16]) && clear(edx, &[7, 14]), detail!("EDX {edx:#x}")),
    );
    c.require(
        "leaf 1 ECX VMX (5), SMX (6), MONITOR (3), PDCM (15) clear: not virtualised (SDM Vol. 2A Table 3-10)",
        fail_unless(clear(ecx, &[3, 5, 6, 15]), detail!("ECX {ecx:#x}")),
    );
    let svm = seen(0, 0x8000_0001, 0)[2];
    c.require(
        "leaf 80000001H ECX SVM (2) clear: no nested virtualisation (APM E.4.2)",
        fail_unless(clear(svm, &[2]), detail!("ECX {svm:#x}")),
    );
    let pmu = hw::cpuid(0xa, 0);
    c.require(
        "leaf 0AH (architectural performance monitoring) is all zeros: no PMU (SDM Vol. 3B 21.2)",
        fail_unless(
            [pmu.eax, pmu.ebx, pmu.ecx, pmu.edx] == [0; 4],
            detail!("{:#x} {:#x} {:#x} {:#x}", pmu.eax, pmu.ebx, pmu.ecx, pmu.edx),
        ),
    );
    c.require(
        "MONITOR, which leaf 1 does not offer, raises #UD (SDM Vol. 2B MONITOR, exceptions)",
        match hw::monitor_checked(0x1000) {
            Err(f) if f.vector == 6 => ok(),
            Err(f) => Err(detail!("{f}")),
            Ok(()) => Err(detail!("MONITOR ran")),
        },
    );
    let l7 = seen(0, 7, 0);
    c.require(
        "leaf 7 hides TSC_ADJUST (EBX 1) and the speculation-control MSRs (EDX 26-31), which are not emulated (SDM Vol. 2A Table 3-8)",
        fail_unless(l7[1] & 2 == 0 && l7[3] & 0xfc00_0000 == 0, detail!("EBX {:#x} EDX {:#x}", l7[1], l7[3])),
    );
    let l6 = seen(0, 6, 0)[0];
    c.require(
        "leaf 6 EAX ARAT (2): the APIC timer runs in every C-state (SDM Vol. 2A CPUID leaf 6)",
        fail_unless(l6 & 4 != 0, detail!("EAX {l6:#x}")),
    );
    let e8 = seen(0, 0x8000_0008, 0)[0];
    let (phys, linear) = (e8 & 0xff, (e8 >> 8) & 0xff);
    c.require(
        "leaf 80000008H: physical address bits 36..=52 (the APIC base and RAM fit), linear 48 or 57 (SDM Vol. 2A CPUID)",
        fail_unless((36..=52).contains(&phys) && matches!(linear, 48 | 57), detail!("EAX {e8:#x}"))
            .map(|_| detail!("{phys} physical, {linear} linear")),
    );
    let invariant = seen(0, 0x8000_0007, 0)[3] & 1 << 8 != 0;
    c.info("leaf 80000007H EDX invariant TSC (8), as the host has it", format_args!("{invariant}"));
}

/// Leaf 1 and leaf 0BH for a partition of 2 VPs (one core each).
fn topology(c: &mut crate::checks::Checks) {
    let [_, ebx, _, edx] = seen(0, 1, 0);
    let logical = (ebx >> 16) & 0xff;
    c.require(
        "leaf 1: HTT (EDX 28) and EBX[23:16] >= 2 addressable IDs for 2 VPs (SDM Vol. 2A CPUID leaf 1)",
        fail_unless(edx & 1 << 28 != 0 && logical >= 2, detail!("EBX {ebx:#x} EDX {edx:#x}")),
    );
    let (smt, core) = (seen(0, 0xb, 0), seen(0, 0xb, 1));
    let t = hw::cpuid(0xb, 2);
    let ok_smt = smt[1] >= 1 && (smt[2] >> 8) & 0xff == 1 && smt[2] & 0xff == 0;
    let ok_core = core[1] == 2 && (core[2] >> 8) & 0xff == 2 && core[2] & 0xff == 1 && 1 << core[0] >= 2;
    let ok_end = (t.ecx >> 8) & 0xff == 0 && t.ebx == 0;
    c.require(
        "leaf 0BH: SMT level, then a core level of 2 logical processors (shift >= 1), then invalid (SDM Vol. 2A CPUID leaf 0BH)",
        fail_unless(ok_smt && ok_core && ok_end, detail!("{smt:x?} {core:x?} [{:#x} {:#x} {:#x}]", t.eax, t.ebx, t.ecx)),
    );
}

/// Leaf 0DH against XSETBV and the VP's CR4 and XCR0 (SDM Vol. 1 13.2, 13.3).
fn xsave(c: &mut crate::checks::Checks) {
    let l1 = hw::cpuid(1, 0).ecx;
    if l1 & 1 << 26 == 0 {
        c.fail("leaf 1 ECX XSAVE (26) is offered", detail!("ECX {l1:#x}"));
        return;
    }
    let cr4 = hw::read_cr4();
    let osxsave = |on: bool| {
        let v = if on { cr4 | CR4_OSFXSR | CR4_OSXSAVE } else { cr4 & !CR4_OSXSAVE };
        hw::write_cr4_checked(v).map(|()| hw::cpuid(1, 0).ecx & OSXSAVE != 0)
    };
    let (off, on) = (osxsave(false), osxsave(true));
    c.require(
        "leaf 1 ECX OSXSAVE (27) follows CR4.OSXSAVE (SDM Vol. 2A Table 3-10)",
        match (off, on) {
            (Ok(false), Ok(true)) => ok(),
            other => Err(detail!("clear: {:?}, set: {:?}", other.0.map_err(|_| "fault"), other.1.map_err(|_| "fault"))),
        },
    );
    if on.is_err() {
        return;
    }
    let d0 = hw::cpuid(0xd, 0);
    let offered = u64::from(d0.eax) | u64::from(d0.edx) << 32;
    c.require(
        "leaf 0DH.0 EDX:EAX has x87 and SSE (SDM Vol. 1 13.2)",
        fail_unless(offered & 3 == 3, detail!("{offered:#x}")).map(|_| detail!("XCR0 may hold {offered:#x}")),
    );
    let before = hw::xgetbv0();
    // Every offered component (with AVX-512 only whole) is accepted; every
    // other bit below 20 is refused with #GP.
    let accepted = hw::xsetbv_checked(0, offered);
    let mut refused: Result<(), Detail> = Ok(());
    for b in 0..20u32 {
        if offered >> b & 1 == 0
            && let Ok(()) = hw::xsetbv_checked(0, offered | 1 << b)
        {
            refused = Err(detail!("XSETBV accepted bit {b} that leaf 0DH does not offer"));
            let _ = hw::xsetbv_checked(0, offered);
        }
    }
    c.require(
        "XSETBV accepts the components leaf 0DH offers and #GPs on the others (SDM Vol. 1 13.3; Vol. 2D XSETBV)",
        match (accepted, refused) {
            (Ok(()), Ok(())) => ok(),
            (Err(f), _) => Err(detail!("XSETBV {offered:#x}: {f}")),
            (_, Err(why)) => Err(why),
        },
    );
    // Sizes: ECX for every offered component, EBX for XCR0 now; both the
    // end of the last component (subleaf i: EAX size, EBX offset).
    let end = |xcr0: u64| {
        (2..32).filter(|i| xcr0 >> i & 1 != 0).map(|i| hw::cpuid(0xd, i)).map(|r| r.ebx + r.eax).fold(576, u32::max)
    };
    let all = hw::cpuid(0xd, 0);
    let _ = hw::xsetbv_checked(0, 3);
    let small = hw::cpuid(0xd, 0).ebx;
    c.require(
        "leaf 0DH.0 ECX is the area for all components, EBX the area for XCR0 now (SDM Vol. 2A CPUID leaf 0DH)",
        fail_unless(
            all.ecx == end(offered) && all.ebx == end(offered) && small == 576,
            detail!(
                "ECX {:#x} (expected {:#x}), EBX {:#x} with all, {small:#x} with x87|SSE",
                all.ecx,
                end(offered),
                all.ebx
            ),
        ),
    );
    let d1 = hw::cpuid(0xd, 1).eax;
    c.require(
        "leaf 0DH.1 EAX XSAVES (3) and XFD (4) clear: IA32_XSS and IA32_XFD are not emulated (SDM Vol. 2A CPUID leaf 0DH)",
        fail_unless(d1 & (1 << 3 | 1 << 4) == 0, detail!("EAX {d1:#x}")),
    );
    let _ = hw::xsetbv_checked(0, before);
    let _ = hw::write_cr4_checked(cr4);
}
