//! The VID's Linux loader (`services/vid/src/linux.rs`) against Debian's
//! real kernel, without Tessera, for both the 32-bit and the 64-bit boot
//! protocol: the loader plans the load, and QEMU TCG
//! boots a tiny Multiboot trampoline ([`TRAMPOLINE`]) with the plan's writes
//! as modules. The trampoline copies each module to the address the plan
//! gives, loads the plan's GDT, segments and registers and jumps to the
//! plan's EIP, so the kernel starts as a VP set up from the plan would. The
//! kernel must reach the busybox shell and answer, as in `linux_direct`.
//!
//! QEMU gets more RAM (768 MiB) than the plan describes (512 MiB), so the
//! ACPI tables SeaBIOS keeps at the top of its RAM stay intact. Fetches the
//! guest with apt on the first run (see `tessera linux fetch`).

mod common;

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use tessera::console::{Console, ConsoleOptions};
use tessera::linux::{CMDLINE, EXPECTED, MARKER};
use tlfs::{HvRegisterName, segment_register_from_value, table_register_from_value};
use vid::linux::{BootEntry, LOW_AREA_LEN, LinuxRequest, plan, standard_memory_map};

const PLAN_RAM: u64 = 512 << 20;
const QEMU_RAM_MIB: u32 = 768;
const TIMEOUT: Duration = Duration::from_secs(240);

/// A Multiboot v1 a.out-kludge image loaded at 1 MiB (`as --32`, `ld -Ttext=0x100000 --oformat binary`):
///
/// ```text
/// header: .long 0x1BADB002, 0x00010000, -(0x1BADB002 + 0x00010000)
///         .long 0x100000, 0x100000, 0, 0, 0x100040     # header, load, load_end, bss_end, entry
/// params: .long 0, 0, 0   # 0x20: destination of module 0, 1, 2
///         .long 0         # 0x2c: ESI
///         .long 0         # 0x30: EIP
/// gdtr:   .word 0; .long 0; .word 0                     # 0x34: GDTR limit, base
/// cr3:    .long 0         # 0x3c: CR3 for the 64-bit entry, 0 for the 32-bit one
/// start:  cli; cld
///         mov 24(%ebx), %edx           # mods_addr
///         xor %ebp, %ebp
/// 1:      cmp 20(%ebx), %ebp           # mods_count
///         jae 2f
///         mov (%edx), %esi; mov 4(%edx), %ecx; sub %esi, %ecx
///         mov 0x100020(,%ebp,4), %edi
///         rep movsb
///         add $16, %edx; inc %ebp; jmp 1b
/// 2:      lgdt 0x100034
///         mov $0x18, %eax; mov %eax, %ds; mov %eax, %es; mov %eax, %ss; mov %eax, %fs; mov %eax, %gs
///         mov $0x90000, %esp
///         mov 0x10003c, %eax; test %eax, %eax; jz 3f
///         mov %eax, %cr3
///         mov %cr4, %eax; or $0x20, %eax; mov %eax, %cr4                     # PAE
///         mov $0xC0000080, %ecx; rdmsr; or $0x100, %eax; wrmsr              # EFER.LME
///         mov %cr0, %eax; or $0x80000000, %eax; mov %eax, %cr0              # PG: compatibility mode
/// 3:      mov 0x10002c, %esi; mov 0x100030, %eax
///         xor %ebp, %ebp; xor %edi, %edi; xor %ebx, %ebx
///         push $0x10; push %eax; lret                   # CS 0x10 from the plan's GDT (64-bit: long mode)
/// ```
const TRAMPOLINE: [u8; 192] = [
    0x02, 0xb0, 0xad, 0x1b, 0x00, 0x00, 0x01, 0x00, 0xfe, 0x4f, 0x51, 0xe4, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x10,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfa, 0xfc, 0x8b, 0x53, 0x18, 0x31, 0xed, 0x3b, 0x6b, 0x14, 0x73, 0x16,
    0x8b, 0x32, 0x8b, 0x4a, 0x04, 0x29, 0xf1, 0x8b, 0x3c, 0xad, 0x20, 0x00, 0x10, 0x00, 0xf3, 0xa4, 0x83, 0xc2, 0x10,
    0x45, 0xeb, 0xe5, 0x0f, 0x01, 0x15, 0x34, 0x00, 0x10, 0x00, 0xb8, 0x18, 0x00, 0x00, 0x00, 0x8e, 0xd8, 0x8e, 0xc0,
    0x8e, 0xd0, 0x8e, 0xe0, 0x8e, 0xe8, 0xbc, 0x00, 0x00, 0x09, 0x00, 0xa1, 0x3c, 0x00, 0x10, 0x00, 0x85, 0xc0, 0x74,
    0x25, 0x0f, 0x22, 0xd8, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f,
    0x32, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0,
    0x8b, 0x35, 0x2c, 0x00, 0x10, 0x00, 0xa1, 0x30, 0x00, 0x10, 0x00, 0x31, 0xed, 0x31, 0xff, 0x31, 0xdb, 0x6a, 0x10,
    0x50, 0xcb,
];
const DESTINATIONS: usize = 0x20;
const ESI: usize = 0x2c;
const EIP: usize = 0x30;
const GDTR: usize = 0x34;
const CR3: usize = 0x3c;

fn put32(image: &mut [u8], at: usize, value: u64) {
    image[at..at + 4].copy_from_slice(&u32::try_from(value).expect("below 4 GiB").to_le_bytes());
}

#[test]
fn linux_vid_loader_plan_boots_debians_kernel() {
    boot_from_plan("linux_vid_loader_plan_boots_debians_kernel", BootEntry::Protected32);
}

#[test]
fn linux_vid_loader_plan_boots_debians_kernel_64_bit() {
    boot_from_plan("linux_vid_loader_plan_boots_debians_kernel_64_bit", BootEntry::Long64);
}

/// Plans Debian's kernel with `entry`, boots the plan through the
/// trampoline and checks the guest reaches the shell.
fn boot_from_plan(name: &str, entry: BootEntry) {
    let dir = common::test_dir(name);
    let guest = tessera::linux::fetch().unwrap_or_else(|e| panic!("cannot fetch the Linux guest: {}", e.message));
    let kernel = fs::read(&guest.kernel).expect("read the kernel");
    let initrd = fs::read(&guest.initramfs).expect("read the initramfs");
    let map = standard_memory_map(PLAN_RAM);
    let request = LinuxRequest {
        kernel: &kernel,
        initrd: &initrd,
        cmdline: CMDLINE,
        ram_size: PLAN_RAM,
        memory_map: &map,
        entry,
    };
    let mut area = Box::new([0u8; LOW_AREA_LEN]);
    let plan = plan(&request, &mut area).unwrap_or_else(|e| panic!("the loader refuses Debian's kernel: {e}"));
    eprintln!("[{name}] kernel {:#x?}, footprint {:#x?}, initrd {:#x?}", plan.kernel, plan.footprint, plan.initrd);

    // The state the trampoline recreates must be the plan's.
    let get = |n: HvRegisterName| plan.registers.iter().find(|r| r.0 == n).map(|r| (r.1, r.2)).expect("register set");
    let (gdt_base, gdt_limit) = table_register_from_value(get(HvRegisterName::GDTR).0, get(HvRegisterName::GDTR).1);
    let cs = segment_register_from_value(get(HvRegisterName::CS).0, get(HvRegisterName::CS).1);
    let ds = segment_register_from_value(get(HvRegisterName::DS).0, get(HvRegisterName::DS).1);
    assert_eq!((cs.selector, ds.selector), (0x10, 0x18), "the selectors the trampoline loads");
    // What the trampoline does to CR0, CR3, CR4 and EFER after Multiboot
    // (protected mode, paging off) must give the plan's values.
    let cr3 = get(HvRegisterName::CR3).0;
    match entry {
        BootEntry::Protected32 => {
            assert_eq!((get(HvRegisterName::CR0).0, cr3, get(HvRegisterName::EFER).0), (0x11, 0, 0));
            assert!(!cs.attributes.long());
        }
        BootEntry::Long64 => {
            assert_eq!((get(HvRegisterName::CR0).0, get(HvRegisterName::CR4).0), (0x8000_0011, 0x20));
            assert_eq!((Some(cr3), get(HvRegisterName::EFER).0), (plan.page_tables, 0x500));
            assert!(cs.attributes.long());
        }
    }

    let mut image = TRAMPOLINE;
    let mut modules = Vec::new();
    assert_eq!(plan.writes.len(), 3, "kernel, initrd, low area");
    for (i, write) in plan.writes.iter().enumerate() {
        assert_eq!(write.zero, 0);
        put32(&mut image, DESTINATIONS + 4 * i, write.gpa);
        let path = dir.join(format!("module{i}.bin"));
        fs::write(&path, write.data).expect("write a module");
        modules.push(path.to_string_lossy().replace(',', ",,"));
    }
    put32(&mut image, ESI, get(HvRegisterName::RSI).0);
    put32(&mut image, EIP, get(HvRegisterName::RIP).0);
    image[GDTR..GDTR + 2].copy_from_slice(&gdt_limit.to_le_bytes());
    put32(&mut image, GDTR + 2, gdt_base);
    put32(&mut image, CR3, cr3);
    let trampoline = dir.join("trampoline.bin");
    fs::write(&trampoline, image).expect("write the trampoline");

    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", "tcg", "-cpu", "qemu64", "-m", &format!("{QEMU_RAM_MIB}M")])
        .args(["-nographic", "-no-reboot", "-serial", "stdio", "-monitor", "none", "-display", "none", "-nic", "none"])
        .arg("-kernel")
        .arg(&trampoline)
        .arg("-initrd")
        .arg(modules.join(","));
    eprintln!("[{name}] running {cmd:?}");
    let log = dir.join("serial.log");
    let mut console = Console::spawn(cmd, &ConsoleOptions { echo: false, log: Some(&log), ..Default::default() })
        .expect("start QEMU");
    let result = tessera::linux::interact(&mut console, Instant::now() + TIMEOUT, 1, false);
    let status = console.wait_exit(Duration::from_secs(30)).expect("wait for QEMU");
    let transcript = console.transcript();
    if let Err(e) = result {
        panic!(
            "[{name}] the kernel loaded from the VID's plan did not reach the shell: {e}\nserial log: {}",
            log.display()
        );
    }
    assert!(transcript.contains("Linux version 6.1"));
    assert!(transcript.contains(MARKER) && transcript.contains(EXPECTED));
    // The kernel saw the loader's command line and e820 table.
    assert!(transcript.contains(&format!("Kernel command line: {CMDLINE}")), "{}", log.display());
    assert!(transcript.contains("BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable"), "{}", log.display());
    assert!(status.is_some(), "QEMU powered off by itself");
    eprintln!("[{name}] shell answered after {:.1} s", console.elapsed().as_secs_f64());
}
