//! Each CPU's GDT and TSS, with separate interrupt stacks (IST) for double
//! faults, NMIs and machine checks, so those are reported even when the
//! kernel stack is gone. The boot CPU's IST stacks are statics; an AP's come
//! from the frame pool (`arch::smp`).
//!
//! The TSS has no I/O permission bitmap: its base lies past the TSS limit,
//! so every `in`/`out` in ring 3 (IOPL 0) raises #GP. Tasks reach ports only
//! through an `IO_PORTS` capability, by asking the kernel (`arch::io`).

use super::smp::MAX_CPUS;
use core::ptr::addr_of;
use x86::Ring;
use x86::bits64::segmentation::Descriptor64;
use x86::bits64::task::TaskStateSegment;
use x86::dtables::{DescriptorTablePointer, lgdt};
use x86::segmentation::{
    BuildDescriptor, CodeSegmentType, DataSegmentType, Descriptor, DescriptorBuilder, GateDescriptorBuilder,
    SegmentDescriptorBuilder, SegmentSelector, load_ds, load_es, load_fs, load_gs, load_ss,
};
use x86::task::load_tr;

pub const KERNEL_CODE: SegmentSelector = SegmentSelector::new(1, Ring::Ring0);
pub const KERNEL_DATA: SegmentSelector = SegmentSelector::new(2, Ring::Ring0);
const TSS_INDEX: u16 = 5;

/// IST slots (1-based, as the IDT encodes them).
pub const IST_DOUBLE_FAULT: u8 = 1;
pub const IST_NMI: u8 = 2;
pub const IST_MACHINE_CHECK: u8 = 3;

const IST_STACK_SIZE: usize = 16 * 1024;

/// The TSS's size; also its I/O-map base, which then lies past the limit
/// (size - 1): there is no bitmap (SDM Vol. 1 §19.5.2, AMD APM Vol. 2
/// §13.3.2). With base 0 the CPU read a bitmap from the TSS's own bytes
/// and let ring 3 use every port whose bit happened to be 0.
const TSS_SIZE: u16 = core::mem::size_of::<TaskStateSegment>() as u16;
const _: () = assert!(TSS_SIZE == 0x68);

#[repr(C, align(16))]
struct Stack([u8; IST_STACK_SIZE]);

/// The boot CPU's IST stacks.
static mut IST_STACKS: [Stack; 3] = [const { Stack([0; IST_STACK_SIZE]) }; 3];
/// Each CPU's TSS and GDT, by its index (`percpu::index`).
static mut TSS: [TaskStateSegment; MAX_CPUS] = [const { TaskStateSegment::new() }; MAX_CPUS];
/// null, kernel code, kernel data, user data, user code, TSS (two slots).
static mut GDT: [[u64; 7]; MAX_CPUS] = [[0; 7]; MAX_CPUS];

/// Size of each IST stack an AP needs (`IST_SLOTS` of them).
pub const AP_IST_STACK_SIZE: usize = IST_STACK_SIZE;
pub const IST_SLOTS: usize = 3;

fn descriptor(d: Descriptor) -> u64 {
    d.as_u64()
}

/// Builds and loads the boot CPU's GDT and TSS (index 0), and reloads
/// every segment register.
pub fn init() {
    let base = addr_of!(IST_STACKS) as u64;
    load(0, core::array::from_fn(|slot| base + ((slot + 1) * IST_STACK_SIZE) as u64));
}

/// Builds and loads an AP's GDT and TSS, with the tops of its IST stacks
/// (double fault, NMI, machine check).
pub fn init_ap(index: usize, ist_tops: [u64; IST_SLOTS]) {
    assert!(index != 0 && index < MAX_CPUS, "bad CPU index {index}");
    load(index, ist_tops);
}

/// Builds CPU `index`'s GDT and TSS and loads them on this CPU.
fn load(index: usize, ist_tops: [u64; IST_SLOTS]) {
    let kernel_code: Descriptor = DescriptorBuilder::code_descriptor(0, 0xfffff, CodeSegmentType::ExecuteRead)
        .present()
        .dpl(Ring::Ring0)
        .l()
        .limit_granularity_4kb()
        .finish();
    let kernel_data: Descriptor = DescriptorBuilder::data_descriptor(0, 0xfffff, DataSegmentType::ReadWrite)
        .present()
        .dpl(Ring::Ring0)
        .db()
        .limit_granularity_4kb()
        .finish();
    let user_data: Descriptor = DescriptorBuilder::data_descriptor(0, 0xfffff, DataSegmentType::ReadWrite)
        .present()
        .dpl(Ring::Ring3)
        .db()
        .limit_granularity_4kb()
        .finish();
    let user_code: Descriptor = DescriptorBuilder::code_descriptor(0, 0xfffff, CodeSegmentType::ExecuteRead)
        .present()
        .dpl(Ring::Ring3)
        .l()
        .limit_granularity_4kb()
        .finish();

    // SAFETY: each CPU builds only its own slot (`index`: 0 for the boot
    // CPU, a distinct one the boot CPU gave each AP), once, with
    // interrupts disabled: no one else reads or writes these entries. The
    // descriptors built here describe flat segments and a TSS that lives
    // for the kernel's lifetime.
    unsafe {
        let tss = &mut (*core::ptr::addr_of_mut!(TSS))[index];
        tss.iomap_base = TSS_SIZE;
        for (slot, ist) in [IST_DOUBLE_FAULT, IST_NMI, IST_MACHINE_CHECK].into_iter().enumerate() {
            tss.set_ist(usize::from(ist - 1), ist_tops[slot]);
        }
        let tss_desc: Descriptor64 = <DescriptorBuilder as GateDescriptorBuilder<u64>>::tss_descriptor(
            core::ptr::from_ref(tss) as u64,
            u64::from(TSS_SIZE) - 1,
            true,
        )
        .present()
        .dpl(Ring::Ring0)
        .finish();
        let tss_words: [u64; 2] = core::mem::transmute(tss_desc);

        let gdt = &mut (*core::ptr::addr_of_mut!(GDT))[index];
        *gdt = [
            0,
            descriptor(kernel_code),
            descriptor(kernel_data),
            descriptor(user_data),
            descriptor(user_code),
            tss_words[0],
            tss_words[1],
        ];
        lgdt(&DescriptorTablePointer::new(&*gdt));
        reload_cs(KERNEL_CODE);
        load_ss(KERNEL_DATA);
        load_ds(KERNEL_DATA);
        load_es(KERNEL_DATA);
        load_fs(SegmentSelector::from_raw(0));
        load_gs(SegmentSelector::from_raw(0));
        load_tr(SegmentSelector::new(TSS_INDEX, Ring::Ring0));
    }
}

/// Sets the stack CPU `index` (the caller's own) switches to on a trap
/// from ring 3.
pub fn set_rsp0(index: usize, top: u64) {
    // SAFETY: only CPU `index` itself writes its TSS, and the CPU reads it
    // only on privilege changes, which cannot happen while ring 0 runs
    // with interrupts off (as callers do).
    unsafe { (*core::ptr::addr_of_mut!(TSS))[index].set_rsp(Ring::Ring0, top) };
}

/// User selectors (RPL 3) for building ring-3 frames.
pub const USER_DATA: SegmentSelector = SegmentSelector::new(3, Ring::Ring3);
pub const USER_CODE: SegmentSelector = SegmentSelector::new(4, Ring::Ring3);

/// Reloads CS with a far return.
///
/// # Safety
/// `selector` must name a present 64-bit code segment in the loaded GDT.
unsafe fn reload_cs(selector: SegmentSelector) {
    // SAFETY: guaranteed by the caller; the far return lands on the next
    // instruction with the same stack.
    unsafe {
        core::arch::asm!(
            "push {sel}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            sel = in(reg) u64::from(selector.bits()),
            tmp = lateout(reg) _,
        );
    }
}
