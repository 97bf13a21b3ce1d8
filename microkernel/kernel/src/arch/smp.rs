//! Starting the application processors (APs).
//!
//! The boot CPU starts each usable CPU of the MADT in turn with INIT,
//! STARTUP, STARTUP (SDM Vol. 3A §8.4.4, "MP initialization"; the same on
//! AMD). The AP starts in real mode in the trampoline page below 1 MiB
//! (`memory::trampoline_page`), a copy of the image below patched for it
//! (`kerncore::smp::patch`): protected mode, then long mode on a
//! temporary top-level table (the kernel half of the boot tables plus the
//! trampoline page identity-mapped), then [`ap_entry`] on its own kernel
//! stack. There it claims its slot, loads its own GDT and TSS and the
//! shared IDT, switches to the kernel's tables (dropping the identity
//! mapping), hardens its control registers as the boot CPU did, enables
//! machine checks, its local APIC (every local interrupt masked) and VMX or
//! SVM, reports, and waits until the boot CPU starts scheduling; from then
//! on it schedules threads and VPs like the boot CPU (`trap::run_ap`),
//! under the one kernel lock.

use super::acpi;
use super::{apic, cpu, gdt, idt, memory, percpu};
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use kerncore::smp::{self as logic, ApLaunch, ApState, CpuOutcome, StartTimeouts, Wait, layout};
use platform::println;

pub use kerncore::smp::MAX_CPUS;

/// The waits of the start sequence (SDM Vol. 3A §8.4.4.1).
const AFTER_INIT_US: u64 = 10_000;
const AFTER_STARTUP_US: u64 = 200;
/// How long an AP has to reach Rust, and to finish its set-up.
const TO_CLAIM_MS: u64 = 2_000;
const TO_ONLINE_MS: u64 = 5_000;

const KERNEL_STACK_PAGES: usize = percpu::KERNEL_STACK_SIZE / 4096;
const IST_STACK_PAGES: usize = gdt::AP_IST_STACK_SIZE / 4096;

// The trampoline image, copied to the trampoline page and patched there;
// never executed where it lies (read-only data). Its data block follows
// `kerncore::smp::layout` byte for byte; the far jumps and LGDT are
// written as bytes so that their operand sizes are exactly these.
global_asm!(
    r#"
    .pushsection .rodata.ap_trampoline, "a"
    .balign 16
    .global ap_trampoline_start
ap_trampoline_start:
    .code16
    .byte 0xeb, {code} - 2                  /* jmp short to the code */
    .balign 4
    .long {magic}                           /* 0x04 */
    .quad 0                                 /* 0x08 entry */
    .quad 0                                 /* 0x10 stack top */
    .quad 0                                 /* 0x18 argument */
    .long 0                                 /* 0x20 CR3 */
    .long 0
    /* 0x28: the GDT: null, 32-bit code (0x08), data (0x10), 64-bit code
       (0x18), each already marked accessed: the CPU would otherwise write
       that bit on loading it, and the page is mapped read-only once
       paging is on. */
    .quad 0
    .quad 0x00cf9b000000ffff
    .quad 0x00cf93000000ffff
    .quad 0x00af9b000000ffff
    .word 31                                /* 0x48 GDTR limit */
    .long 0x28                              /* 0x4a GDTR base (relocated) */
    .word 0
    .long ap_trampoline_protected - ap_trampoline_start   /* 0x50 (relocated) */
    .word 0x08
    .word 0
    .long ap_trampoline_long - ap_trampoline_start        /* 0x58 (relocated) */
    .word 0x18
    .word 0
    /* 0x60: real mode, CS = the page >> 4, IP = 0. */
    cli
    cld
    mov ax, cs
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, 0x1000
    xor ebx, ebx
    mov bx, ax
    shl ebx, 4                              /* EBX = the page's address */
    .byte 0x0f, 0x01, 0x16, 0x48, 0x00      /* lgdt [0x48] */
    mov eax, cr0
    or al, 1                                /* PE */
    mov cr0, eax
    .byte 0x66, 0xff, 0x2e, 0x50, 0x00      /* jmp far dword [0x50] */

    .code32
ap_trampoline_protected:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov eax, cr4
    or eax, 0x20                            /* PAE */
    mov cr4, eax
    mov eax, [ebx + 0x20]
    mov cr3, eax
    mov ecx, 0xc0000080                     /* IA32_EFER */
    rdmsr
    or eax, 0x900                           /* LME, NXE */
    wrmsr
    mov eax, cr0
    or eax, 0x80010001                      /* PG, WP, PE */
    mov cr0, eax
    .byte 0xff, 0x6b, 0x58                  /* jmp far [ebx + 0x58] */

    .code64
ap_trampoline_long:
    mov ebx, ebx                            /* the upper half is undefined */
    mov rsp, [rbx + 0x10]
    mov rdi, [rbx + 0x18]
    mov rax, [rbx + 0x08]
    xor ebp, ebp
    push rbp                                /* no return address */
    jmp rax
    .global ap_trampoline_end
ap_trampoline_end:
    .popsection
"#,
    code = const layout::CODE,
    magic = const logic::MAGIC,
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// The trampoline image's bytes.
fn trampoline_image() -> &'static [u8] {
    let start = &raw const ap_trampoline_start;
    let end = &raw const ap_trampoline_end;
    // SAFETY: the two symbols bound the image above, in read-only data
    // that lives as long as the kernel and is never written.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// What an AP found on itself, written before it reports online.
#[derive(Clone, Copy)]
struct ApReport {
    /// Its APIC ID, read from its own local APIC.
    apic_id: u32,
    /// EFER.NXE was on (the trampoline sets it).
    nx: bool,
    /// MCA banks reporting, or `None` without machine-check exceptions.
    mce_banks: Option<u32>,
    /// The guest backend it enabled, or why not; `None` if the CPU has none.
    virt: Option<Result<super::vm::Backend, &'static str>>,
}

/// One AP's hand-shake with the boot CPU.
struct Slot {
    state: AtomicU8,
    stack_top: AtomicU64,
    ist_tops: [AtomicU64; gdt::IST_SLOTS],
    report: spin::Mutex<Option<ApReport>>,
    /// Online and taking part in scheduling.
    schedules: AtomicBool,
}

static SLOTS: [Slot; MAX_CPUS] = [const {
    Slot {
        state: AtomicU8::new(ApState::Off.code()),
        stack_top: AtomicU64::new(0),
        ist_tops: [const { AtomicU64::new(0) }; gdt::IST_SLOTS],
        report: spin::Mutex::new(None),
        schedules: AtomicBool::new(false),
    }
}; MAX_CPUS];

fn state(slot: &Slot) -> ApState {
    ApState::from_code(slot.state.load(Ordering::Acquire))
}

/// The 64-bit entry of an AP, from the trampoline, on its own kernel
/// stack, with the CPU index the boot CPU gave it.
extern "sysv64" fn ap_entry(index: u64) -> ! {
    let index = index as usize;
    let Some(slot) = SLOTS.get(index).filter(|_| index != 0) else { cpu::park() };
    let claimed = slot.state.compare_exchange(
        ApState::Starting.code(),
        ApState::Booting.code(),
        Ordering::Acquire,
        Ordering::Relaxed,
    );
    if claimed.is_err() {
        // The boot CPU gave up on this AP: touch nothing.
        cpu::park();
    }
    let ist_tops = core::array::from_fn(|i| slot.ist_tops[i].load(Ordering::Relaxed));
    gdt::init_ap(index, ist_tops);
    idt::load();
    memory::switch_to_kernel_root();
    percpu::init_ap(index, slot.stack_top.load(Ordering::Relaxed));

    let info = cpu::identify();
    let nx = cpu::harden(&info);
    super::fpu::init_cpu();
    let mce = super::mce::init(&info);
    let apic_id = apic::init_ap();
    percpu::set_apic_id(apic_id);
    let virt = super::vm::backend().map(|_| super::vm::enable());
    *slot.report.lock() = Some(ApReport { apic_id, nx, mce_banks: mce.exceptions.then_some(mce.banks), virt });
    // A CPU that cannot run guests where the others can would fault on the
    // first VP sent to it: it stays parked, and is not counted.
    let schedules = !matches!(virt, Some(Err(_)));
    slot.schedules.store(schedules, Ordering::Release);
    slot.state.store(ApState::Online.code(), Ordering::Release);
    if !schedules {
        cpu::park();
    }
    crate::trap::run_ap(apic_id)
}

/// An AP that came online and schedules (it can run guests if the boot
/// CPU can).
fn schedules(slot: &Slot) -> bool {
    state(slot) == ApState::Online && slot.schedules.load(Ordering::Acquire)
}

/// CPUs the kernel schedules on: the boot CPU and every AP that does.
pub fn cpu_count() -> u32 {
    1 + SLOTS.iter().skip(1).filter(|s| schedules(s)).count() as u32
}

/// Whether the kernel schedules on CPU `index`.
pub fn is_online(index: usize) -> bool {
    index == 0 || SLOTS.get(index).is_some_and(schedules)
}

/// Each CPU's SMT siblings, by CPU index (bit `c`: CPU `c` shares its
/// core), among the CPUs the kernel schedules on: from their APIC IDs and
/// the SMT shift of CPUID leaf 0xB, as `ipi::siblings` finds them once the
/// CPUs register; all 0 without SMT. Valid once [`start_aps`] returned, on
/// the boot CPU (the root task's startup page carries it).
pub fn sibling_map() -> [u32; MAX_CPUS] {
    let Some(shift) = cpu::smt_shift() else { return [0; MAX_CPUS] };
    let ids: [u32; MAX_CPUS] = core::array::from_fn(|i| match i {
        0 => apic::id(),
        _ => SLOTS[i].report.lock().as_ref().map_or(u32::MAX, |r| r.apic_id),
    });
    let online = (0..MAX_CPUS).filter(|&i| is_online(i)).fold(0u32, |m, i| m | 1 << i);
    let of = |i: usize| kerncore::coresched::siblings(&ids, online, i, shift);
    core::array::from_fn(|i| if online & 1 << i != 0 { of(i) } else { 0 })
}

/// Takes `pages` frames for good and returns the top of their direct-map
/// range (a stack).
fn stack(pages: usize) -> Option<u64> {
    let frames = memory::alloc_frames(pages)?;
    let top = memory::phys_to_virt(frames.start(), frames.len_bytes())? + frames.len_bytes();
    frames.leak();
    Some(top)
}

/// How starting one AP ended.
enum Started {
    Online,
    /// Reported; the next AP may start.
    Failed,
    /// Claimed its slot but never finished: start no more.
    Stuck,
}

/// Starts the AP with `apic_id` as CPU `index` and waits for it; `silent`
/// (a test) sends it INIT but no STARTUP, so it never answers.
fn start_one(index: usize, apic_id: u32, page: u64, root: u64, silent: bool) -> Started {
    let slot = &SLOTS[index];
    let (Some(stack_top), Some(ist)) = (
        stack(KERNEL_STACK_PAGES),
        (0..gdt::IST_SLOTS).map(|_| stack(IST_STACK_PAGES)).collect::<Option<heapless::Vec<u64, 3>>>(),
    ) else {
        println!("smp: cpu {index} (APIC ID {apic_id}): out of memory for its stacks; left off");
        return Started::Failed;
    };
    slot.stack_top.store(stack_top, Ordering::Relaxed);
    for (t, top) in slot.ist_tops.iter().zip(ist) {
        t.store(top, Ordering::Relaxed);
    }
    let launch =
        ApLaunch { base: page, cr3: root, stack_top, entry: ap_entry as *const () as u64, argument: index as u64 };
    let image = trampoline_image();
    let patched = memory::with_frame_mut(page, |p| {
        let target = &mut p[..image.len()];
        target.copy_from_slice(image);
        logic::patch(target, &launch)
    });
    if let Err(e) = patched {
        println!("smp: cpu {index} (APIC ID {apic_id}): the trampoline cannot start it ({e:?}); left off");
        return Started::Failed;
    }
    let Some(vector) = logic::sipi_vector(page) else { return Started::Failed };
    slot.state.store(ApState::Starting.code(), Ordering::Release);

    let sent = apic::send_init(apic_id);
    apic::delay_us(AFTER_INIT_US);
    let sent = sent && (silent || apic::send_startup(apic_id, vector));
    apic::delay_us(AFTER_STARTUP_US);
    let sent = sent && (silent || state(slot) != ApState::Starting || apic::send_startup(apic_id, vector));
    if !sent {
        println!("smp: cpu {index} (APIC ID {apic_id}): the local APIC did not send INIT or STARTUP");
    }
    apic::delay_us(AFTER_STARTUP_US);

    let hz = apic::tsc_hz();
    let timeouts = StartTimeouts { to_claim: hz / 1000 * TO_CLAIM_MS, to_online: hz / 1000 * TO_ONLINE_MS };
    let t0 = cpu::timestamp();
    loop {
        match logic::wait_step(state(slot), cpu::timestamp().wrapping_sub(t0), &timeouts) {
            Wait::Keep => core::hint::spin_loop(),
            Wait::Online => return Started::Online,
            Wait::Abandon => {
                let abandoned = slot.state.compare_exchange(
                    ApState::Starting.code(),
                    ApState::Abandoned.code(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                );
                if abandoned.is_ok() || state(slot) == ApState::Abandoned {
                    // Wherever it is in the trampoline, INIT stops it.
                    apic::send_init(apic_id);
                    println!("smp: cpu {index} (APIC ID {apic_id}) did not answer within {TO_CLAIM_MS} ms; skipped");
                    return Started::Failed;
                }
            }
            Wait::Stuck => {
                println!(
                    "smp: cpu {index} (APIC ID {apic_id}) started but did not finish within {TO_ONLINE_MS} ms; \
                     starting no more CPUs"
                );
                return Started::Stuck;
            }
        }
    }
}

fn describe(index: usize, report: &ApReport) {
    use super::vm::Backend;
    let virt = match report.virt {
        None => "no VMX or SVM",
        Some(Ok(Backend::Svm)) => "SVM on",
        Some(Ok(Backend::Vmx)) => "VMX on",
        Some(Err(why)) => why,
    };
    let nx = if report.nx { "" } else { ", NX OFF" };
    let parked = if matches!(report.virt, Some(Err(_))) { "; parked: it cannot run guests" } else { "" };
    match report.mce_banks {
        Some(banks) => println!(
            "smp: cpu {index} online: APIC ID {} (read by the CPU itself), {virt}, machine checks on ({banks} banks){nx}{parked}",
            report.apic_id
        ),
        None => {
            println!("smp: cpu {index} online: APIC ID {} (read by the CPU itself), {virt}{nx}{parked}", report.apic_id)
        }
    }
}

/// Starts every usable CPU of the MADT (`cpus`) but the boot CPU, at most
/// `max_cpus` in all, one after the other; returns how each CPU ended up.
/// `silent_first` (the test `test=smp-silent-ap`) never sends the first AP
/// a STARTUP.
pub fn start_aps(
    cpus: &[acpi::Cpu],
    max_cpus: Option<u32>,
    silent_first: bool,
) -> heapless::Vec<(u32, CpuOutcome), { acpi::MAX_CPUS }> {
    let boot_id = apic::id();
    percpu::set_apic_id(boot_id);
    let limit = max_cpus.map_or(MAX_CPUS, |n| (n as usize).min(MAX_CPUS));
    let mut outcomes = heapless::Vec::new();
    let mut trampoline: Option<Option<(u64, u64)>> = None;
    let (mut next_index, mut online, mut stuck) = (1, 1, false);
    for c in cpus {
        let outcome = if c.apic_id == boot_id {
            CpuOutcome::Boot
        } else if !c.usable {
            CpuOutcome::Disabled
        } else if online >= limit {
            if max_cpus.is_some_and(|n| n as usize <= MAX_CPUS) { CpuOutcome::KeptOff } else { CpuOutcome::OverLimit }
        } else if next_index >= MAX_CPUS {
            CpuOutcome::OverLimit
        } else if stuck {
            CpuOutcome::NoAnswer
        } else {
            let t = *trampoline.get_or_insert_with(|| {
                let page = memory::trampoline_page()?;
                match memory::trampoline_root(page) {
                    Ok(root) => Some((page, root)),
                    Err(e) => {
                        println!("smp: cannot map the trampoline ({e:?}); the APs stay off");
                        None
                    }
                }
            });
            match t {
                None => CpuOutcome::NoAnswer,
                Some((page, root)) => {
                    let index = next_index;
                    next_index += 1;
                    match start_one(index, c.apic_id, page, root, silent_first && index == 1) {
                        Started::Online => {
                            if let Some(report) = *SLOTS[index].report.lock() {
                                describe(index, &report);
                            }
                            online += 1;
                            CpuOutcome::Online
                        }
                        Started::Failed => CpuOutcome::NoAnswer,
                        Started::Stuck => {
                            stuck = true;
                            CpuOutcome::NoAnswer
                        }
                    }
                }
            }
        };
        let _ = outcomes.push((c.apic_id, outcome));
    }
    match trampoline {
        Some(Some((_, root))) if !stuck => memory::free_trampoline_root(root),
        Some(None) if memory::trampoline_page().is_none() => {
            println!("smp: no free page below 1 MiB for the trampoline; the APs stay off")
        }
        _ => {}
    }
    outcomes
}
