//! `loader_main`: from Multiboot information to a running microkernel.

use crate::memory::{IdentityMemory, enter_kernel, loader_image, write_boot_info};
use bootinfo::{BootInfo, DIRECT_MAP_BASE, FixedStr, MemoryKind, MemoryRegion, Module};
use core::fmt;
use kerncore::memmap::{self, LOW_MEMORY_END};
use kerncore::paging::{MapFlags, Mapper};
use platform::{ExitStatus, println};
use tessera_loader::image::{self, Arena, LoadError};
use tessera_loader::multiboot::{self, BootError, BootSources, RawModule};
use tessera_loader::{PhysMemory, rsdp};
use x86::msr::{IA32_EFER, rdmsr};
use x86defs::EFER_NXE;

const IDENTITY_LIMIT: u64 = 4 << 30;
/// The arena needs room for the kernel image, its stack and page tables.
const MIN_ARENA: u64 = 8 << 20;

enum Failure {
    Boot(BootError),
    Load(LoadError),
    NoNx,
    NoKernelModule,
    MemoryMap,
    NoArena,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Boot(e) => write!(f, "{e}"),
            Failure::Load(e) => write!(f, "{e}"),
            Failure::NoNx => write!(f, "the CPU has no NX bit; Tessera maps memory W^X and needs it"),
            Failure::NoKernelModule => write!(f, "no boot module holds the microkernel (pass it as the first module)"),
            Failure::MemoryMap => write!(f, "the memory map has too many regions"),
            Failure::NoArena => write!(f, "no usable region of {} MiB below 4 GiB for the kernel", MIN_ARENA >> 20),
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn loader_main(magic: u32, info: u32) -> ! {
    platform::console_init();
    println!("tessera-loader v{}", env!("CARGO_PKG_VERSION"));
    match boot(magic, u64::from(info)) {
        Ok(never) => match never {},
        Err(failure) => {
            println!("tessera-loader: error: {failure}");
            platform::power_off(ExitStatus::Panic)
        }
    }
}

/// The module that holds the kernel: one named "microkernel", else the first.
fn kernel_module<'m, 'a>(modules: &'m [RawModule<'a>]) -> Option<&'m RawModule<'a>> {
    let named = |m: &&RawModule<'_>| {
        m.name.split_ascii_whitespace().any(|w| w == "microkernel" || w.ends_with("microkernel.elf"))
    };
    modules.iter().find(named).or(modules.first())
}

/// A module's short name: the last word of its string, without directories.
fn module_name<'a>(m: &RawModule<'a>) -> &'a str {
    let last = m.name.split_ascii_whitespace().last().unwrap_or("");
    last.rsplit('/').next().unwrap_or(last)
}

fn boot(magic: u32, info: u64) -> Result<core::convert::Infallible, Failure> {
    // SAFETY: reading EFER has no side effects.
    if unsafe { rdmsr(IA32_EFER) } & EFER_NXE == 0 {
        return Err(Failure::NoNx);
    }
    let mem = IdentityMemory;
    let sources = multiboot::parse(&mem, magic, info).map_err(Failure::Boot)?;
    println!(
        "tessera-loader: Multiboot v{} from \"{}\", {} memory regions, {} modules",
        sources.protocol.number(),
        sources.bootloader_name,
        sources.memory.len(),
        sources.modules.len()
    );
    let kernel = *kernel_module(&sources.modules).ok_or(Failure::NoKernelModule)?;

    let mut boot_info = BootInfo::empty();
    boot_info.boot_protocol = sources.protocol.number();
    boot_info.cmdline = FixedStr::new(multiboot::kernel_arguments(sources.cmdline));
    boot_info.bootloader_name = FixedStr::new(sources.bootloader_name);
    boot_info.rsdp = sources.rsdp.or_else(|| rsdp::find_in_bios_areas(&mem)).unwrap_or(0);
    for m in sources.modules.iter().filter(|m| m.start != kernel.start) {
        boot_info.push_module(Module { start: m.start, end: m.end, name: FixedStr::new(module_name(m)) });
    }

    let carved = carve(&sources, &kernel)?;
    let arena_region = choose_arena(&carved).ok_or(Failure::NoArena)?;
    let mut arena = Arena::new(IdentityMemory, arena_region.0, arena_region.1);

    let kernel_elf = mem.bytes(kernel.start, kernel.end - kernel.start).ok_or(Failure::NoKernelModule)?;
    let loaded = image::load_kernel(&mut arena, kernel_elf).map_err(Failure::Load)?;
    let info_phys =
        arena.alloc(core::mem::size_of::<BootInfo>() as u64).ok_or(Failure::Load(LoadError::OutOfMemory))?;
    let direct_end = image::map_direct(&mut arena, loaded.root, &carved).map_err(Failure::Load)?;
    identity_map_loader(&mut arena, loaded.root)?;

    // Everything the arena handed out now belongs to the kernel.
    let (used_start, used_end) = arena.used();
    let mut final_inputs = carved.clone();
    let _ = final_inputs.push(MemoryRegion::new(used_start, used_end, MemoryKind::Kernel));
    let final_map =
        memmap::normalize::<{ bootinfo::MAX_MEMORY_REGIONS }>(&final_inputs).map_err(|_| Failure::MemoryMap)?;
    for region in &final_map {
        boot_info.push_region(*region);
    }
    boot_info.kernel_page_table = loaded.root;
    boot_info.kernel_image = MemoryRegion::new(used_start, used_end, MemoryKind::Kernel);
    boot_info.direct_map_end = direct_end;
    // SAFETY: the arena just handed out `info_phys`, page-aligned and large
    // enough for a BootInfo, inside the identity map.
    unsafe { write_boot_info(info_phys, boot_info) };

    println!(
        "tessera-loader: kernel entry {:#x}, {} segments, {} KiB used at {:#x}; direct map up to {:#x}",
        loaded.entry,
        loaded.segments,
        (used_end - used_start) >> 10,
        used_start,
        direct_end
    );
    // SAFETY: `loaded.root` maps the loader's text identically (above), the
    // kernel's stack and entry (load_kernel), and the boot information
    // through the direct map, which covers the arena.
    unsafe { enter_kernel(loaded.root, loaded.stack_top, loaded.entry, DIRECT_MAP_BASE + info_phys) }
}

/// Firmware map plus the ranges that must survive: the loader, the boot
/// information, the kernel ELF and the other modules.
fn carve(sources: &BootSources<'_>, kernel: &RawModule<'_>) -> Result<heapless::Vec<MemoryRegion, 128>, Failure> {
    let ((text_start, _), (_, data_end)) = loader_image();
    let mut inputs: heapless::Vec<MemoryRegion, 192> = heapless::Vec::new();
    let too_many = |_| Failure::MemoryMap;
    for region in &sources.memory {
        inputs.push(*region).map_err(too_many)?;
    }
    inputs.push(MemoryRegion::new(text_start, data_end, MemoryKind::Loader)).map_err(too_many)?;
    inputs.push(MemoryRegion::new(sources.info.0, sources.info.1, MemoryKind::Loader)).map_err(too_many)?;
    inputs.push(MemoryRegion::new(kernel.start, kernel.end, MemoryKind::Loader)).map_err(too_many)?;
    for m in sources.modules.iter().filter(|m| m.start != kernel.start) {
        inputs.push(MemoryRegion::new(m.start, m.end, MemoryKind::Module)).map_err(too_many)?;
    }
    memmap::normalize(&inputs).map_err(|_| Failure::MemoryMap)
}

/// The largest usable range above 1 MiB and below 4 GiB.
fn choose_arena(map: &[MemoryRegion]) -> Option<(u64, u64)> {
    map.iter()
        .filter(|r| r.kind == MemoryKind::Usable)
        .map(|r| (r.start.max(LOW_MEMORY_END), r.end.min(IDENTITY_LIMIT)))
        .filter(|(start, end)| end > start && end - start >= MIN_ARENA)
        .max_by_key(|(start, end)| end - start)
}

/// Maps the loader's own image at its physical address so the instructions
/// after the CR3 switch still run. The kernel removes this on entry.
fn identity_map_loader(arena: &mut Arena<IdentityMemory>, root: u64) -> Result<(), Failure> {
    let ((text_start, text_end), (data_start, data_end)) = loader_image();
    let mut mapper = Mapper::new(arena, root);
    let map = |m: &mut Mapper<'_, _>, start: u64, end: u64, flags| {
        m.map(start, start, end - start, MapFlags { global: false, ..flags }).map_err(|e| Failure::Load(e.into()))
    };
    map(&mut mapper, text_start, text_end, MapFlags::KERNEL_TEXT)?;
    map(&mut mapper, data_start, data_end, MapFlags::KERNEL_DATA)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    platform::console_write_emergency(format_args!("tessera-loader: panic: {info}\n"));
    platform::power_off(ExitStatus::Panic)
}
