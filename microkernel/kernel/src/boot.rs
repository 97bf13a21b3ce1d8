//! The boot sequence of the boot CPU, from the loader's hand-off to idle.

use crate::arch::{acpi, apic, cpu, entry, gdt, heap, idt, memory, percpu, smp, virt};
use bootinfo::BootInfo;
use core::fmt::Write;
use kerncore::cmdline::{BootOptions, FaultTest};
use platform::{ExitStatus, println};

/// What the CPU offers for running guests, found at boot.
static VIRT: spin::Once<kerncore::virt::VirtSupport> = spin::Once::new();

pub fn virt_support() -> Option<kerncore::virt::VirtSupport> {
    VIRT.get().copied()
}

/// How long boot waits to see the timer tick.
const TICKS_TO_WITNESS: u64 = 10;

/// The boot CPU's first Rust code after `arch::start` (the loader's entry
/// point), with the boot information the loader wrote.
pub fn start(info: &'static BootInfo) -> ! {
    platform::console_init();
    println!("Tessera v{} microkernel", env!("CARGO_PKG_VERSION"));
    if !info.is_valid() {
        println!("boot: the boot information has a bad magic or version; loader and kernel do not match");
        platform::power_off(ExitStatus::Panic);
    }
    main(info)
}

fn main(info: &'static BootInfo) -> ! {
    gdt::init();
    idt::init();
    percpu::init_bsp();
    let cpu_info = cpu::identify();
    if !cpu::harden(&cpu_info) {
        println!("boot: NX is not enabled; refusing to run without W^X");
        platform::power_off(ExitStatus::SelfTestFailed);
    }
    heap::init();
    let (options, unknown) = BootOptions::parse(info.cmdline.as_str());
    println!(
        "boot: Multiboot v{} via \"{}\", command line \"{}\"",
        info.boot_protocol,
        info.bootloader_name.as_str(),
        info.cmdline.as_str()
    );
    for word in unknown {
        println!("boot: ignoring unknown option \"{}\"", word.0);
    }

    println!(
        "cpu: {} \"{}\" family {:#x} model {:#x}; protections: NX{}{}{}",
        cpu_info.vendor,
        cpu_info.brand,
        cpu_info.family,
        cpu_info.model,
        if cpu_info.smep { ", SMEP" } else { "" },
        if cpu_info.smap { ", SMAP" } else { "" },
        if cpu_info.umip { ", UMIP" } else { "" },
    );
    println!("xstate: {}", crate::arch::fpu::init_cpu());
    let mitigations = crate::arch::speculation::init(&cpu_info);
    println!("{mitigations}");
    for (name, why) in kerncore::speculation::missing_protections(cpu_info.smep, cpu_info.smap, cpu_info.umip) {
        println!("cpu: warning: no {name}: {why}");
    }
    let mce = crate::arch::mce::init(&cpu_info);
    if mce.exceptions {
        println!(
            "mce: machine-check exceptions on, {} banks reporting ({} held errors from before this boot); \
             a #MC in a guest stops its partition if the host can go on, else the machine halts with a report",
            mce.banks, mce.stale
        );
    } else {
        println!("mce: warning: the CPU reports no machine-check exception; errors go unreported");
    }
    let virt = virt::detect();
    println!("virt: {virt}");
    VIRT.call_once(|| virt);

    let mem = memory::init(info);
    println!(
        "memory: {} MiB usable in {} regions; {} frames in the pool; kernel image, tables and stack {} KiB",
        mem.usable_bytes >> 20,
        mem.regions,
        mem.frames,
        mem.kernel_bytes >> 10
    );
    for module in info.modules() {
        println!(
            "boot: module \"{}\" at {:#x}, {} KiB",
            module.name.as_str(),
            module.start,
            (module.end - module.start) >> 10
        );
    }
    let audit = memory::audit();
    println!("paging: W^X audit: {} mappings, {} writable+executable", audit.mappings, audit.writable_executable);
    if let Some(first) = audit.first_violation {
        println!("paging: first writable+executable mapping at {first:#x}");
        platform::power_off(ExitStatus::SelfTestFailed);
    }

    let (lapic_phys, cpus) = report_madt(info.rsdp);
    crate::arch::rtc::init();
    match apic::init(lapic_phys, options.timer_one_shot) {
        Ok(timer) => {
            let start = apic::ticks();
            while apic::ticks() - start < TICKS_TO_WITNESS {
                cpu::wait_for_interrupt();
            }
            // Ring 0 runs with interrupts off (`sti; hlt` left them on).
            cpu::disable_interrupts();
            println!(
                "timer: local APIC tick at {} Hz on APIC {} (version {:#x}, bus {} MHz, {} counts per tick, TSC {} MHz); {} ticks seen; tickless, {} mode",
                apic::TICK_HZ,
                timer.apic_id,
                timer.version,
                timer.bus_hz / 1_000_000,
                timer.counts_per_tick,
                timer.tsc_hz / 1_000_000,
                apic::ticks() - start,
                if timer.tsc_deadline { "TSC-deadline" } else { "one-shot" }
            );
        }
        Err(why) => {
            println!("timer: {why}");
            platform::power_off(ExitStatus::SelfTestFailed);
        }
    }
    if let Some(test) = options.lockup_test {
        crate::arch::lockup::start_test(test);
    }
    if !cpus.is_empty() {
        let outcomes = smp::start_aps(&cpus, options.max_cpus, options.silent_ap_test);
        println!("{}", kerncore::smp::banner(&outcomes));
        if let Some(threads) = cpu::threads_per_core().filter(|&n| n > 1 && smp::cpu_count() > 1) {
            println!(
                "smp: warning: {threads} threads per core: SMT siblings may run two trust domains at once \
                 (L1TF, MDS) unless they are core-exclusive partitions ([scheduler] policy = \"core\"; tasks \
                 never are); turn SMT off in firmware for full isolation"
            );
        }
        let cores = kerncore::coresched::describe_cores(&smp::sibling_map());
        if !cores.is_empty() {
            println!("smp: SMT siblings (CPU indices by core): {cores}");
        }
    }

    let (used, total) = heap::usage();
    println!("heap: {} of {} KiB in use", used >> 10, total >> 10);

    match options.fault_test {
        Some(FaultTest::PageFault) => {
            println!("test: reading unmapped kernel address {:#x}", memory::UNMAPPED_PROBE);
            let value = memory::provoke_page_fault();
            println!("test: the read returned {value:#x} instead of faulting");
            platform::power_off(ExitStatus::SelfTestFailed);
        }
        Some(FaultTest::WriteKernelText) => {
            println!("test: writing to kernel text");
            memory::provoke_text_write();
            println!("test: kernel text was writable");
            platform::power_off(ExitStatus::SelfTestFailed);
        }
        None => {}
    }

    if options.nmi_test {
        crate::arch::nmi::start_test();
    }
    println!("boot: done");
    crate::trap::set_exit_when_idle(options.exit_when_idle);
    crate::object::vm::set_bench(options.bench);
    crate::object::fastpath::set_enabled(!options.slow_ipc);
    crate::trace::set(options.trace);
    entry::init();
    let mut kernel = crate::trap::lock();
    if let Err(e) = crate::roottask::start(&mut kernel, info) {
        println!("boot: cannot start the root task: {e}");
        platform::power_off(ExitStatus::Panic);
    }
    let context = crate::trap::start_scheduling(kernel);
    entry::enter_user(context)
}

/// Prints the MADT's CPUs and I/O APICs and sets up the I/O APICs;
/// returns the local APIC address and the CPUs.
fn report_madt(rsdp: u64) -> (u64, heapless::Vec<acpi::Cpu, { acpi::MAX_CPUS }>) {
    const DEFAULT_LAPIC: u64 = 0xfee0_0000;
    if rsdp == 0 {
        println!("acpi: no RSDP found; assuming one CPU with the local APIC at {DEFAULT_LAPIC:#x}");
        return (DEFAULT_LAPIC, heapless::Vec::new());
    }
    match acpi::discover(rsdp) {
        Ok(madt) => {
            let mut ids: heapless::String<256> = heapless::String::new();
            for (i, c) in madt.cpus.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let bsp = if c.is_bsp { " (boot)" } else { "" };
                let off = if c.usable { "" } else { " (disabled)" };
                let _ = write!(ids, "{sep}{}{bsp}{off}", c.apic_id);
            }
            println!("acpi: RSDP at {rsdp:#x} (revision {}), OEM \"{}\"", madt.revision, madt.oem_id);
            println!("cpus: {} in MADT (APIC IDs {ids})", madt.cpus.len());
            for io in &madt.io_apics {
                println!("ioapic: id {} at {:#x}, GSI base {}", io.id, io.address, io.gsi_base);
            }
            if madt.legacy_pics {
                println!("acpi: legacy 8259 PICs present (masked)");
            }
            let lines = crate::arch::ioapic::init(&madt.io_apics, &madt.overrides);
            println!("ioapic: {lines} lines masked; ISA IRQ 0 arrives on GSI {}", crate::arch::ioapic::isa_to_gsi(0));
            (madt.local_apic_address, madt.cpus)
        }
        Err(e) => {
            println!("acpi: cannot read the MADT ({e:?}); assuming one CPU");
            (DEFAULT_LAPIC, heapless::Vec::new())
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    cpu::disable_interrupts();
    platform::console_write_emergency(format_args!("\nKERNEL PANIC: {info}\n"));
    platform::power_off(ExitStatus::Panic)
}
