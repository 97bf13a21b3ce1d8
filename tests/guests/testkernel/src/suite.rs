//! The tests, run in the order the command line gives.

use crate::ap;
use crate::attacks;
use crate::busy;
use crate::canaries;
use crate::hw;
use crate::println;
use crate::siblings;
use crate::smpbench;
use crate::state_suite;
use crate::tlfs_suite;
use crate::turns;
use guest_testkernel::multiboot;
use guest_testkernel::protocol::{self, exit};
use guest_testkernel::smp::{self, lapic};
use guest_testkernel::{Detail, Selected, Test, cpuid_vendor, detail, isolation, mark_option, selection};
use hw::Identity as Mem;

type Outcome = Result<(), Detail>;

const PAGE: u64 = 4096;

/// Where the 64-bit world starts: `magic` and `info` as the loader left
/// EAX and EBX.
#[unsafe(no_mangle)]
extern "C" fn testkernel_main(magic: u32, info: u32) -> ! {
    hw::init_idt();
    println!("testkernel: long mode; magic {magic:#x}, boot information at {info:#x}");
    if magic != multiboot::BOOTLOADER_MAGIC {
        println!("testkernel: FAIL not started by a Multiboot v1 loader");
        hw::exit(exit::BAD_BOOT);
    }
    let Some(boot) = multiboot::read_info(&Mem, u64::from(info)) else {
        println!("testkernel: FAIL boot information unreadable");
        hw::exit(exit::BAD_BOOT);
    };
    // Room for the kernel's file name the loader puts first, and options.
    let mut buf = [0u8; 512];
    let cmdline = if boot.flags & multiboot::FLAG_CMDLINE != 0 {
        multiboot::c_string(&Mem, u64::from(boot.cmdline), &mut buf).unwrap_or("")
    } else {
        ""
    };
    println!("testkernel: command line \"{cmdline}\"");

    let (mut passed, mut failed) = (0u32, 0u32);
    for selected in selection(cmdline) {
        let (name, outcome) = match selected {
            Selected::Test(test) => (test.name(), run(test, magic, u64::from(info), cmdline)),
            Selected::Unknown(name) => (name, Err(detail!("unknown test"))),
        };
        match outcome {
            Ok(()) => {
                passed += 1;
                println!("testkernel: {name}: ok");
            }
            Err(why) => {
                failed += 1;
                println!("testkernel: {name}: FAIL {why}");
            }
        }
    }
    println!("testkernel: done: {passed} passed, {failed} failed");
    // `end=crash`: the run ends in a triple fault instead (the hostile
    // guest's last act; its verdict is the line above).
    if guest_testkernel::option(cmdline, "end") == Some("crash") {
        crash().ok();
    }
    hw::exit(if failed == 0 { exit::PASS } else { exit::FAILED })
}

fn run(test: Test, magic: u32, info: u64, cmdline: &str) -> Outcome {
    match test {
        Test::Uart => uart(),
        Test::Multiboot => boot_information(magic, info),
        Test::Cpuid => cpuid(),
        Test::PortIo => port_io(),
        Test::Hlt => hlt(),
        Test::Unmapped => unmapped(magic, info),
        Test::Mmio => mmio(),
        Test::ReadOnly => read_only(),
        Test::Isolation => isolation(magic, info, cmdline),
        Test::Ram => ram(magic, info),
        Test::Crash => crash(),
        Test::TlfsCpuid => tlfs_suite::cpuid(),
        Test::TlfsMsr => tlfs_suite::msrs(),
        Test::TlfsHypercall => tlfs_suite::hypercalls(),
        Test::TlfsSynic => tlfs_suite::synic(),
        Test::TlfsStimer => tlfs_suite::stimers(),
        Test::Smp => smp(magic, info, cmdline),
        Test::HcBench => tlfs_suite::hypercall_bench(),
        Test::SmpBench => smpbench::run(magic, info, cmdline),
        Test::ExitBench => smpbench::exits(magic, info, cmdline),
        Test::StateIsolation => state_suite::isolation(cmdline),
        Test::Xsetbv => state_suite::xsetbv(),
        Test::Intercepts => state_suite::intercepts(),
        Test::Debug => state_suite::debug(cmdline),
        Test::Alignment => state_suite::alignment(cmdline),
        Test::CanarySet => canaries::set(canaries::seed(cmdline)?, magic, info),
        Test::CanaryCheck => canaries::check(canaries::seed(cmdline)?, magic, info),
        Test::Pace => canaries::pace(hw::tsc_hz()),
        Test::Busy => busy::run(hw::tsc_hz()),
        Test::Turns => turns::run(magic, info, cmdline),
        Test::Topology => siblings::run(magic, info, cmdline),
        Test::Timers => crate::timers::run(hw::tsc_hz()),
        Test::StimerJitter => crate::stimer_bench::run(),
        Test::Messaging => crate::messaging::run(cmdline),
        Test::Testdev => crate::testdev::run(magic, info),
        Test::FidelityCpuid => crate::fidelity::cpuid(magic, info, cmdline),
        Test::FidelityMsr => crate::fidelity::msr(),
        Test::FidelityCr => crate::fidelity::cr(),
        Test::FidelityApic => crate::fidelity::apic(magic, info),
        Test::FidelityNmi => crate::fidelity::nmi(magic, info),
        Test::FidelityRtc => crate::fidelity::rtc(),
        Test::FidelityPmTimer => crate::fidelity::pm_timer(),
        Test::FidelityAcpi => crate::fidelity::acpi(info, cmdline),
        Test::FidelityReset => crate::fidelity::reset(cmdline),
        Test::Vsm => crate::vsm_suite::run(cmdline),
        Test::VsmBench => crate::vsm_suite::bench(),
        hostile => attacks::run(hostile, magic, info, cmdline),
    }
}

fn expect<T: PartialEq + core::fmt::LowerHex>(what: &str, got: T, want: T) -> Outcome {
    if got == want { Ok(()) } else { Err(detail!("{what}: got {got:#x}, expected {want:#x}")) }
}

fn uart() -> Outcome {
    println!("testkernel: uart: hello from the guest");
    let status = hw::Uart::line_status();
    if status & 0x20 == 0 {
        return Err(detail!("line status {status:#x}: transmitter never ready"));
    }
    posted_lines()
}

/// Lines the `uart` case writes to check posted THR writes (ring 0 keeps
/// them while IER's THR-empty interrupt, DLAB and loopback are off):
/// `testkernel: uart: posted NN ` then [`POSTED_TEXT`] letters, `(7 * NN
/// + 3 * j) % 26` from 'a' (the host test builds them again).
const POSTED_LINES: usize = 12;
const POSTED_TEXT: usize = 80;

/// Writes the posted lines; in the middle of each of the first eight, one
/// write the VID must see in order with the bytes around it: IER's
/// THR-empty interrupt on and off, the divisor latch opened (and the
/// divisor written back) and closed, loopback on and off with a byte sent
/// in it (it must come back in RBR, not go out: a THR write posted in
/// loopback would do the opposite). The last four are a flood with no
/// other access between, longer than ring 0's buffer of posted writes.
fn posted_lines() -> Outcome {
    use hw::{inb, outb};
    const COM1: u16 = protocol::UART_DATA;
    let (ier, lcr, mcr) = (COM1 + 1, COM1 + 3, COM1 + 4);
    for i in 0..POSTED_LINES {
        let mut line = hw::Uart::line();
        let letters = (0..POSTED_TEXT).map(|j| b'a' + ((7 * i + 3 * j) % 26) as u8);
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("testkernel: uart: posted {i:02} "));
        for (j, b) in letters.enumerate() {
            if j == POSTED_TEXT / 2 {
                match i % 4 {
                    0 if i < 8 => {
                        let was = inb(ier);
                        outb(ier, was | 0x02);
                        outb(ier, was);
                    }
                    1 if i < 8 => {
                        let was = inb(lcr);
                        outb(lcr, was | 0x80);
                        let (dll, dlm) = (inb(COM1), inb(COM1 + 1));
                        outb(COM1, dll);
                        outb(COM1 + 1, dlm);
                        outb(lcr, was);
                    }
                    2 if i < 8 => {
                        let was = inb(mcr);
                        outb(mcr, was | 0x10);
                        outb(COM1, LOOPED);
                        let (status, back) = (inb(COM1 + 5), inb(COM1));
                        outb(mcr, was);
                        if status & 0x01 == 0 || back != LOOPED {
                            return Err(detail!("loopback: LSR {status:#x}, RBR {back:#x}, sent {LOOPED:#x}"));
                        }
                    }
                    _ => {}
                }
            }
            hw::Uart::byte(b);
        }
        hw::Uart::byte(b'\n');
    }
    Ok(())
}

/// The byte the `uart` case sends in loopback mode ('#': no posted line
/// holds it).
const LOOPED: u8 = b'#';

fn boot_information(magic: u32, info: u64) -> Outcome {
    let summary = multiboot::check(&Mem, magic, info, hw::kernel_extent())?;
    let i = summary.info;
    println!(
        "testkernel: multiboot: flags {:#x}, mem_lower {} KiB, mem_upper {} KiB, {} mmap entries, {} KiB available",
        i.flags,
        i.mem_lower,
        i.mem_upper,
        summary.mmap_entries,
        summary.available / 1024
    );
    let mut buf = [0u8; 64];
    if i.flags & multiboot::FLAG_LOADER_NAME != 0 {
        let name = multiboot::c_string(&Mem, u64::from(i.boot_loader_name), &mut buf).unwrap_or("?");
        println!("testkernel: multiboot: boot loader \"{name}\"");
    }
    if i.flags & multiboot::FLAG_MODS != 0 {
        for n in 0..i.mods_count {
            let m = multiboot::module(&Mem, &i, n).ok_or(detail!("module {n} unreadable"))?;
            let string = multiboot::c_string(&Mem, u64::from(m.string), &mut buf).unwrap_or("?");
            println!("testkernel: multiboot: module {n} {:#x}..{:#x} \"{string}\"", m.start, m.end);
        }
    }
    Ok(())
}

fn cpuid() -> Outcome {
    let leaf0 = hw::cpuid(0, 0);
    let vendor = cpuid_vendor(leaf0.ebx, leaf0.edx, leaf0.ecx)?;
    let vendor = core::str::from_utf8(&vendor).unwrap_or("?");
    let leaf1 = hw::cpuid(1, 0);
    let hypervisor = leaf1.ecx & (1 << 31) != 0;
    println!(
        "testkernel: cpuid: vendor \"{vendor}\", max leaf {:#x}, signature {:#x}, hypervisor bit {}",
        leaf0.eax,
        leaf1.eax,
        u8::from(hypervisor)
    );
    if hypervisor {
        let hv = hw::cpuid(0x4000_0000, 0);
        let mut name = [0u8; 12];
        name[..4].copy_from_slice(&hv.ebx.to_le_bytes());
        name[4..8].copy_from_slice(&hv.ecx.to_le_bytes());
        name[8..].copy_from_slice(&hv.edx.to_le_bytes());
        let shown = name.map(|b| if (0x20..0x7f).contains(&b) { b } else { b'.' });
        let shown = core::str::from_utf8(&shown).unwrap_or("?");
        println!("testkernel: cpuid: leaf 0x40000000: max {:#x}, \"{shown}\"", hv.eax);
    }
    if leaf0.eax < 1 {
        return Err(detail!("max basic leaf {:#x}", leaf0.eax));
    }
    if leaf1.eax == 0 {
        return Err(detail!("leaf 1 signature is 0"));
    }
    Ok(())
}

fn port_io() -> Outcome {
    const LINE: &[u8] = b"testkernel: portio: this line came through rep outsb\n";
    let (rcx, rsi) = hw::rep_outsb(protocol::UART_DATA, LINE);
    expect("rep outsb: rcx", rcx, 0)?;
    expect("rep outsb: rsi advance", rsi.wrapping_sub(LINE.as_ptr() as u64), LINE.len() as u64)?;

    let port = protocol::UNEMULATED_PORT;
    hw::outb(port, 0x5a);
    expect("in al", hw::inb(port), 0xff)?;
    expect("in ax", hw::inw(port), 0xffff)?;
    expect("in eax", hw::inl(port), 0xffff_ffff)?;
    // What nothing claims is answered in ring 0 (the VID floats it): the
    // rest of RAX as the instruction leaves it.
    const RAX: u64 = 0x1122_3344_5566_7788;
    expect("in al over RAX", hw::in_over(port, 1, RAX), 0x1122_3344_5566_77ff)?;
    expect("in ax over RAX", hw::in_over(port, 2, RAX), 0x1122_3344_5566_ffff)?;
    expect("in eax over RAX", hw::in_over(port, 4, RAX), 0xffff_ffff)?;

    let mut one = [0u8; 1];
    let rdi = hw::insb(port, &mut one);
    expect("insb", one[0], 0xff)?;
    expect("insb: rdi advance", rdi.wrapping_sub(one.as_ptr() as u64), 1)?;

    let mut buf = [0u8; 5];
    let (rcx, rdi) = hw::rep_insb(port, &mut buf[..4]);
    expect("rep insb: rcx", rcx, 0)?;
    expect("rep insb: rdi advance", rdi.wrapping_sub(buf.as_ptr() as u64), 4)?;
    if buf != [0xff, 0xff, 0xff, 0xff, 0] {
        return Err(detail!("rep insb wrote {buf:02x?}"));
    }
    // String I/O reaches the same device as a single access: the UART's
    // line status register.
    let lsr = hw::inb(protocol::UART_LINE_STATUS);
    let mut two = [0u8; 2];
    hw::rep_insb(protocol::UART_LINE_STATUS, &mut two);
    if two != [lsr; 2] {
        return Err(detail!("rep insb of the line status read {two:02x?}, in al {lsr:#04x}"));
    }
    Ok(())
}

fn hlt() -> Outcome {
    let (ticks, start) = (hw::timer_ticks(), hw::rdtsc());
    hw::start_timer();
    hw::halt_once();
    hw::stop_timer();
    let (elapsed, timer) = (hw::rdtsc().wrapping_sub(start), hw::timer_ticks() - ticks);
    println!("testkernel: hlt: resumed after {elapsed} TSC ticks, {timer} timer interrupts");
    // HLT with interrupts enabled ends with an interrupt: the PIT's.
    if timer == 0 {
        return Err(detail!("HLT ended without a timer interrupt"));
    }
    Ok(())
}

fn unmapped(magic: u32, info: u64) -> Outcome {
    let summary = multiboot::check(&Mem, magic, info, hw::kernel_extent())?;
    let past_ram = multiboot::past_ram(&Mem, &summary);
    for addr in [past_ram, protocol::UNMAPPED_HIGH] {
        println!("testkernel: unmapped: probing {addr:#x}");
        expect("read 4 bytes", hw::read32(addr), 0xffff_ffff)?;
        expect("read 1 byte", hw::read8(addr + 1), 0xff)?;
        hw::write32(addr, 0x1234_5678);
        expect("read after write", hw::read32(addr), 0xffff_ffff)?;
    }
    Ok(())
}

fn mmio() -> Outcome {
    let base = protocol::TEST_DEVICE;
    expect("id", hw::read32(base + protocol::TEST_DEVICE_ID), protocol::TEST_DEVICE_ID_VALUE)?;
    expect(
        "id byte 1",
        hw::read8(base + protocol::TEST_DEVICE_ID + 1),
        protocol::TEST_DEVICE_ID_VALUE.to_le_bytes()[1],
    )?;
    hw::write32(base + protocol::TEST_DEVICE_ID, 0);
    expect("id after a write", hw::read32(base + protocol::TEST_DEVICE_ID), protocol::TEST_DEVICE_ID_VALUE)?;
    let pattern = protocol::TEST_DEVICE_SCRATCH_PATTERN;
    hw::write32(base + protocol::TEST_DEVICE_SCRATCH, pattern);
    expect("scratch", hw::read32(base + protocol::TEST_DEVICE_SCRATCH), pattern)?;
    Ok(())
}

fn read_only() -> Outcome {
    let rom = protocol::TEST_ROM;
    let before = hw::read64(rom);
    hw::write64(rom, !before);
    let after = hw::read64(rom);
    if after != before {
        return Err(detail!("write went through: {before:#x} became {after:#x}"));
    }
    let signature = u64::from_le_bytes(protocol::TEST_ROM_SIGNATURE);
    expect("signature", before, signature)
}

fn isolation(magic: u32, info: u64, cmdline: &str) -> Outcome {
    let mark = mark_option(cmdline).ok_or(detail!("no mark=<word> on the command line"))?;
    let record = isolation::record(mark)?;
    let at = isolation::ADDRESS;
    let range = at..at + isolation::RECORD_LEN as u64;
    // The record must land in RAM that neither the kernel nor the boot
    // information (or a module) uses.
    let summary = multiboot::check(&Mem, magic, info, hw::kernel_extent())?;
    let mut in_ram = false;
    multiboot::for_each_mmap(&Mem, &summary.info, |e| {
        in_ram |= e.kind == multiboot::AVAILABLE && e.contains(&range);
    })?;
    if !in_ram {
        return Err(detail!("{at:#x} is not in available RAM"));
    }
    let kernel = hw::kernel_extent();
    let overlaps = |start: u64, end: u64| start < range.end && range.start < end;
    if overlaps(kernel.start, kernel.end) || overlaps(info, info + 88) {
        return Err(detail!("{at:#x} overlaps the kernel or the boot information"));
    }
    let i = summary.info;
    if i.flags & multiboot::FLAG_MODS != 0 {
        for n in 0..i.mods_count {
            let m = multiboot::module(&Mem, &i, n).ok_or(detail!("module {n} unreadable"))?;
            if overlaps(u64::from(m.start), u64::from(m.end)) {
                return Err(detail!("{at:#x} overlaps module {n}"));
            }
        }
    }

    println!("testkernel: isolation: mark {mark} at {at:#x}");
    hw::write_ram(at, &record);
    let (ticks, iterations) = hw::spin(isolation::WAIT_TSC, isolation::WAIT_ITERATIONS);
    let mut back = [0u8; isolation::RECORD_LEN];
    hw::read_ram(at, &mut back);
    println!("testkernel: isolation: waited {ticks} TSC ticks, {iterations} iterations");
    if back != record {
        return Err(detail!("saw \"{}\"", isolation::describe(&back)));
    }
    Ok(())
}

fn ram(magic: u32, info: u64) -> Outcome {
    let summary = multiboot::check(&Mem, magic, info, hw::kernel_extent())?;
    let i = summary.info;
    // Past everything the kernel still reads: its image (stack included),
    // the boot information and the modules.
    let mut start = hw::kernel_extent().end.max(info + 88);
    if i.flags & multiboot::FLAG_MODS != 0 {
        for n in 0..i.mods_count {
            let m = multiboot::module(&Mem, &i, n).ok_or(detail!("module {n} unreadable"))?;
            start = start.max(u64::from(m.end));
        }
    }
    let start = start.next_multiple_of(PAGE);
    // Below the uncached top GiB of the identity map (partition RAM ends
    // below 3 GiB).
    let limit = 3 << 30;
    let each_page = |visit: &mut dyn FnMut(u64)| {
        multiboot::for_each_mmap(&Mem, &i, |e| {
            if e.kind == multiboot::AVAILABLE {
                let (from, to) = (e.base.max(start).next_multiple_of(PAGE), e.end().min(limit));
                (from..to).step_by(PAGE as usize).for_each(&mut *visit);
            }
        })
    };
    let mark = |page: u64| page ^ 0x7e55_e7a0_0000_0000;
    let mut pages = 0u64;
    each_page(&mut |page| {
        hw::write64(page, mark(page));
        pages += 1;
    })?;
    let (mut wrong, mut first_wrong) = (0u64, None);
    each_page(&mut |page| {
        if hw::read64(page) != mark(page) {
            wrong += 1;
            first_wrong.get_or_insert(page);
        }
    })?;
    println!(
        "testkernel: ram: {pages} pages ({} MiB) from {start:#x} to {:#x} written and read back",
        (pages * PAGE) >> 20,
        summary.ram_end
    );
    if pages == 0 || wrong > 0 {
        return Err(detail!("{wrong} of {pages} pages read back wrong, the first at {first_wrong:#x?}"));
    }
    Ok(())
}

fn crash() -> Outcome {
    println!("testkernel: crash: triple-faulting on purpose");
    hw::triple_fault()
}

fn smp(magic: u32, info: u64, cmdline: &str) -> Outcome {
    let cpus = smp::cpus_option(cmdline)?;
    let leaf1 = hw::cpuid(1, 0);
    if leaf1.edx & lapic::CPUID_1_EDX_APIC == 0 {
        return Err(detail!("CPUID.1:EDX {:#x}: no local APIC", leaf1.edx));
    }
    let apic_base = hw::rdmsr(lapic::BASE_MSR);
    let bsp = smp::identity(ap::lapic_id_register(), leaf1.ebx, apic_base, true)?;
    if u32::from(bsp) >= cpus {
        return Err(detail!("the BSP's APIC ID {bsp} is not below cpus={cpus}"));
    }
    let (svr_before, svr, lint0) = ap::enable_lapic();
    println!(
        "testkernel: smp: BSP APIC ID {bsp}, IA32_APIC_BASE {apic_base:#x}, SVR {svr_before:#x} -> {svr:#x}, \
         LINT0 {lint0:#x}; {cpus} CPUs expected"
    );
    if svr & lapic::SVR_ENABLE == 0 {
        return Err(detail!("SVR {svr:#x}: the local APIC stays disabled"));
    }
    if cpus == 1 {
        return Ok(());
    }
    let kernel = hw::kernel_extent();
    let summary = multiboot::check(&Mem, magic, info, kernel.clone())?;
    let page = smp::trampoline_page(&Mem, &summary, info, &kernel)?;
    println!("testkernel: smp: trampoline at {page:#x}; INIT, STARTUP, STARTUP to each AP");
    ap::start_aps(page, cpus, bsp)
}
