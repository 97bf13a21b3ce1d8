//! The smp test's pure logic: the CPU count the command line gives, the
//! local APIC registers and interrupt commands the test uses, where the AP
//! trampoline goes and its parameter block, and the verdict on the APs
//! that checked in.
//!
//! The machine (the VID, or QEMU) gives `cpus` CPUs whose local APIC IDs
//! are 0..cpus-1; the BSP is one of them (APIC ID 0 under the VID: VP index
//! = APIC ID). There is no ACPI or MP table, so the count comes from
//! `cpus=<n>`.
//!
//! Directly under QEMU (the Multiboot `-kernel` path wants ELF32):
//! `objcopy -O elf32-i386 guest-testkernel tk.elf32`, then
//! `qemu-system-x86_64 -accel tcg -cpu qemu64 -smp 4 -m 128M -nographic
//! -no-reboot -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04
//! -kernel tk.elf32 -append "tests=smp cpus=4"` (status 1: passed).

use crate::multiboot::{self, Memory, Summary};
use crate::{Detail, Text, option};
use core::fmt::Write;
use core::ops::Range;

/// Most CPUs the test starts (the manifest's limit on VPs).
pub const MAX_CPUS: u32 = 16;

/// The fixed IPI each AP sends the BSP once it is up.
pub const IPI_VECTOR: u8 = 0x40;

/// The CPU count of `cpus=<n>`: 1 to [`MAX_CPUS`], in decimal.
pub fn cpus_option(cmdline: &str) -> Result<u32, Detail> {
    let value = option(cmdline, "cpus").ok_or(detail!("no cpus=<n> on the command line"))?;
    match value.parse::<u32>() {
        Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) && (1..=MAX_CPUS).contains(&n) => Ok(n),
        _ => Err(detail!("cpus={value}: expected 1 to {MAX_CPUS}")),
    }
}

/// The local APIC in xAPIC mode (SDM Vol. 3A ch. 11), at its reset base.
pub mod lapic {
    pub const BASE: u64 = 0xfee0_0000;
    /// Register offsets from [`BASE`] (32 bits each).
    pub const ID: u64 = 0x20;
    pub const TPR: u64 = 0x80;
    pub const EOI: u64 = 0xb0;
    pub const SVR: u64 = 0xf0;
    pub const ICR_LOW: u64 = 0x300;
    pub const ICR_HIGH: u64 = 0x310;
    pub const LVT_LINT0: u64 = 0x350;

    /// SVR: APIC software enable.
    pub const SVR_ENABLE: u32 = 1 << 8;
    pub const SPURIOUS_VECTOR: u8 = 0xff;
    /// ICR low: delivery status (send pending).
    pub const ICR_SEND_PENDING: u32 = 1 << 12;

    /// The APIC ID in the ID register's bits 31:24.
    pub const fn id(register: u32) -> u8 {
        register.to_be_bytes()[0]
    }

    /// IA32_APIC_BASE.
    pub const BASE_MSR: u32 = 0x1b;
    pub const BASE_MSR_BSP: u64 = 1 << 8;
    pub const BASE_MSR_ENABLE: u64 = 1 << 11;
    /// The base address, bits 51:12.
    pub const BASE_MSR_ADDRESS: u64 = 0x000f_ffff_ffff_f000;

    /// CPUID.1:EDX bit 9: an on-chip APIC.
    pub const CPUID_1_EDX_APIC: u32 = 1 << 9;

    /// The initial APIC ID in CPUID.1:EBX bits 31:24.
    pub const fn cpuid_id(ebx: u32) -> u8 {
        ebx.to_be_bytes()[0]
    }
}

/// The ICR's delivery modes the test uses (bits 10:8 of the low half).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    Init,
    Startup,
}

impl DeliveryMode {
    const fn bits(self) -> u32 {
        match self {
            DeliveryMode::Fixed => 0b000,
            DeliveryMode::Init => 0b101,
            DeliveryMode::Startup => 0b110,
        }
    }
}

/// An interrupt command to one APIC ID (physical destination, no
/// shorthand, edge-triggered, level assert). Software writes `high` first:
/// writing `low` sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icr {
    pub low: u32,
    pub high: u32,
}

impl Icr {
    const DELIVERY_MODE_SHIFT: u32 = 8;
    const LEVEL_ASSERT: u32 = 1 << 14;
    const DESTINATION_SHIFT: u32 = 24;

    pub const fn new(mode: DeliveryMode, vector: u8, destination: u8) -> Icr {
        Icr {
            low: vector as u32 | mode.bits() << Self::DELIVERY_MODE_SHIFT | Self::LEVEL_ASSERT,
            high: (destination as u32) << Self::DESTINATION_SHIFT,
        }
    }

    /// INIT, level assert.
    pub const fn init(destination: u8) -> Icr {
        Icr::new(DeliveryMode::Init, 0, destination)
    }

    /// STARTUP: the AP starts in real mode at `vector << 12` (CS = vector << 8, IP = 0).
    pub const fn startup(destination: u8, vector: u8) -> Icr {
        Icr::new(DeliveryMode::Startup, vector, destination)
    }

    pub const fn fixed(destination: u8, vector: u8) -> Icr {
        Icr::new(DeliveryMode::Fixed, vector, destination)
    }
}

/// The STARTUP vector that starts an AP at `page`: a page-aligned address
/// in 0x1000..0xa0000 (0xa0..0xbf are reserved vectors, and the rest is no
/// conventional memory).
pub fn startup_vector(page: u64) -> Option<u8> {
    (page.is_multiple_of(4096) && (0x1000..0xa_0000).contains(&page)).then_some((page >> 12) as u8)
}

/// What identifies a CPU: its local APIC ID register, CPUID.1:EBX and
/// IA32_APIC_BASE must agree with each other and with its role. Returns
/// the APIC ID.
pub fn identity(id_register: u32, cpuid_1_ebx: u32, apic_base: u64, bsp: bool) -> Result<u8, Detail> {
    let (id, initial) = (lapic::id(id_register), lapic::cpuid_id(cpuid_1_ebx));
    if id != initial {
        return Err(detail!("APIC ID register says {id}, CPUID.1:EBX[31:24] {initial}"));
    }
    if apic_base & lapic::BASE_MSR_ADDRESS != lapic::BASE || apic_base & lapic::BASE_MSR_ENABLE == 0 {
        return Err(detail!("IA32_APIC_BASE {apic_base:#x}: not enabled at {:#x}", lapic::BASE));
    }
    if (apic_base & lapic::BASE_MSR_BSP != 0) != bsp {
        let role = if bsp { "the BSP" } else { "an AP" };
        return Err(detail!("IA32_APIC_BASE {apic_base:#x}: BSP flag wrong for {role} (APIC ID {id})"));
    }
    Ok(id)
}

/// Where the AP trampoline goes: its code from offset 0 of a page below
/// 1 MiB, its parameter block at [`trampoline::PARAMS`].
pub mod trampoline {
    use crate::Detail;

    /// The page tried first.
    pub const PREFERRED_PAGE: u64 = 0x8000;

    /// Offsets in the page. The 16-bit code addresses them from DS = CS
    /// (the page), the 32- and 64-bit code from EBX/RBX = the page.
    pub const PARAMS: u64 = 0xf00;
    /// The GDT pointer (limit u16, base u32) `lgdtl` loads in real mode.
    pub const GDT_POINTER: u64 = PARAMS;
    /// Far pointer (offset u32, selector u16) to the 32-bit code.
    pub const PROTECTED_JUMP: u64 = PARAMS + 0x08;
    /// Far pointer (offset u32, selector u16) to the 64-bit code.
    pub const LONG_JUMP: u64 = PARAMS + 0x10;
    /// The BSP's CR3 (u32: the page tables are below 4 GiB).
    pub const CR3: u64 = PARAMS + 0x18;
    /// The 64-bit entry, called with the AP's slot in EDI (u64).
    pub const ENTRY: u64 = PARAMS + 0x20;
    /// The stacks: slot `s` runs on `STACKS + (s + 1) * STACK_SIZE` down (u64s).
    pub const STACKS: u64 = PARAMS + 0x28;
    pub const STACK_SIZE: u64 = PARAMS + 0x30;
    /// How many slots there are (u32); an AP past them halts.
    pub const SLOTS: u64 = PARAMS + 0x38;
    /// The next free slot (u32): each AP takes one with `lock xadd`.
    pub const NEXT_SLOT: u64 = PARAMS + 0x3c;
    pub const PARAMS_LEN: usize = 0x40;

    /// The trampoline's GDT: the kernel's selectors for 64-bit code and
    /// data (the IDT's gates name 0x08), and 32-bit code for the step between.
    pub const CODE64: u16 = 0x08;
    pub const DATA: u16 = 0x10;
    pub const CODE32: u16 = 0x18;

    /// The parameter block's contents. Offsets are from the page.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Params {
        pub page: u64,
        /// The trampoline image's length and its labels' offsets.
        pub image_len: u64,
        pub gdt: u64,
        pub gdt_len: u64,
        pub protected: u64,
        pub long: u64,
        pub cr3: u64,
        pub entry: u64,
        pub stacks: u64,
        pub stack_size: u64,
        pub slots: u32,
    }

    impl Params {
        /// The block's bytes (from [`PARAMS`]), the fields checked.
        pub fn bytes(&self) -> Result<[u8; PARAMS_LEN], Detail> {
            if super::startup_vector(self.page).is_none() {
                return Err(detail!("trampoline page {:#x} cannot be started", self.page));
            }
            if self.image_len > PARAMS {
                return Err(detail!("trampoline is {:#x} bytes, past its parameters at {PARAMS:#x}", self.image_len));
            }
            if [self.gdt + self.gdt_len, self.protected, self.long].iter().any(|&at| at > self.image_len)
                || !(1..=0x1_0000).contains(&self.gdt_len)
            {
                return Err(detail!("trampoline labels outside its {:#x} bytes", self.image_len));
            }
            let cr3 = u32::try_from(self.cr3).map_err(|_| detail!("CR3 {:#x} above 4 GiB", self.cr3))?;
            if !self.stack_size.is_multiple_of(16) || !self.stacks.is_multiple_of(16) || self.slots == 0 {
                return Err(detail!("stacks at {:#x}, {:#x} bytes each, unaligned", self.stacks, self.stack_size));
            }
            let page = self.page as u32; // below 1 MiB: checked above
            let mut b = [0u8; PARAMS_LEN];
            let mut put = |at: u64, bytes: &[u8]| b[(at - PARAMS) as usize..][..bytes.len()].copy_from_slice(bytes);
            put(GDT_POINTER, &((self.gdt_len - 1) as u16).to_le_bytes());
            put(GDT_POINTER + 2, &(page + self.gdt as u32).to_le_bytes());
            put(PROTECTED_JUMP, &(page + self.protected as u32).to_le_bytes());
            put(PROTECTED_JUMP + 4, &CODE32.to_le_bytes());
            put(LONG_JUMP, &(page + self.long as u32).to_le_bytes());
            put(LONG_JUMP + 4, &CODE64.to_le_bytes());
            put(CR3, &cr3.to_le_bytes());
            put(ENTRY, &self.entry.to_le_bytes());
            put(STACKS, &self.stacks.to_le_bytes());
            put(STACK_SIZE, &self.stack_size.to_le_bytes());
            put(SLOTS, &self.slots.to_le_bytes());
            put(NEXT_SLOT, &0u32.to_le_bytes());
            Ok(b)
        }
    }
}

/// The Multiboot information structure's size (with the VBE and
/// framebuffer fields).
const INFO_LEN: u64 = 120;
/// The longest boot-information string considered.
const MAX_STRING: u64 = 4096;

/// The end of the NUL-terminated string at `addr` (past its NUL), or
/// [`MAX_STRING`] past `addr` if none is found.
fn string_end<M: Memory>(mem: &M, addr: u64) -> u64 {
    for i in 0..MAX_STRING {
        let mut b = [1];
        if !mem.read(addr + i, &mut b) || b[0] == 0 {
            return addr + i + 1;
        }
    }
    addr + MAX_STRING
}

/// Whether anything the boot loader handed over (the information, the
/// command line, the memory map, the boot loader name, the module list,
/// the modules and their strings) overlaps `range`.
fn holds_boot_information<M: Memory>(mem: &M, summary: &Summary, info_addr: u64, range: &Range<u64>) -> bool {
    let overlaps = |start: u64, end: u64| start < range.end && range.start < end;
    let string = |addr: u32| overlaps(u64::from(addr), string_end(mem, u64::from(addr)));
    let i = &summary.info;
    let (mmap, mods) = (u64::from(i.mmap_addr), u64::from(i.mods_addr));
    overlaps(info_addr, info_addr + INFO_LEN)
        || (i.flags & multiboot::FLAG_CMDLINE != 0 && string(i.cmdline))
        || (i.flags & multiboot::FLAG_MMAP != 0 && overlaps(mmap, mmap + u64::from(i.mmap_length)))
        || (i.flags & multiboot::FLAG_LOADER_NAME != 0 && string(i.boot_loader_name))
        || (i.flags & multiboot::FLAG_MODS != 0
            && (overlaps(mods, mods + 16 * u64::from(i.mods_count))
                || (0..i.mods_count).any(|n| {
                    multiboot::module(mem, i, n)
                        .is_none_or(|m| overlaps(u64::from(m.start), u64::from(m.end)) || string(m.string))
                })))
}

/// The page for the AP trampoline: [`trampoline::PREFERRED_PAGE`], else
/// the lowest page from 0x1000 below 0xa0000, that is available RAM in the
/// memory map and holds neither the kernel nor boot information.
pub fn trampoline_page<M: Memory>(
    mem: &M,
    summary: &Summary,
    info_addr: u64,
    kernel: &Range<u64>,
) -> Result<u64, Detail> {
    free_low_page(mem, summary, info_addr, kernel, &[])
}

/// As [`trampoline_page`], but not one of the pages in `taken`.
pub fn free_low_page<M: Memory>(
    mem: &M,
    summary: &Summary,
    info_addr: u64,
    kernel: &Range<u64>,
    taken: &[u64],
) -> Result<u64, Detail> {
    let candidates = core::iter::once(trampoline::PREFERRED_PAGE).chain((1..0xa0).map(|p| p << 12));
    for page in candidates.filter(|p| !taken.contains(p)) {
        let range = page..page + 4096;
        let mut in_ram = false;
        multiboot::for_each_mmap(mem, &summary.info, |e| {
            in_ram |= e.kind == multiboot::AVAILABLE && e.contains(&range);
        })?;
        let in_kernel = range.start < kernel.end && kernel.start < range.end;
        if in_ram && !in_kernel && !holds_boot_information(mem, summary, info_addr, &range) {
            return Ok(page);
        }
    }
    Err(detail!("no free page of RAM below 0xa0000 for the AP trampoline"))
}

/// The verdict on the APs: every APIC ID in 0..cpus but the BSP's checked
/// in once (`seen[id]` times), none other did, each found its identity
/// right (`wrong[id]` false), and `ipis` fixed IPIs arrived, one per AP.
pub fn verdict(cpus: u32, bsp: u8, seen: &[u8; 256], wrong: &[bool; 256], ipis: u64) -> Result<(), Detail> {
    let expected = |id: usize| id < cpus as usize && id != usize::from(bsp);
    let ids = |keep: &dyn Fn(usize) -> bool| {
        let mut text = Text::<40>::new();
        (0..256).filter(|&id| keep(id)).for_each(|id| _ = write!(text, " {id}"));
        text
    };
    let missing = ids(&|id| expected(id) && seen[id] == 0);
    let stray = ids(&|id| !expected(id) && seen[id] != 0);
    let twice = ids(&|id| seen[id] > 1);
    let bad = ids(&|id| wrong[id]);
    let arrived: u32 = seen.iter().map(|&n| u32::from(n)).sum();
    let aps = cpus - 1;
    let mut why = Detail::new();
    for (label, list) in [("missing", missing), ("unexpected", stray), ("twice", twice), ("misidentified", bad)] {
        if !list.as_str().is_empty() {
            let _ = write!(why, "{label}:{list}; ");
        }
    }
    if !why.as_str().is_empty() {
        let _ = write!(why, "{arrived} arrivals for {aps} APs");
        return Err(why);
    }
    if ipis != u64::from(aps) {
        return Err(detail!("{ipis} IPIs (vector {IPI_VECTOR:#x}) from {aps} APs"));
    }
    Ok(())
}
