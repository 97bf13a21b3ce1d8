//! The `hostile-fragment` instance (`tests/manifests/hostile-fragment.toml`):
//! with an untyped quota of most of the machine, it creates and destroys
//! partitions with guest RAM of mixed sizes 50 times, a few alive at once,
//! and keeps the small ones it made along the way, so the kernel's free
//! memory ends up in pieces. Then it makes a partition whose RAM is 80% of
//! the memory the kernel has free: the kernel must build it from those
//! pieces. Its pages are written and read back through a window in this
//! task (each is distinct memory), and once everything is gone the kernel
//! must have as much free memory as before (no frame or table kept).

use crate::objects::{bits, delete};
use tessera_rt::abi::Rights;
use tessera_rt::memory::Window;
use tessera_rt::untyped::{self, Left};
use tessera_rt::{CapSlot, ErrorCode, ObjectType, Operation, invoke, log};

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
/// Partition lifetimes.
const LIFETIMES: usize = 50;
/// Guest RAM sizes (MiB), none a power of two but the smallest.
const SIZES: [u64; 7] = [1, 3, 5, 9, 14, 21, 30];
/// Most partitions alive at once during the churn (the kernel's table holds 8).
const ALIVE: usize = 4;
/// Partitions of at most this much RAM (MiB) made during the churn are
/// kept, scattered through memory, while the large one is made.
const KEEP_MIB: u64 = 3;
/// Where the window onto the large partition's RAM is, and its size: one
/// page table, made (and paid for) before the first measurement.
const WINDOW: u64 = 0x10_0000_0000;
const WINDOW_PAGES: u64 = 512;
/// Capability slots it uses (of 128).
const SLOTS: usize = 32;

/// A partition and its guest RAM.
#[derive(Clone, Copy)]
struct Partition {
    partition: CapSlot,
    ram: CapSlot,
    mib: u64,
}

struct Slots {
    first: u32,
    used: [bool; SLOTS],
}

impl Slots {
    fn take(&mut self) -> Result<CapSlot, ErrorCode> {
        let i = self.used.iter().position(|u| !u).ok_or(ErrorCode::OUT_OF_MEMORY)?;
        self.used[i] = true;
        Ok(CapSlot(self.first + i as u32))
    }

    fn free(&mut self, slot: CapSlot) {
        delete(slot);
        if let Some(u) = slot.0.checked_sub(self.first).and_then(|i| self.used.get_mut(i as usize)) {
            *u = false;
        }
    }
}

struct Fragmenter {
    task: CapSlot,
    untyped: CapSlot,
    slots: Slots,
}

impl Fragmenter {
    fn retype(&mut self, kind: ObjectType, pages: u64) -> Result<CapSlot, ErrorCode> {
        let slot = self.slots.take()?;
        untyped::retype(self.untyped, kind, slot, pages).inspect_err(|_| self.slots.free(slot)).map(|()| slot)
    }

    /// A partition with `pages` pages of RAM mapped at GPA 0.
    fn create(&mut self, pages: u64) -> Result<Partition, ErrorCode> {
        let ram = self.retype(ObjectType::MEMORY, pages)?;
        let partition = match self.retype(ObjectType::PARTITION, 0) {
            Ok(p) => p,
            Err(e) => {
                self.slots.free(ram);
                return Err(e);
            }
        };
        let made = Partition { partition, ram, mib: pages * PAGE / MIB };
        let rights = Rights::new().with_read(true).with_write(true).with_execute(true);
        let mapped = invoke(partition, Operation::PARTITION_MAP, &[u64::from(ram.0), 0, bits(rights), pages]);
        if let Err(e) = mapped {
            self.destroy(made);
            return Err(e);
        }
        Ok(made)
    }

    fn destroy(&mut self, p: Partition) {
        self.slots.free(p.partition);
        self.slots.free(p.ram);
    }

    fn left(&self) -> Result<Left, ErrorCode> {
        untyped::left(self.untyped)
    }
}

/// A deterministic generator (a 64-bit LCG), so every run churns alike.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn report(what: &str, ok: bool, detail: core::fmt::Arguments<'_>) {
    log!("fragment: {what}: {detail}: {}", if ok { "ok" } else { "FAIL" });
}

pub fn run(task: CapSlot, untyped: CapSlot, first: CapSlot) {
    let mut f = Fragmenter { task, untyped, slots: Slots { first: first.0, used: [false; SLOTS] } };
    if let Err(e) = churn(&mut f) {
        report("the run", false, format_args!("stopped by {e:?}"));
    }
}

fn churn(f: &mut Fragmenter) -> Result<(), ErrorCode> {
    // What is made once and kept, before anything is measured: the
    // window's page tables, and what the kernel sets up at its first
    // partition on this CPU (SVM's or VMX's host state).
    let warm = f.retype(ObjectType::MEMORY, WINDOW_PAGES)?;
    Window::map(f.task, warm, WINDOW, 0, WINDOW_PAGES, true)?.unmap(f.task)?;
    f.slots.free(warm);
    let first = f.create(1)?;
    f.destroy(first);
    let before = f.left()?;
    log!(
        "fragment: before: {} KiB free in the kernel, {} KiB in my quota",
        before.machine_free >> 10,
        before.bytes >> 10
    );

    let mut rng = Lcg(15);
    let mut alive = heapless::Vec::<Partition, ALIVE>::new();
    let mut kept = heapless::Vec::<Partition, LIFETIMES>::new();
    let mut refused = 0;
    for _ in 0..LIFETIMES {
        if alive.is_full() {
            let gone = alive.swap_remove(rng.below(alive.len()));
            f.destroy(gone);
        }
        let mib = SIZES[rng.below(SIZES.len())];
        match f.create(mib * MIB / PAGE) {
            Ok(p) if p.mib <= KEEP_MIB && kept.len() < 4 => {
                let _ = kept.push(p);
            }
            Ok(p) => {
                let _ = alive.push(p);
            }
            Err(_) => refused += 1,
        }
    }
    for p in alive {
        f.destroy(p);
    }

    report(
        "50 partitions of mixed sizes created and destroyed",
        refused == 0,
        format_args!("{refused} refused; {} of up to {KEEP_MIB} MiB kept", kept.len()),
    );
    let churned = f.left()?;
    log!("fragment: after the churn: {} KiB free in the kernel", churned.machine_free >> 10);

    let free = churned.machine_free;
    let pages = free / PAGE * 4 / 5;
    let big = f.create(pages);
    report(
        "a partition with 80% of the free memory",
        big.is_ok(),
        format_args!(
            "{} MiB of {} MiB free ({} KiB in my quota): {}",
            pages * PAGE / MIB,
            free / MIB,
            churned.bytes >> 10,
            match &big {
                Ok(_) => "made",
                Err(ErrorCode::OUT_OF_MEMORY) => "OUT_OF_MEMORY",
                Err(_) => "refused",
            }
        ),
    );
    if let Ok(big) = big {
        let wrong = touch(f, big.ram, pages)?;
        report(
            "its pages are distinct memory",
            wrong == 0,
            format_args!("{pages} pages written and read back, {wrong} wrong"),
        );
        f.destroy(big);
    }
    for p in kept {
        f.destroy(p);
    }
    let after = f.left()?;
    report(
        "every frame and table came back",
        after.machine_free == before.machine_free && after.bytes == before.bytes,
        format_args!(
            "{} KiB free in the kernel ({} before), {} KiB in my quota ({} before)",
            after.machine_free >> 10,
            before.machine_free >> 10,
            after.bytes >> 10,
            before.bytes >> 10
        ),
    );
    log!("fragment: done");
    Ok(())
}

/// Writes each page of `ram` with its number, then reads them all back
/// through the window; returns how many were wrong.
fn touch(f: &mut Fragmenter, ram: CapSlot, pages: u64) -> Result<u64, ErrorCode> {
    let mark = |page: u64| page ^ 0x7e55_e7a0_f4a9_0000;
    let mut wrong = 0;
    for write in [true, false] {
        let mut offset = 0;
        while offset < pages {
            let n = WINDOW_PAGES.min(pages - offset);
            let mut window = Window::map(f.task, ram, WINDOW, offset, n, true)?;
            let bytes = window.bytes_mut().ok_or(ErrorCode::INVALID_STATE)?;
            for (i, page) in bytes.chunks_exact_mut(PAGE as usize).enumerate() {
                let value = mark(offset + i as u64).to_le_bytes();
                if write {
                    page[..8].copy_from_slice(&value);
                } else if page[..8] != value {
                    wrong += 1;
                }
            }
            window.unmap(f.task)?;
            offset += n;
        }
    }
    Ok(wrong)
}
