//! The hostile guest's random hypercalls (`guest_testkernel::hostile::
//! hypercall`) against the engine: every case's result must be one the
//! TLFS allows for what the case broke, as the guest checks it.

use super::*;
use crate::profile::EnlightenmentProfile;
use guest_testkernel::hostile::hypercall::{self as cases, Layout};
use sysimage::Enlightenments;

/// RAM as the test kernel's partition has it: below 640 KiB and from
/// 1 MiB to 16 MiB; the ROM page reads but does not write.
struct Partition16 {
    ram: Vec<u8>,
}

const ROM_PAGE: u64 = 0xff000;
const RAM_TOP: u64 = 16 << 20;

impl Partition16 {
    fn is_ram(gpa: u64, len: u64) -> bool {
        let end = gpa.saturating_add(len);
        end <= 0xa_0000 || (gpa >= 0x10_0000 && end <= RAM_TOP)
    }
}

impl Guest for Partition16 {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> bool {
        let rom = gpa & !0xfff == ROM_PAGE && (gpa & 0xfff) + buf.len() as u64 <= 0x1000;
        if !Partition16::is_ram(gpa, buf.len() as u64) && !rom {
            return false;
        }
        buf.copy_from_slice(&self.ram[gpa as usize..gpa as usize + buf.len()]);
        true
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if !Partition16::is_ram(gpa, data.len() as u64) {
            return false;
        }
        self.ram[gpa as usize..gpa as usize + data.len()].copy_from_slice(data);
        true
    }
    fn register(&mut self, _: HvRegisterName) -> Option<(u64, u64)> {
        None
    }
}

/// The VID's partition: APIC IDs are VP indices.
struct Vps(u32);

impl HypercallTarget for Vps {
    fn vp_count(&self) -> u32 {
        self.0
    }
    fn flush_tlb(&mut self, _: &VpSet, _: Flush, _: Option<&[HvGvaRange]>) {}
    fn send_ipi(&mut self, _: u8, _: &VpSet) {}
    fn long_spin_wait(&mut self, _: HvVpIndex, _: u64) {}
    fn get_vp_register(&mut self, _: HvVpIndex, _: HvRegisterName) -> HvResult<HvRegisterValue> {
        Err(HvError::INVALID_PARAMETER)
    }
    fn set_vp_register(&mut self, _: HvVpIndex, _: HvRegisterName, _: HvRegisterValue) -> HvResult<()> {
        Err(HvError::INVALID_PARAMETER)
    }
    fn apic_id_to_vp_index(&self, apic_id: u32) -> Option<HvVpIndex> {
        (apic_id < self.0).then_some(apic_id)
    }

    fn paging_features(&self) -> crate::translate::PagingFeatures {
        crate::translate::PagingFeatures { phys_bits: 40, huge_pages: false }
    }

    fn overlay_at(&self, _: u64) -> bool {
        false
    }
}

#[test]
fn the_hostile_guests_cases_get_a_status_the_tlfs_allows() {
    let layout = Layout {
        input: 0x20_0000,
        output: 0x20_2000,
        overlays: [0x20_3000, 0x20_4000, 0x20_5000],
        rom: ROM_PAGE,
        ram: [0..0xa_0000, 0x10_0000..RAM_TOP],
        not_ram: [RAM_TOP, 0xfeb0_0000, 0xfed0_0000, 0xe000_0000],
        kernel: 0x10_0000..0x18_0000,
        vps: 3,
    };
    let profile = EnlightenmentProfile::new(Enlightenments::HYPERV, 3, 1).unwrap();
    let mut guest = Partition16 { ram: vec![0; RAM_TOP as usize] };
    let mut vps = Vps(3);
    for seed in 0..4 {
        let mut rng = guest_testkernel::hostile::rng(seed, 3);
        for n in 0..5000 {
            let case = cases::case(&mut rng, &layout);
            let at = (layout.input + case.input_offset) as usize;
            guest.ram[at..at + 64].copy_from_slice(&case.input);
            let mut regs = CallerRegisters { rcx: case.control, rdx: case.rdx, r8: case.r8, ..Default::default() };
            let caller = |regs| Caller {
                vp_index: 0,
                mode: CpuMode::Long64,
                cpl: 0,
                vtl: 0,
                regs,
                privileges: profile.privileges(),
                xmm_support: XmmSupport { input: true, output: true },
            };
            let mut xmm = case.xmm;
            // A rep call that returns early is executed again, as by the CPU.
            let outcome = loop {
                match handle(&caller(regs), &mut xmm, &mut guest, &mut vps) {
                    Outcome::Continue { control, .. } => regs.rcx = control.into_bits(),
                    done => break done,
                }
            };
            let result = outcome.result().unwrap_or_else(|| panic!("seed {seed} case {n} {case:?}: {outcome:?}"));
            if let Err(why) = cases::check(&case, result.into_bits()) {
                panic!("seed {seed} case {n}: {why}\n{case:?}");
            }
        }
    }
}
