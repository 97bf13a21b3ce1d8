//! VTL 1: its own stack, GDT and TSS, IDT (the kernel's handlers) and PML4
//! (a copy of VTL 0's: the same identity map), the initial context that
//! starts it there (15.15.4), and what it does when entered. It prints
//! nothing: what it sees goes into [`FIRST`] and [`ROUND`], which VTL 0
//! checks and reports.

use super::switch::{self, Frame, RFLAGS_FIXED, Raised, Shared};
use super::{Command, Hc, command, return_values};
use crate::checks::{Check, fail_unless};
use crate::hw::hv::Page;
use crate::hw::{self, state};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};
use guest_testkernel::tlfs::vsm::{self, CodePageOffsets, InitialContext, Segment, Table, VpStatus, control};
use guest_testkernel::tlfs::{self, Outcome, msr, register};
use guest_testkernel::{Detail, detail};

const STACK: usize = 16 * 1024;
const CODE: u16 = 0x08;
const DATA: u16 = 0x10;
const TSS: u16 = 0x18;

/// VTL 1's GDT (null, code, data, a 16-byte TSS descriptor), TSS (104
/// bytes), IDT and PML4.
#[repr(C, align(4096))]
struct Tables {
    pml4: [u64; 512],
    idt: [u64; 512],
    gdt: [u64; 6],
    tss: [u32; 26],
    stack: [u8; STACK],
}

static TABLES: Shared<Tables> =
    Shared::new(Tables { pml4: [0; 512], idt: [0; 512], gdt: [0; 6], tss: [0; 26], stack: [0; STACK] });

/// The values of VTL 1's private state that its initial context sets and
/// that VTL 0 must not see (or change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Private {
    pub cr3: u64,
    pub cr4: u64,
    pub gdtr: u64,
    pub idtr: u64,
    pub tr: u16,
    pub stack_top: u64,
}

/// Builds VTL 1's tables from VTL 0's (its PML4 and IDT copied) and the
/// initial context that starts VTL 1 at `tk_vtl1_entry` on them.
pub fn context() -> (InitialContext, Private) {
    let vtl0 = current();
    TABLES.with(|t| {
        for i in 0..512 {
            t.pml4[i] = hw::read64((vtl0.cr3 & !0xfff) + 8 * i as u64);
            t.idt[i] = hw::read64(vtl0.idtr + 8 * i as u64);
        }
        t.gdt[1] = 0x00af_9b00_0000_ffff;
        t.gdt[2] = 0x00cf_9300_0000_ffff;
        let tss = t.tss.as_ptr() as u64;
        t.tss[25] = 104 << 16;
        // A busy 64-bit TSS, limit 103 (as the context's TR says).
        t.gdt[3] = 103 | (tss & 0xff_ffff) << 16 | 0x8b << 40 | (tss >> 24 & 0xff) << 56;
        t.gdt[4] = tss >> 32;
        let private = Private {
            cr3: t.pml4.as_ptr() as u64,
            // OSXMMEXCPT flipped: a CR4 of its own, SSE still on.
            cr4: vtl0.cr4 ^ state::CR4_OSXMMEXCPT,
            gdtr: t.gdt.as_ptr() as u64,
            idtr: t.idt.as_ptr() as u64,
            tr: TSS,
            stack_top: t.stack.as_ptr() as u64 + STACK as u64,
        };
        let flat = |selector, attributes| Segment { base: 0, limit: 0xffff_ffff, selector, attributes };
        let context = InitialContext {
            rip: switch::vtl1_entry(),
            rsp: private.stack_top,
            rflags: RFLAGS_FIXED,
            cs: flat(CODE, Segment::CODE64),
            ds: flat(DATA, Segment::DATA),
            es: flat(DATA, Segment::DATA),
            fs: Segment::default(),
            gs: Segment::default(),
            ss: flat(DATA, Segment::DATA),
            tr: Segment { base: tss, limit: 103, selector: TSS, attributes: Segment::TSS_BUSY },
            ldtr: Segment::default(),
            idtr: Table { limit: 4095, base: private.idtr },
            gdtr: Table { limit: (t.gdt.len() * 8 - 1) as u16, base: private.gdtr },
            efer: hw::rdmsr(EFER),
            cr0: crate::hw::cr::cr0(),
            cr3: private.cr3,
            cr4: private.cr4,
            pat: hw::rdmsr(PAT),
        };
        (context, private)
    })
}

const EFER: u32 = 0xc000_0080;
const PAT: u32 = 0x277;

/// The private state as the running VTL has it.
pub fn current() -> Private {
    #[repr(C, packed)]
    struct Pointer {
        limit: u16,
        base: u64,
    }
    let (mut gdtr, mut idtr) = (Pointer { limit: 0, base: 0 }, Pointer { limit: 0, base: 0 });
    let (cr3, tr, rsp): (u64, u16, u64);
    // SAFETY: stores GDTR and IDTR into locals, reads CR3, TR and RSP.
    unsafe {
        asm!("sgdt [{}]", in(reg) &mut gdtr, options(nostack, preserves_flags));
        asm!("sidt [{}]", in(reg) &mut idtr, options(nostack, preserves_flags));
        asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags));
        asm!("str {0:x}", out(reg) tr, options(nomem, nostack, preserves_flags));
        asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags));
    }
    Private { cr3, cr4: hw::read_cr4(), gdtr: gdtr.base, idtr: idtr.base, tr, stack_top: rsp }
}

/// What VTL 1 found and did at its first entry (15.11.1.1, 15.8, 15.3.3.2,
/// 15.2.1, 15.7.2); `done` is [`MARKER`] once it got through.
pub struct First {
    pub done: u64,
    pub private: Private,
    pub guest_os_id: Check,
    pub hypercall_msr: Check,
    pub hypercall_page: Check,
    pub vp_assist: Check,
    pub vp_status: Check,
    pub offsets: Check,
    pub config: Check,
    pub vtl0_registers: Result<[u64; 2], Detail>,
    pub bad_return: Option<Raised>,
}

/// The marker VTL 1 writes at the end of its first entry.
pub const MARKER: u64 = 0x7e55_7111_0000_0001;

pub static FIRST: Shared<Option<First>> = Shared::new(None);

/// What VTL 1 saw when a VTL call of round `round` entered it.
#[derive(Clone, Copy, Debug)]
pub struct Round {
    pub round: u32,
    pub frame: Frame,
    pub entry_reason: u32,
    pub private: Private,
}

pub static ROUND: Shared<Option<Round>> = Shared::new(None);

/// VTL 0's two test pages, which VTL 1 protects (`Command::Protect`).
#[repr(C, align(4096))]
struct TestPages([[u8; 4096]; 2]);

static TEST_PAGES: Shared<TestPages> = Shared::new(TestPages([[0; 4096]; 2]));

/// The address (identity mapped: its GPA) of test page `page` (0 or 1).
pub fn test_page(page: u8) -> u64 {
    TEST_PAGES.with(|p| p.0[usize::from(page & 1)].as_ptr() as u64)
}

/// The statuses VTL 1 got protecting the test pages for VTL 0.
pub struct Protected {
    /// Page 0 no access, before EnableVtlProtection.
    pub before: Result<Outcome, Detail>,
    /// HvSetVpRegisters of HvRegisterVsmPartitionConfig with
    /// EnableVtlProtection and the default mask RWX (15.5.1).
    pub enable: Result<Outcome, Detail>,
    /// HvRegisterVsmPartitionConfig after that.
    pub config: Result<u64, Detail>,
    pub no_access: Result<Outcome, Detail>,
    pub read_only: Result<Outcome, Detail>,
    /// Page 0 for VTL 1 itself.
    pub own_vtl: Result<Outcome, Detail>,
}

pub static PROTECT: Shared<Option<Protected>> = Shared::new(None);

/// A secure intercept VTL 1 was entered by: its entry reason and the
/// status of lifting the page's protection.
pub struct Intercepted {
    pub entry_reason: u32,
    pub lifted: Result<Outcome, Detail>,
}

pub static INTERCEPTED: Shared<Option<Intercepted>> = Shared::new(None);

fn protect(vp: u32) -> Protected {
    use vsm::map_gpa::{NO_ACCESS, READABLE};
    use vsm::partition_config::{DEFAULT_PROTECTION_MASK, ENABLE_VTL_PROTECTION, ZERO_MEMORY_ON_RESET};
    let before = super::modify_protection(&PAGES, NO_ACCESS, vsm::input_vtl(0), 0);
    let config = PAGES.get_registers(vp, 0, &[register::VSM_PARTITION_CONFIG]).map(|[v, ..]| v);
    let value = config.unwrap_or(ZERO_MEMORY_ON_RESET) | ENABLE_VTL_PROTECTION | DEFAULT_PROTECTION_MASK;
    let enable = PAGES.set(vp, 0, register::VSM_PARTITION_CONFIG, value);
    Protected {
        before,
        enable,
        config: PAGES.get_registers(vp, 0, &[register::VSM_PARTITION_CONFIG]).map(|[v, ..]| v),
        no_access: super::modify_protection(&PAGES, NO_ACCESS, vsm::input_vtl(0), 0),
        read_only: super::modify_protection(&PAGES, READABLE, vsm::input_vtl(0), 1),
        own_vtl: super::modify_protection(&PAGES, NO_ACCESS, vsm::input_vtl(1), 0),
    }
}

/// Set while VTL 1 is in [`switch::vtl1_bench`].
pub static BENCHING: AtomicBool = AtomicBool::new(false);

/// VTL 1's pages: its hypercall page and parameters.
const PAGES: Hc = Hc { hypercall: Page::Vtl1Hypercall, input: Page::Vtl1Input, output: Page::Vtl1Output };

/// VTL 1, entered first at `tk_vtl1_entry` and then after each of its VTL
/// returns.
pub extern "C" fn main() -> ! {
    let (first, offsets) = first_entry();
    let vtl_return = offsets.map(|o| Page::Vtl1Hypercall.addr() + u64::from(o.vtl_return));
    FIRST.with(|f| *f = Some(first));
    let mut frame = Frame::ZERO;
    let mut now = command();
    // After an intercept: back to VTL 0's access with its registers as is.
    let mut resume = false;
    loop {
        // Without its return sequence VTL 1 cannot give VTL 0 back its VP.
        let Some(target) = vtl_return else { park() };
        if !resume {
            prepare_return(&mut frame, now);
        }
        resume = false;
        if let Some(raised) = switch::cross(1, &mut frame, target) {
            crate::println!("testkernel: vsm: FAIL VTL 1's VTL return raised {raised}");
            park();
        }
        // Entered again, by a VTL call.
        now = command();
        match now {
            Command::Bench => {
                BENCHING.store(true, Ordering::Relaxed);
                switch::vtl1_bench(target);
                BENCHING.store(false, Ordering::Relaxed);
            }
            Command::Protect => {
                let vp = hw::rdmsr_checked(msr::VP_INDEX).unwrap_or(0) as u32;
                let protected = protect(vp);
                PROTECT.with(|p| *p = Some(protected));
            }
            Command::Intercept { page } => {
                let entry_reason = Page::Vtl1VpAssist.read_u32(control::ENTRY_REASON);
                let lifted = super::modify_protection(&PAGES, vsm::map_gpa::ALL, vsm::input_vtl(0), page);
                INTERCEPTED.with(|i| *i = Some(Intercepted { entry_reason, lifted }));
                // VTL 0's RAX and RCX through the control area (15.8.2);
                // its other shared registers as the frame holds them.
                Page::Vtl1VpAssist.write(control::RETURN_RAX, &frame.rax.to_le_bytes());
                Page::Vtl1VpAssist.write(control::RETURN_RCX, &frame.rcx.to_le_bytes());
                Page::Vtl1VpAssist.write(control::ENTRY_REASON, &0u32.to_le_bytes());
                frame.rcx = 0;
                frame.rflags_in = RFLAGS_FIXED;
                resume = true;
            }
            Command::Idle | Command::Round { .. } => {}
        }
        if let Command::Round { round, .. } = now {
            let entry_reason = Page::Vtl1VpAssist.read_u32(control::ENTRY_REASON);
            let private = current();
            ROUND.with(|r| *r = Some(Round { round, frame, entry_reason, private }));
        }
    }
}

fn park() -> ! {
    loop {
        // SAFETY: halts; nothing wakes VTL 1 but a VTL 0 that cannot run.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

/// The return VTL 1 makes for `now`: the shared registers from VTL 1's
/// pattern, RAX and RCX for VTL 0 in the control area (15.8.2), and a
/// fast return on the rounds that ask for one (15.7.1.1). The entry
/// reason is cleared, so each entry's must be written again.
fn prepare_return(frame: &mut Frame, now: Command) {
    let (round, fast) = match now {
        Command::Round { round, fast } => (round, fast),
        Command::Idle | Command::Bench | Command::Protect | Command::Intercept { .. } => (0, false),
    };
    let (rax, rcx) = return_values(round);
    Page::Vtl1VpAssist.write(control::RETURN_RAX, &rax.to_le_bytes());
    Page::Vtl1VpAssist.write(control::RETURN_RCX, &rcx.to_le_bytes());
    Page::Vtl1VpAssist.write(control::ENTRY_REASON, &0u32.to_le_bytes());
    frame.set_shared(vsm::shared_pattern(round, 1));
    frame.xmm = vsm::xmm_pattern(round, 1);
    frame.rax = !rax;
    frame.rcx = if fast { vsm::VTL_RETURN_FAST } else { 0 };
    frame.rflags_in = RFLAGS_FIXED;
}

fn first_entry() -> (First, Option<CodePageOffsets>) {
    let private = current();
    let guest_os_id = hw::rdmsr_checked(msr::GUEST_OS_ID)
        .map_err(|f| detail!("rdmsr raised {f}"))
        .and_then(|v| fail_unless(v == 0, detail!("reads {v:#x}")));
    let hypercall_msr = hw::rdmsr_checked(msr::HYPERCALL)
        .map_err(|f| detail!("rdmsr raised {f}"))
        .and_then(|v| fail_unless(v & msr::PAGE_ENABLE == 0, detail!("reads {v:#x}")));
    let hypercall_page = own_hypercall_page();
    let page_ok = hypercall_page.is_ok();
    let value = Page::Vtl1VpAssist.addr() | msr::PAGE_ENABLE;
    let vp_assist = hw::wrmsr_checked(msr::VP_ASSIST_PAGE, value)
        .map_err(|f| detail!("wrmsr raised {f}"))
        .and_then(|()| hw::rdmsr_checked(msr::VP_ASSIST_PAGE).map_err(|f| detail!("rdmsr raised {f}")))
        .and_then(|v| fail_unless(v & (msr::PAGE_GPA_MASK | 1) == value, detail!("reads {v:#x}")));
    let mut first = First {
        done: 0,
        private,
        guest_os_id,
        hypercall_msr,
        hypercall_page,
        vp_assist,
        vp_status: Err(detail!("no hypercall page")),
        offsets: Err(detail!("no hypercall page")),
        config: Err(detail!("no hypercall page")),
        vtl0_registers: Err(detail!("no hypercall page")),
        bad_return: None,
    };
    if !page_ok {
        return (first, None);
    }
    let vp = hw::rdmsr_checked(msr::VP_INDEX).unwrap_or(0) as u32;
    let read = |name| PAGES.get_registers(vp, 0, &[name]).map(|[v, ..]| v);
    let status = read(register::VSM_VP_STATUS);
    let offsets = read(register::VSM_CODE_PAGE_OFFSETS).map(CodePageOffsets::read);
    first.vp_status = status.and_then(|v| {
        let s = VpStatus::read(v);
        let good = s.active_vtl == 1 && s.enabled_vtl_set == 0b11 && !s.active_mbec_enabled && s.reserved == 0;
        fail_unless(good, detail!("{v:#x}: {s:?}"))
    });
    first.offsets = offsets.as_ref().map_err(Clone::clone).and_then(super::offsets_check);
    first.config = read(register::VSM_PARTITION_CONFIG).and_then(|v| {
        // The default mask's first value is not specified (15.5.1.2).
        use vsm::partition_config::{ENABLE_VTL_PROTECTION, ZERO_MEMORY_ON_RESET};
        let good = v & ZERO_MEMORY_ON_RESET != 0 && v & ENABLE_VTL_PROTECTION == 0;
        fail_unless(good, detail!("{v:#x}")).map(|_| detail!("{v:#x}"))
    });
    first.vtl0_registers =
        PAGES.get_registers(vp, vsm::input_vtl(0), &[register::CR3, register::CR4]).map(|v| [v[0], v[1]]);
    let offsets = offsets.ok();
    if let Some(o) = offsets {
        // A VTL return with a reserved control bit: #UD, and VTL 1 stays.
        let mut frame = Frame::ZERO;
        frame.rcx = vsm::VTL_CONTROL_RESERVED_BIT;
        let target = Page::Vtl1Hypercall.addr() + u64::from(o.vtl_return);
        first.bad_return = switch::cross(1, &mut frame, target);
    }
    first.done = MARKER;
    (first, offsets)
}

/// VTL 1's own hypercall page (3.13, 15.11.1.1): its GUEST_OS_ID first.
fn own_hypercall_page() -> Check {
    hw::wrmsr_checked(msr::GUEST_OS_ID, tlfs::GUEST_OS_ID_LINUX)
        .map_err(|f| detail!("wrmsr GUEST_OS_ID raised {f}"))?;
    let value = Page::Vtl1Hypercall.addr() | msr::PAGE_ENABLE;
    hw::wrmsr_checked(msr::HYPERCALL, value).map_err(|f| detail!("wrmsr HYPERCALL raised {f}"))?;
    let back = hw::rdmsr_checked(msr::HYPERCALL).map_err(|f| detail!("rdmsr HYPERCALL raised {f}"))?;
    if back & (msr::PAGE_GPA_MASK | msr::PAGE_ENABLE) != value {
        return Err(detail!("HYPERCALL reads {back:#x} after {value:#x}"));
    }
    let mut bytes = [0; 4];
    Page::Vtl1Hypercall.read(0, &mut bytes);
    tlfs::hypercall_sequence(bytes).map(|i| detail!("{}", i.name()))
}
