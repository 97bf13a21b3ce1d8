//! The VMCB (APM Vol. 2 Appendix B): a control area at 0x000-0x3FF and the
//! state-save area from 0x400. Offsets in comments are from the start of
//! the VMCB; the APM gives save-area offsets from 0x400.

use bitfield_struct::bitfield;
use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Reads (bits 15:0) and writes (bits 31:16) of CR0-CR15 or DR0-DR15.
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct RegisterIntercepts {
    pub reads: u16,
    pub writes: u16,
}

/// Intercepts at 0x00C.
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct GeneralIntercepts1 {
    pub intr: bool,
    pub nmi: bool,
    pub smi: bool,
    pub init: bool,
    pub vintr: bool,
    /// Writes to CR0 that change bits other than TS or MP.
    pub cr0_selective_write: bool,
    pub idtr_read: bool,
    pub gdtr_read: bool,
    pub ldtr_read: bool,
    pub tr_read: bool,
    pub idtr_write: bool,
    pub gdtr_write: bool,
    pub ldtr_write: bool,
    pub tr_write: bool,
    pub rdtsc: bool,
    pub rdpmc: bool,
    pub pushf: bool,
    pub popf: bool,
    pub cpuid: bool,
    pub rsm: bool,
    pub iret: bool,
    pub intn: bool,
    pub invd: bool,
    pub pause: bool,
    pub hlt: bool,
    pub invlpg: bool,
    pub invlpga: bool,
    /// Port accesses, through the I/O permission map.
    pub ioio_prot: bool,
    /// MSR accesses, through the MSR permission map.
    pub msr_prot: bool,
    pub task_switch: bool,
    pub ferr_freeze: bool,
    /// Shutdown (a triple fault, for instance).
    pub shutdown: bool,
}

/// Intercepts at 0x010.
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct GeneralIntercepts2 {
    /// Must be set, or VMRUN fails with VMEXIT_INVALID.
    pub vmrun: bool,
    pub vmmcall: bool,
    pub vmload: bool,
    pub vmsave: bool,
    pub stgi: bool,
    pub clgi: bool,
    pub skinit: bool,
    pub rdtscp: bool,
    pub icebp: bool,
    pub wbinvd: bool,
    pub monitor: bool,
    pub mwait: bool,
    pub mwait_if_armed: bool,
    pub xsetbv: bool,
    pub rdpru: bool,
    /// Trap (after the instruction) on writes of EFER.
    pub efer_write_trap: bool,
    /// Trap (after the instruction) on writes of CR0-CR15.
    pub cr_write_traps: u16,
}

/// Intercepts at 0x014.
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct GeneralIntercepts3 {
    pub invlpgb: bool,
    pub invlpgb_illegal: bool,
    pub invpcid: bool,
    pub mcommit: bool,
    pub tlbsync: bool,
    #[bits(27)]
    pub _reserved0: u32,
}

abi::open_enum! {
    /// TLB_CONTROL at 0x05C: what VMRUN flushes.
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    pub struct TlbControl(u8) {
        DO_NOTHING = 0,
        /// Every ASID's entries.
        FLUSH_ALL = 1,
        /// This guest's ASID (needs flush-by-ASID).
        FLUSH_GUEST = 3,
        /// This guest's non-global entries (needs flush-by-ASID).
        FLUSH_GUEST_NON_GLOBAL = 7,
    }
}

/// Virtual interrupt control at 0x060 (V_TPR, V_IRQ, V_INTR_* and enables).
#[bitfield(u64)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VirtualInterruptControl {
    #[bits(4)]
    pub v_tpr: u8,
    #[bits(4)]
    pub _reserved0: u8,
    /// A virtual interrupt is pending.
    pub v_irq: bool,
    /// The virtual GIF, with vGIF enabled.
    pub v_gif: bool,
    pub _reserved1: bool,
    pub v_nmi_pending: bool,
    pub v_nmi_blocked: bool,
    #[bits(3)]
    pub _reserved2: u8,
    #[bits(4)]
    pub v_intr_priority: u8,
    pub v_ignore_tpr: bool,
    #[bits(3)]
    pub _reserved3: u8,
    /// Virtualize EFLAGS.IF and the TPR: physical interrupts stay the host's.
    pub v_intr_masking: bool,
    pub v_gif_enable: bool,
    pub v_nmi_enable: bool,
    #[bits(3)]
    pub _reserved4: u8,
    pub x2avic_enable: bool,
    pub avic_enable: bool,
    pub v_intr_vector: u8,
    #[bits(24)]
    pub _reserved5: u32,
}

/// Interrupt state at 0x068.
#[bitfield(u64)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct InterruptState {
    /// The guest is in an interrupt shadow (after STI or MOV SS).
    pub interrupt_shadow: bool,
    /// The guest's EFLAGS.IF, saved on exit.
    pub guest_interrupt_mask: bool,
    #[bits(62)]
    pub _reserved0: u64,
}

/// Nested-paging and SEV enables at 0x090.
#[bitfield(u64)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct NestedControl {
    pub np_enable: bool,
    pub sev_enable: bool,
    pub sev_es_enable: bool,
    pub guest_mode_execute_trap: bool,
    pub sss_check_enable: bool,
    pub virtual_transparent_encryption: bool,
    pub read_only_guest_page_tables: bool,
    pub invlpgb_tlbsync_enable: bool,
    #[bits(56)]
    pub _reserved0: u64,
}

/// LBR and VMSAVE/VMLOAD virtualization at 0x0B8.
#[bitfield(u64)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VirtualizationExtensions {
    pub lbr_virtualization: bool,
    pub vmsave_vmload_virtualization: bool,
    #[bits(62)]
    pub _reserved0: u64,
}

/// VMCB clean bits at 0x0C0: a set bit lets the CPU keep its cached copy
/// of that group. Zero is always safe (and all QEMU TCG supports).
#[bitfield(u32)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VmcbCleanBits {
    pub intercepts: bool,
    pub permission_maps: bool,
    pub asid: bool,
    pub virtual_interrupts: bool,
    pub nested_paging: bool,
    pub control_registers: bool,
    pub debug_registers: bool,
    pub descriptor_tables: bool,
    pub segments: bool,
    pub cr2: bool,
    pub lbr: bool,
    pub avic: bool,
    #[bits(20)]
    pub _reserved0: u32,
}

abi::open_enum! {
    /// Type of an event in EVENTINJ or EXITINTINFO.
    pub struct EventType(u8) {
        EXTERNAL_INTERRUPT = 0,
        NMI = 2,
        EXCEPTION = 3,
        SOFTWARE_INTERRUPT = 4,
    }
}

impl EventType {
    pub const fn from_bits(bits: u8) -> Self {
        EventType(bits)
    }

    pub const fn into_bits(self) -> u8 {
        self.0
    }
}

/// EVENTINJ (0x0A8, an event to inject) and EXITINTINFO (0x088, an event
/// whose delivery the exit interrupted) share this format (APM §15.20).
#[bitfield(u64)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct EventInjection {
    pub vector: u8,
    #[bits(3)]
    pub event_type: EventType,
    pub error_code_valid: bool,
    #[bits(19)]
    pub _reserved0: u32,
    pub valid: bool,
    pub error_code: u32,
}

/// The control area (APM Table B-1).
#[repr(C)]
#[derive(Clone, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VmcbControlArea {
    /// 0x000
    pub cr_intercepts: RegisterIntercepts,
    /// 0x004
    pub dr_intercepts: RegisterIntercepts,
    /// 0x008: one bit per exception vector.
    pub exception_intercepts: u32,
    /// 0x00C
    pub intercepts1: GeneralIntercepts1,
    /// 0x010
    pub intercepts2: GeneralIntercepts2,
    /// 0x014
    pub intercepts3: GeneralIntercepts3,
    pub _reserved_018: [u8; 0x24],
    /// 0x03C
    pub pause_filter_threshold: u16,
    /// 0x03E
    pub pause_filter_count: u16,
    /// 0x040: physical address of the 12 KiB I/O permission map.
    pub iopm_base_pa: u64,
    /// 0x048: physical address of the 8 KiB MSR permission map.
    pub msrpm_base_pa: u64,
    /// 0x050: added to the guest's TSC reads.
    pub tsc_offset: u64,
    /// 0x058: nonzero; ASID 0 is the host's.
    pub guest_asid: u32,
    /// 0x05C
    pub tlb_control: TlbControl,
    pub _reserved_05d: [u8; 3],
    /// 0x060
    pub virtual_interrupt: VirtualInterruptControl,
    /// 0x068
    pub interrupt_state: InterruptState,
    /// 0x070
    pub exit_code: super::SvmExitCode,
    /// 0x078
    pub exit_info1: u64,
    /// 0x080
    pub exit_info2: u64,
    /// 0x088
    pub exit_int_info: EventInjection,
    /// 0x090
    pub nested_control: NestedControl,
    /// 0x098
    pub avic_apic_bar: u64,
    /// 0x0A0
    pub ghcb_gpa: u64,
    /// 0x0A8
    pub event_injection: EventInjection,
    /// 0x0B0: the nested page table root (see `NptMapper::ncr3`).
    pub n_cr3: u64,
    /// 0x0B8
    pub virtualization_extensions: VirtualizationExtensions,
    /// 0x0C0
    pub clean_bits: VmcbCleanBits,
    pub _reserved_0c4: u32,
    /// 0x0C8: the next instruction's RIP, with nRIP save.
    pub next_rip: u64,
    /// 0x0D0: bytes fetched into `guest_instruction_bytes`, with decode assists.
    pub guest_instruction_length: u8,
    /// 0x0D1
    pub guest_instruction_bytes: [u8; 15],
    /// 0x0E0
    pub avic_backing_page: u64,
    pub _reserved_0e8: u64,
    /// 0x0F0
    pub avic_logical_table: u64,
    /// 0x0F8
    pub avic_physical_table: u64,
    pub _reserved_100: u64,
    /// 0x108: the encrypted save area, for SEV-ES.
    pub vmsa_pa: u64,
    pub _reserved_110: [u8; 0x3e0 - 0x110],
    /// 0x3E0: left to the hypervisor; the CPU does not use it.
    pub software_reserved: [u8; 0x20],
}

/// A segment register in the save area. `attributes` packs descriptor bits
/// 47:40 (type, S, DPL, P) and 55:52 (AVL, L, D/B, G).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VmcbSegment {
    pub selector: u16,
    pub attributes: SegmentAttributes,
    pub limit: u32,
    pub base: u64,
}

/// The VMCB's compressed segment attributes.
#[bitfield(u16)]
#[derive(PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SegmentAttributes {
    #[bits(4)]
    pub segment_type: u8,
    /// S: code or data (1), system (0).
    pub code_or_data: bool,
    #[bits(2)]
    pub dpl: u8,
    pub present: bool,
    pub available: bool,
    pub long_mode: bool,
    pub default_big: bool,
    pub granularity: bool,
    #[bits(4)]
    pub _reserved0: u8,
}

/// The state-save area (APM Table B-2), for a guest without SEV-ES.
#[repr(C)]
#[derive(Clone, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VmcbSaveArea {
    /// 0x400
    pub es: VmcbSegment,
    pub cs: VmcbSegment,
    pub ss: VmcbSegment,
    pub ds: VmcbSegment,
    pub fs: VmcbSegment,
    pub gs: VmcbSegment,
    /// 0x460: only limit and base are used.
    pub gdtr: VmcbSegment,
    pub ldtr: VmcbSegment,
    /// 0x480: only limit and base are used.
    pub idtr: VmcbSegment,
    pub tr: VmcbSegment,
    pub _reserved_4a0: [u8; 0x2b],
    /// 0x4CB: must equal SS.DPL.
    pub cpl: u8,
    pub _reserved_4cc: u32,
    /// 0x4D0: must include SVME.
    pub efer: u64,
    pub _reserved_4d8: [u8; 0x70],
    /// 0x548
    pub cr4: u64,
    /// 0x550
    pub cr3: u64,
    /// 0x558
    pub cr0: u64,
    /// 0x560
    pub dr7: u64,
    /// 0x568
    pub dr6: u64,
    /// 0x570
    pub rflags: u64,
    /// 0x578
    pub rip: u64,
    pub _reserved_580: [u8; 0x58],
    /// 0x5D8
    pub rsp: u64,
    /// 0x5E0
    pub s_cet: u64,
    /// 0x5E8
    pub ssp: u64,
    /// 0x5F0
    pub isst_addr: u64,
    /// 0x5F8
    pub rax: u64,
    /// 0x600
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    /// 0x640
    pub cr2: u64,
    pub _reserved_648: [u8; 0x20],
    /// 0x668: the guest's PAT, used with nested paging.
    pub g_pat: u64,
    /// 0x670
    pub dbgctl: u64,
    pub br_from: u64,
    pub br_to: u64,
    pub last_exception_from: u64,
    /// 0x690
    pub last_exception_to: u64,
    pub _reserved_698: [u8; 0x48],
    /// 0x6E0
    pub spec_ctrl: u64,
    pub _reserved_6e8: [u8; 0x1000 - 0x6e8],
}

/// A whole VMCB: one 4 KiB page.
#[repr(C)]
#[derive(Clone, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Vmcb {
    pub control: VmcbControlArea,
    pub save: VmcbSaveArea,
}

/// Pins a field to its offset from the start of the VMCB.
macro_rules! pin {
    (control.$field:ident = $offset:expr) => {
        const _: () = assert!(offset_of!(VmcbControlArea, $field) == $offset);
    };
    (save.$field:ident = $offset:expr) => {
        const _: () = assert!(offset_of!(Vmcb, save) + offset_of!(VmcbSaveArea, $field) == $offset);
    };
}

const _: () = assert!(size_of::<Vmcb>() == 4096);
const _: () = assert!(size_of::<VmcbControlArea>() == 0x400 && offset_of!(Vmcb, save) == 0x400);
const _: () = assert!(size_of::<VmcbSegment>() == 16);
pin!(control.cr_intercepts = 0x000);
pin!(control.dr_intercepts = 0x004);
pin!(control.exception_intercepts = 0x008);
pin!(control.intercepts1 = 0x00c);
pin!(control.intercepts2 = 0x010);
pin!(control.intercepts3 = 0x014);
pin!(control.pause_filter_threshold = 0x03c);
pin!(control.pause_filter_count = 0x03e);
pin!(control.iopm_base_pa = 0x040);
pin!(control.msrpm_base_pa = 0x048);
pin!(control.tsc_offset = 0x050);
pin!(control.guest_asid = 0x058);
pin!(control.tlb_control = 0x05c);
pin!(control.virtual_interrupt = 0x060);
pin!(control.interrupt_state = 0x068);
pin!(control.exit_code = 0x070);
pin!(control.exit_info1 = 0x078);
pin!(control.exit_info2 = 0x080);
pin!(control.exit_int_info = 0x088);
pin!(control.nested_control = 0x090);
pin!(control.avic_apic_bar = 0x098);
pin!(control.ghcb_gpa = 0x0a0);
pin!(control.event_injection = 0x0a8);
pin!(control.n_cr3 = 0x0b0);
pin!(control.virtualization_extensions = 0x0b8);
pin!(control.clean_bits = 0x0c0);
pin!(control.next_rip = 0x0c8);
pin!(control.guest_instruction_length = 0x0d0);
pin!(control.guest_instruction_bytes = 0x0d1);
pin!(control.avic_backing_page = 0x0e0);
pin!(control.avic_logical_table = 0x0f0);
pin!(control.avic_physical_table = 0x0f8);
pin!(control.vmsa_pa = 0x108);
pin!(control.software_reserved = 0x3e0);
pin!(save.es = 0x400);
pin!(save.cs = 0x410);
pin!(save.ss = 0x420);
pin!(save.ds = 0x430);
pin!(save.fs = 0x440);
pin!(save.gs = 0x450);
pin!(save.gdtr = 0x460);
pin!(save.ldtr = 0x470);
pin!(save.idtr = 0x480);
pin!(save.tr = 0x490);
pin!(save.cpl = 0x4cb);
pin!(save.efer = 0x4d0);
pin!(save.cr4 = 0x548);
pin!(save.cr3 = 0x550);
pin!(save.cr0 = 0x558);
pin!(save.dr7 = 0x560);
pin!(save.dr6 = 0x568);
pin!(save.rflags = 0x570);
pin!(save.rip = 0x578);
pin!(save.rsp = 0x5d8);
pin!(save.s_cet = 0x5e0);
pin!(save.ssp = 0x5e8);
pin!(save.isst_addr = 0x5f0);
pin!(save.rax = 0x5f8);
pin!(save.star = 0x600);
pin!(save.lstar = 0x608);
pin!(save.cstar = 0x610);
pin!(save.sfmask = 0x618);
pin!(save.kernel_gs_base = 0x620);
pin!(save.sysenter_cs = 0x628);
pin!(save.sysenter_esp = 0x630);
pin!(save.sysenter_eip = 0x638);
pin!(save.cr2 = 0x640);
pin!(save.g_pat = 0x668);
pin!(save.dbgctl = 0x670);
pin!(save.br_from = 0x678);
pin!(save.br_to = 0x680);
pin!(save.last_exception_from = 0x688);
pin!(save.last_exception_to = 0x690);
pin!(save.spec_ctrl = 0x6e0);
