//! Fidelity: ACPI discovery as an OS written for a PC does it (ACPI 6.5
//! chapter 5): the RSDP by the search of 5.2.5.1 (the EBDA's first KiB,
//! then 0xE0000-0xFFFFF on 16-byte boundaries), the RSDT and XSDT, the MADT
//! against this VP and the `cpus=` count, the FADT's PM timer, reset
//! register and RTC fields, the DSDT and FACS; and the Multiboot
//! information as GRUB and QEMU fill it (Multiboot 0.6.96 3.3): the boot
//! loader's name, a memory map that keeps the tables out of RAM, and a
//! command line whose first word is the kernel's file name.

use super::{Outcome, checks};
use crate::checks::{Check, Checks, fail_unless, ok};
use crate::hw::{self, Identity as Mem};
use guest_testkernel::acpi::{self, Discovered, Fadt, Sdt};
use guest_testkernel::detail;
use guest_testkernel::multiboot::{self, Memory};
use guest_testkernel::smp::{self, lapic};

/// The FACS's X_Firmware_Waking_Vector (ACPI 6.5 table 5.14), and what
/// the read/write check writes there (and then restores).
const FACS_X_WAKING_VECTOR: u64 = 24;
const FACS_PROBE: u64 = 0x1234_5678_9abc_def0;
/// The FACS's length (at least 64 bytes, ACPI 6.5 5.2.10).
const FACS_LEN: u64 = 64;

/// CMOS index and data ports, and status register B (MC146818).
const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
const CMOS_STATUS_B: u8 = 0x0b;

pub fn run(info: u64, cmdline: &str) -> Outcome {
    let mut c = checks();
    let found = acpi::discover(&Mem);
    let where_ = found.as_ref().map_or(detail!("none"), |d| detail!("at {:#x}", d.rsdp_at));
    let in_bios_area = found.as_ref().is_some_and(|d| acpi::BIOS_AREA.contains(&d.rsdp_at));
    let in_ebda = found.as_ref().is_some_and(|d| acpi::ebda(&Mem).is_some_and(|e| e.contains(&d.rsdp_at)));
    c.require(
        "RSDP in the EBDA or 0xE0000-0xFFFFF, 16-byte aligned (ACPI 5.2.5.1)",
        if in_bios_area || in_ebda { Ok(where_) } else { Err(where_) },
    );
    match found {
        Some(d) => tables(&mut c, &d, cmdline),
        None => c.fail("RSDT, XSDT, MADT, FADT (ACPI 5.2.7-5.2.12)", detail!("no RSDP to start from")),
    }
    boot_information(&mut c, info);
    c.finish()
}

fn tables(c: &mut Checks, d: &Discovered, cmdline: &str) {
    let r = d.rsdp;
    c.require("RSDP checksum of its first 20 bytes (ACPI 5.2.5.3)", fail_unless(r.checksum_ok, detail!("bad")));
    c.require(
        "RSDP revision 2, length, extended checksum (ACPI 5.2.5.3)",
        fail_unless(
            r.revision >= 2 && r.length >= 36 && r.extended_checksum_ok,
            detail!("revision {}, length {}, extended checksum ok {}", r.revision, r.length, r.extended_checksum_ok),
        ),
    );
    c.require("RSDT signature and checksum (ACPI 5.2.7)", root_table(d.rsdt, b"RSDT"));
    c.require("XSDT signature and checksum (ACPI 5.2.8)", root_table(d.xsdt, b"XSDT"));
    let rsdt_entries = d.rsdt.map(|t| acpi::entries(&Mem, &t, 4));
    c.require(
        "RSDT and XSDT list the same tables (ACPI 5.2.7, 5.2.8)",
        fail_unless(
            rsdt_entries.as_ref() == Some(&d.listed) && !d.listed.is_empty(),
            detail!("XSDT {:x?}, RSDT {:x?}", d.listed.as_slice(), rsdt_entries.as_deref()),
        ),
    );
    let mut bad = None;
    for &at in &d.listed {
        match acpi::read_sdt(&Mem, at) {
            Some(t) if t.checksum_ok => {}
            Some(t) => bad = Some(detail!("{} at {at:#x}: bad checksum", t.signature())),
            None => bad = Some(detail!("{at:#x}: unreadable")),
        }
    }
    c.require("every listed table's checksum (ACPI 5.2.6)", bad.map_or(Ok(detail!("{} tables", d.listed.len())), Err));
    madt(c, acpi::find_table(&Mem, &d.listed, b"APIC"), cmdline);
    match acpi::find_table(&Mem, &d.listed, b"FACP").and_then(|t| acpi::read_fadt(&Mem, &t)) {
        Some(f) => fadt(c, &f),
        None => c.fail("FADT listed (ACPI 5.2.9)", detail!("no FACP table")),
    }
}

fn root_table(t: Option<Sdt>, signature: &[u8; 4]) -> Check {
    match t {
        Some(t) if &t.signature == signature && t.checksum_ok => Ok(detail!("at {:#x}, {} bytes", t.addr, t.length)),
        Some(t) => Err(detail!("{} at {:#x}, checksum ok {}", t.signature(), t.addr, t.checksum_ok)),
        None => Err(detail!("absent or unreadable")),
    }
}

fn madt(c: &mut Checks, t: Option<Sdt>, cmdline: &str) {
    let Some(m) = t.and_then(|t| acpi::read_madt(&Mem, &t)) else {
        c.fail("MADT listed (ACPI 5.2.12)", detail!("no APIC table"));
        return;
    };
    let enabled = || m.processors.iter().filter(|p| p.flags & 1 != 0);
    let cpus = smp::cpus_option(cmdline);
    let count = enabled().count();
    c.require(
        "MADT: one enabled local APIC per VP (ACPI 5.2.12.2)",
        match cpus {
            Ok(n) if count == n as usize => Ok(detail!("{count} for cpus={n}")),
            Ok(n) => Err(detail!("{count} enabled of {} entries, cpus={n}", m.processors.len())),
            Err(e) => Err(e),
        },
    );
    let unique = enabled().all(|p| enabled().filter(|q| q.apic_id == p.apic_id || q.uid == p.uid).count() == 1);
    c.require(
        "MADT: APIC IDs and UIDs unique (ACPI 5.2.12.2)",
        fail_unless(
            unique,
            detail!("{:?}", m.processors.iter().map(|p| (p.uid, p.apic_id)).collect::<heapless::Vec<_, 8>>()),
        ),
    );
    let own = lapic::cpuid_id(hw::cpuid(1, 0).ebx);
    c.require(
        "MADT lists this VP's CPUID.1 APIC ID (ACPI 5.2.12.2, SDM 11.4.6)",
        fail_unless(enabled().any(|p| p.apic_id == own), detail!("APIC ID {own} not in the MADT")),
    );
    let base = hw::rdmsr(lapic::BASE_MSR) & lapic::BASE_MSR_ADDRESS;
    c.require(
        "MADT: local APIC address is IA32_APIC_BASE's (ACPI 5.2.12)",
        fail_unless(
            u64::from(m.local_apic_address) == base,
            detail!("{:#x}, IA32_APIC_BASE {base:#x}", m.local_apic_address),
        ),
    );
    c.require(
        "MADT: an I/O APIC at GSI base 0 (ACPI 5.2.12.3)",
        match m.io_apics.iter().find(|io| io.gsi_base == 0) {
            Some(io) => Ok(detail!("ID {} at {:#x}", io.id, io.address)),
            None => Err(detail!("{} I/O APICs, none at GSI 0", m.io_apics.len())),
        },
    );
    let irq0 = m.overrides.iter().find(|o| o.bus == 0 && o.source == 0);
    c.require(
        "MADT: ISA IRQ 0 overridden to GSI 2 (ACPI 5.2.12.5)",
        match irq0 {
            Some(o) if o.gsi == 2 => Ok(detail!("flags {:#x}", o.flags)),
            Some(o) => Err(detail!("IRQ 0 -> GSI {}", o.gsi)),
            None => Err(detail!("no override for IRQ 0")),
        },
    );
}

fn fadt(c: &mut Checks, f: &Fadt) {
    let port = f.pm_timer_port();
    c.require(
        "FADT: PM_TMR_BLK set, PM_TMR_LEN 4 (ACPI 5.2.9, 4.8.3.3)",
        fail_unless(
            port != 0 && port <= 0xffff && f.pm_tmr_len == 4,
            detail!("PM_TMR_BLK {:#x}, X_PM_TMR_BLK {:x?}, PM_TMR_LEN {}", f.pm_tmr_blk, f.x_pm_tmr_blk, f.pm_tmr_len),
        ),
    );
    if let Some(x) = f.x_pm_tmr_blk.filter(|x| x.address != 0) {
        c.require(
            "FADT: X_PM_TMR_BLK agrees with PM_TMR_BLK (ACPI 5.2.9)",
            fail_unless(x.space == 1 && x.address == u64::from(f.pm_tmr_blk) && x.bit_width == 32, detail!("{x:x?}")),
        );
    }
    let r = f.reset_reg;
    c.require(
        "FADT: RESET_REG_SUP and a RESET_REG (ACPI 5.2.9, 4.8.3.6)",
        fail_unless(
            f.flags & acpi::FADT_RESET_REG_SUP != 0 && r.address != 0 && r.space <= 1 && r.bit_width == 8,
            detail!("flags {:#x}, RESET_REG {r:x?}", f.flags),
        ),
    );
    c.info("RESET_REG", format_args!("space {}, address {:#x}, value {:#x}", r.space, r.address, f.reset_value));
    c.require(
        "FADT: not HW-reduced, PM1a blocks set (ACPI 5.2.9, 4.8.3.1)",
        fail_unless(
            f.flags & acpi::FADT_HW_REDUCED_ACPI == 0 && f.pm1a_evt_blk != 0 && f.pm1a_cnt_blk != 0,
            detail!("flags {:#x}, PM1a_EVT_BLK {:#x}, PM1a_CNT_BLK {:#x}", f.flags, f.pm1a_evt_blk, f.pm1a_cnt_blk),
        ),
    );
    let dsdt = acpi::read_sdt(&Mem, f.dsdt());
    c.require(
        "FADT: DSDT signature and checksum (ACPI 5.2.11.1)",
        match dsdt {
            Some(t) if &t.signature == b"DSDT" && t.checksum_ok => Ok(detail!("{} bytes", t.length)),
            other => Err(detail!("{:#x}: {other:?}", f.dsdt())),
        },
    );
    let facs = u64::from(f.firmware_ctrl);
    let mut signature = [0u8; 4];
    let readable = facs != 0 && Mem.read(facs, &mut signature);
    let signed = readable && &signature == b"FACS" && facs % 64 == 0;
    c.require("FADT: FACS 64-byte aligned, signed (ACPI 5.2.10)", fail_unless(signed, detail!("at {facs:#x}")));
    if signed {
        // X_Firmware_Waking_Vector (offset 24): the OS writes it before S3.
        let vector = facs + FACS_X_WAKING_VECTOR;
        let before = hw::read64(vector);
        hw::write64(vector, FACS_PROBE);
        let written = hw::read64(vector);
        hw::write64(vector, before);
        c.require(
            "FACS in read/write memory (ACPI 5.2.10)",
            fail_unless(written == FACS_PROBE, detail!("at {facs:#x}: wrote {FACS_PROBE:#x}, read {written:#x}")),
        );
    }
    rtc(c, f);
}

/// The FADT's RTC fields must describe the CMOS RTC that answers (or not)
/// at ports 0x70/0x71.
fn rtc(c: &mut Checks, f: &Fadt) {
    hw::outb(CMOS_INDEX, CMOS_STATUS_B);
    let status_b = hw::inb(CMOS_DATA);
    let answers = status_b != 0xff;
    let not_present = f.iapc_boot_arch & acpi::BOOT_ARCH_CMOS_RTC_NOT_PRESENT != 0;
    let note = detail!("B {status_b:#04x}, arch {:#x}, century {:#x}", f.iapc_boot_arch, f.century);
    let agrees = if answers { !not_present && f.century != 0 } else { not_present };
    c.require("FADT: RTC flag, CENTURY match port 0x70 (ACPI 5.2.9.3)", if agrees { Ok(note) } else { Err(note) });
}

/// The Multiboot information as GRUB and QEMU fill it (Multiboot 0.6.96 3.3).
fn boot_information(c: &mut Checks, info: u64) {
    let Some(i) = multiboot::read_info(&Mem, info) else {
        c.fail("Multiboot information readable (Multiboot 3.3)", detail!("at {info:#x}"));
        return;
    };
    let mut buf = [0u8; 64];
    let name = (i.flags & multiboot::FLAG_LOADER_NAME != 0)
        .then(|| multiboot::c_string(&Mem, i.boot_loader_name.into(), &mut buf))
        .flatten();
    c.require(
        "Multiboot: boot_loader_name (flag 9, Multiboot 3.3)",
        match name {
            Some(n) if !n.is_empty() => Ok(detail!("\"{n}\"")),
            _ => Err(detail!("flags {:#x}", i.flags)),
        },
    );
    c.require("Multiboot: mmap keeps ACPI tables out of RAM (Multiboot 3.3)", tables_reserved(&i));
    let mut line = [0u8; 512];
    let cmdline = (i.flags & multiboot::FLAG_CMDLINE != 0)
        .then(|| multiboot::c_string(&Mem, i.cmdline.into(), &mut line))
        .flatten();
    let first = cmdline.and_then(|l| l.split_ascii_whitespace().next());
    c.require(
        "Multiboot: cmdline starts with the file name (Multiboot 3.3)",
        match first {
            Some(word) if !word.contains('=') => Ok(detail!("\"{word}\"")),
            Some(word) => Err(detail!("first word \"{word}\" is an option")),
            None => Err(detail!("flags {:#x}: no command line", i.flags)),
        },
    );
}

/// Every byte of the RSDP and of each table lies in a memory-map entry
/// that is not available RAM (reserved, ACPI or NVS), and in no available
/// entry.
fn tables_reserved(i: &multiboot::Info) -> Check {
    if i.flags & multiboot::FLAG_MMAP == 0 {
        return Err(detail!("flags {:#x}: no memory map", i.flags));
    }
    let Some(d) = acpi::discover(&Mem) else { return Err(detail!("no RSDP")) };
    let mut ranges: heapless::Vec<core::ops::Range<u64>, { acpi::MAX_TABLES + 4 }> = heapless::Vec::new();
    let _ = ranges.push(d.rsdp_at..d.rsdp_at + u64::from(d.rsdp.length));
    for t in d.rsdt.iter().chain(d.xsdt.iter()) {
        let _ = ranges.push(t.addr..t.addr + u64::from(t.length));
    }
    for t in d.listed.iter().filter_map(|&a| acpi::read_sdt(&Mem, a)) {
        let _ = ranges.push(t.addr..t.addr + u64::from(t.length));
        let fadt = (&t.signature == b"FACP").then(|| acpi::read_fadt(&Mem, &t)).flatten();
        if let Some(facs) = fadt.map(|f| u64::from(f.firmware_ctrl)).filter(|&a| a != 0) {
            let _ = ranges.push(facs..facs + FACS_LEN);
        }
    }
    let mut result: Check = ok();
    for range in &ranges {
        let (mut kept, mut available) = (false, false);
        let walked = multiboot::for_each_mmap(&Mem, i, |e| {
            let overlaps = e.base < range.end && range.start < e.end();
            available |= overlaps && e.kind == multiboot::AVAILABLE;
            kept |= e.contains(range) && e.kind != multiboot::AVAILABLE;
        });
        walked?;
        if !kept || available {
            result =
                Err(detail!("{:#x}..{:#x}: reserved {kept}, in available RAM {available}", range.start, range.end));
        }
    }
    result.map(|_| detail!("{} ranges", ranges.len()))
}
