//! The core scheduler's guest side (`tests=topology cpus=<n>`,
//! `tests/core.rs`): every VP reads what CPUID tells it of the processor
//! topology, and the BSP prints it, one line per VP, as an OS would see
//! it (`guest_testkernel::topology`).
//!
//! The BSP starts the APs (INIT-SIPI-SIPI through the smp test's
//! trampoline, APIC IDs 0..n); each reads leaf 0, leaf 1 and leaf 0xB
//! subleaves 0 to 2 into its slot, checks in and halts for good. The BSP
//! reads its own, waits for all, decodes each and prints
//! `testkernel: topology: VP <apic id>: x2APIC ID <id>, <t> threads per
//! core, siblings <ids or none>`, then a summary line.

use crate::ap;
use crate::hw;
use crate::println;
use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};
use guest_testkernel::smp::{self, lapic};
use guest_testkernel::topology::{self, Raw, Told};
use guest_testkernel::{Detail, Text, detail};

const SLOTS: usize = smp::MAX_CPUS as usize;
/// Leaf 0 EAX, leaf 1, leaf 0xB.0, 0xB.1, 0xB.2: 17 words per VP.
const WORDS: usize = 17;

static READ: [[AtomicU32; WORDS]; SLOTS] = [const { [const { AtomicU32::new(0) }; WORDS] }; SLOTS];
/// Set (to 1) once the VP with that APIC ID filled its slot.
static DONE: [AtomicU32; SLOTS] = [const { AtomicU32::new(0) }; SLOTS];

/// Reads this VP's CPUID into the slot of its APIC ID.
fn record() {
    let id = lapic::id(ap::lapic_id_register()) as usize;
    let Some(slot) = READ.get(id) else { return };
    let mut words = [0u32; WORDS];
    words[0] = hw::cpuid(0, 0).eax;
    let leaves = [(1, 0), (0xb, 0), (0xb, 1), (0xb, 2)];
    for (n, (leaf, subleaf)) in leaves.into_iter().enumerate() {
        let r = hw::cpuid(leaf, subleaf);
        words[1 + 4 * n..5 + 4 * n].copy_from_slice(&[r.eax, r.ebx, r.ecx, r.edx]);
    }
    for (cell, w) in slot.iter().zip(words) {
        cell.store(w, Ordering::Relaxed);
    }
    DONE[id].store(1, Ordering::Release);
}

fn raw(id: usize) -> Raw {
    let w: [u32; WORDS] = core::array::from_fn(|i| READ[id][i].load(Ordering::Relaxed));
    let four = |at: usize| [w[at], w[at + 1], w[at + 2], w[at + 3]];
    Raw { max_leaf: w[0], leaf1: four(1), levels: [four(5), four(9), four(13)] }
}

extern "C" fn ap_entry(_slot: u32) -> ! {
    hw::load_idt();
    record();
    loop {
        // SAFETY: stops this CPU with interrupts off; nothing wakes it but INIT or NMI.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

pub fn run(magic: u32, info: u64, cmdline: &str) -> Result<(), Detail> {
    let cpus = smp::cpus_option(cmdline)?;
    let bsp = lapic::id(ap::lapic_id_register());
    if u32::from(bsp) >= cpus {
        return Err(detail!("the BSP's APIC ID {bsp} is not below cpus={cpus}"));
    }
    record();
    if cpus > 1 {
        ap::enable_lapic();
        let vector = ap::prepare(magic, info, ap_entry)?;
        hw::start_timer();
        let started = (0..cpus).filter(|&id| id != u32::from(bsp)).try_for_each(|id| ap::start_one(id as u8, vector));
        let all = || (0..cpus as usize).all(|id| DONE[id].load(Ordering::Acquire) == 1);
        let ticks = if started.is_ok() { ap::wait(ap::AP_WAIT_TICKS, all) } else { 0 };
        hw::stop_timer();
        started?;
        if !all() {
            return Err(detail!("not every VP read its CPUID within {ticks} ticks of 10 ms"));
        }
    }
    let mut told: heapless::Vec<Told, SLOTS> = heapless::Vec::new();
    for id in 0..cpus as usize {
        let t = topology::decode(&raw(id)).map_err(|why| detail!("VP {id}: {}", why.as_str()))?;
        let _ = told.push(t);
    }
    let ids: [u32; SLOTS] = core::array::from_fn(|i| i as u32);
    topology::agree(&told, &ids[..told.len()])?;
    for (id, t) in told.iter().enumerate() {
        let mut list: Text<64> = Text::new();
        let mates = topology::siblings(&told, id);
        for (n, vp) in smp_bits(mates).enumerate() {
            let _ = core::fmt::Write::write_fmt(&mut list, format_args!("{}{vp}", if n == 0 { "" } else { "," }));
        }
        println!(
            "testkernel: topology: VP {id}: x2APIC ID {}, {} threads per core, siblings {}",
            t.x2apic_id,
            t.threads_per_core,
            if mates == 0 { "none" } else { list.as_str() }
        );
    }
    let first = told[0];
    println!(
        "testkernel: topology: {cpus} VPs, {} threads per core, SMT shift {}, core shift {}, {} logical processors",
        first.threads_per_core, first.smt_shift, first.core_shift, first.logical
    );
    Ok(())
}

/// The indices of the set bits of `mask`, ascending.
fn smp_bits(mut mask: u32) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        (mask != 0).then(|| {
            let bit = mask.trailing_zeros();
            mask &= mask - 1;
            bit
        })
    })
}
