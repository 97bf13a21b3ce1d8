//! Virtual Secure Mode (TLFS 15, issue #12): the test kernel's two-VTL
//! conformance test (`tests=vsm`) in a partition with the `hyperv-vsm`
//! profile (`tests/manifests/vsm.toml`), under QEMU (SVM+NPT) and Bochs
//! (VMX+EPT). The guest prints one line per check, written to the TLFS
//! rather than to Tessera; these tests require every check to pass.

mod common;

use common::{Boot, Emulator, assert_in_order, boot, manifest};

const QEMU_TIMEOUT: u64 = 60;
const BOCHS_TIMEOUT: u64 = 150;

fn vsm_conformance_passes(run: &Boot) {
    assert_in_order(
        run,
        &[
            "[vid] vsm: testkernel: vsm: CPUID 0x40000003 AccessVsm (privilege bit 48, 15.3.1): ok",
            "[vid] vsm: testkernel: vsm: HvEnablePartitionVtl VTL 1: SUCCESS: ok",
            "[vid] vsm: testkernel: vsm: HvEnableVpVtl VTL 1 with VTL 1's initial context: SUCCESS: ok",
            "[vid] vsm: testkernel: vsm: first VTL call: VTL 1 ran from its initial context and returned",
            "[vid] vsm: testkernel: vsm: VTL 1: HvRegisterVsmVpStatus ActiveVtl 1, EnabledVtlSet {0, 1} (15.3.3.2): ok",
            "[vid] vsm: testkernel: vsm: VTL call 4: VTL 0's shared GPRs and XMM0-15 reach VTL 1 (15.11.2.2): ok",
            "[vid] vsm: testkernel: vsm: return 4 (fast): RAX, RCX not loaded from the control area (15.7.1.1): ok",
            "[vid] vsm: testkernel: vsm: VTL call from CPL 3: #UD (15.6.1.1 item 1): ok",
            "[vid] vsm: testkernel: vsm: all ",
            "[vid] vsm: testkernel: vsm: ok",
            "[vid] vsm: testkernel: done: 1 passed, 0 failed",
            "[vid] vsm: guest reported status 1",
        ],
    );
    run.assert_serial_lacks("FAIL");
    run.assert_halted(0);
}

#[test]
fn qemu_vsm_conformance() {
    let m = manifest("vsm.toml");
    vsm_conformance_passes(&boot("qemu_vsm_conformance", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]));
}

#[test]
fn bochs_vsm_conformance() {
    let m = manifest("vsm.toml");
    vsm_conformance_passes(&boot("bochs_vsm_conformance", Emulator::Bochs, BOCHS_TIMEOUT, &["--manifest", &m]));
}

/// The protection checks (`vsm-protect=status`, off in `vsm.toml`): VTL 1
/// enables protections and protects VTL 0's pages, and the refused calls'
/// statuses. VTL 0's accesses to them (`vsm-protect=access`) wait for
/// secure intercepts (ARCHITECTURE §6.5).
#[test]
fn qemu_vsm_protection_statuses() {
    let m = manifest("vsm-protect.toml");
    let run = boot("qemu_vsm_protection_statuses", Emulator::Qemu, QEMU_TIMEOUT, &["--manifest", &m]);
    assert_in_order(
        &run,
        &[
            "[vid] vsm: testkernel: vsm: VTL 1 sets EnableVtlProtection, default mask RWX, in HvRegisterVsmPartitionConfig: SUCCESS: ok",
            "[vid] vsm: testkernel: vsm: VTL 1: HvModifyVtlProtectionMask, page 0 no access for VTL 0: SUCCESS: ok",
            "[vid] vsm: testkernel: vsm: VTL 1: HvModifyVtlProtectionMask, page 1 read-only no execute for VTL 0: SUCCESS: ok",
            "[vid] vsm: testkernel: done: 1 passed, 0 failed",
        ],
    );
    run.assert_serial_lacks("FAIL");
}
