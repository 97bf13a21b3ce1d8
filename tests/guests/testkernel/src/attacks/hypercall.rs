//! Random malformed hypercalls ([`hostile::hypercall`]): every field of
//! the control value, the parameter GPAs anywhere (unaligned, over a page
//! end, outside RAM, over the kernel, the ROM and the overlays), the fast
//! and XMM conventions, through the hypercall page and with the hypercall
//! instruction itself. Each result must be a status the TLFS allows for
//! what the case broke; the other vendor's instruction raises #UD.

use super::{Ctx, Failures, Outcome, UD, say};
use crate::hw::hv::{self, Page};
use crate::tlfs_suite;
use guest_testkernel::hostile::Tally;
use guest_testkernel::hostile::hypercall::{self as cases, Layout};
use guest_testkernel::protocol::{TEST_DEVICE, TEST_ROM, UNMAPPED_HIGH};
use guest_testkernel::tlfs::{call, status};
use guest_testkernel::{Test, detail};

const TEST: Test = Test::HostileHypercall;
/// Cases through the hypercall page, and with the instruction itself.
const THROUGH_PAGE: u32 = 3000;
const DIRECT: u32 = 300;

pub fn run(ctx: &Ctx) -> Outcome {
    let (mut f, mut t) = (Failures::new(TEST), Tally::default());
    if !ctx.hyperv {
        say!(TEST, "no Hyper-V interface: no hypercalls");
        return f.finish(&t);
    }
    if let Err(why) = tlfs_suite::hypercall_page() {
        f.fail(detail!("hypercall page: {why}"));
        return f.finish(&t);
    }
    let layout = Layout {
        input: Page::Input.addr(),
        output: Page::Output.addr(),
        overlays: [Page::Hypercall.addr(), Page::ReferenceTsc.addr(), Page::VpAssist.addr()],
        rom: TEST_ROM,
        ram: ctx.ram.clone(),
        not_ram: [ctx.past_ram, 0xfeb0_0000, TEST_DEVICE, UNMAPPED_HIGH],
        kernel: ctx.kernel.clone(),
        vps: ctx.cpus,
    };
    let mut rng = ctx.rng(TEST);
    let mut statuses = [0u32; 8];
    for n in 0..THROUGH_PAGE + DIRECT {
        let case = cases::case(&mut rng, &layout);
        Page::Input.write(case.input_offset as usize, &case.input);
        let direct = n >= THROUGH_PAGE;
        let result = if direct {
            hv::hypercall_instruction(ctx.intel, case.control, case.rdx, case.r8)
        } else {
            hv::hypercall_xmm(case.control, case.rdx, case.r8, &case.xmm)
        };
        match result {
            Ok(r) => {
                let s = r.rax as u16;
                t.note(s != status::SUCCESS);
                statuses[usize::from(s).min(7)] += 1;
                if let Err(why) = cases::check(&case, r.rax) {
                    f.fail(detail!(
                        "case {n}: control {:#x} rdx {:#x} r8 {:#x} {:?}: {why}",
                        case.control,
                        case.rdx,
                        case.r8,
                        case.mutations.as_slice()
                    ));
                }
            }
            // XMM fast calls are offered (TLFS 3.7.2): no case may #UD.
            Err(fault) => {
                t.note(true);
                f.fail(detail!("case {n}: control {:#x} raised {fault}", case.control));
            }
        }
    }
    say!(
        TEST,
        "statuses: {} SUCCESS, {} INVALID_HYPERCALL_CODE, {} INVALID_HYPERCALL_INPUT, {} INVALID_ALIGNMENT, {} \
         INVALID_PARAMETER, {} ACCESS_DENIED, {} other",
        statuses[0],
        statuses[2],
        statuses[3],
        statuses[4],
        statuses[5],
        statuses[6],
        statuses[1] + statuses[7]
    );

    // The other vendor's instruction is undefined on this CPU.
    let wrong = hv::hypercall_instruction(!ctx.intel, u64::from(call::NOTIFY_LONG_SPIN_WAIT) | 1 << 16, 1, 0);
    t.note(wrong.is_err());
    f.require(wrong.as_ref().is_err_and(|fault| fault.vector == UD), || {
        detail!("{} raised {wrong:?}, expected #UD", if ctx.intel { "VMMCALL" } else { "VMCALL" })
    });
    f.finish(&t)
}
