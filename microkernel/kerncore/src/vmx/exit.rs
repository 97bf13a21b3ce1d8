//! VM-exit information: exit reasons (SDM Vol. 3D Appendix C), exit
//! qualifications (SDM Vol. 3C §28.2.1), event information (§25.8.3,
//! §25.9.2, §25.9.3) and VM-instruction errors (§31.4). Tables are cited
//! by title: their numbers shift between SDM editions.

use crate::intercept::{IoDirection, IoPortAccess, IoSize};
use bitfield_struct::bitfield;

/// The register of a MOV CR exit: the same architectural numbering the
/// VID's instruction decoder uses.
pub use x86defs::Gpr;

abi::open_enum! {
    /// Basic exit reason (bits 15:0 of the exit-reason field).
    pub struct ExitReason(u16) {
        EXCEPTION_OR_NMI = 0,
        EXTERNAL_INTERRUPT = 1,
        TRIPLE_FAULT = 2,
        INIT_SIGNAL = 3,
        STARTUP_IPI = 4,
        IO_SMI = 5,
        OTHER_SMI = 6,
        INTERRUPT_WINDOW = 7,
        NMI_WINDOW = 8,
        TASK_SWITCH = 9,
        CPUID = 10,
        GETSEC = 11,
        HLT = 12,
        INVD = 13,
        INVLPG = 14,
        RDPMC = 15,
        RDTSC = 16,
        RSM = 17,
        VMCALL = 18,
        VMCLEAR = 19,
        VMLAUNCH = 20,
        VMPTRLD = 21,
        VMPTRST = 22,
        VMREAD = 23,
        VMRESUME = 24,
        VMWRITE = 25,
        VMXOFF = 26,
        VMXON = 27,
        CR_ACCESS = 28,
        MOV_DR = 29,
        IO_INSTRUCTION = 30,
        RDMSR = 31,
        WRMSR = 32,
        ENTRY_FAILURE_INVALID_GUEST_STATE = 33,
        ENTRY_FAILURE_MSR_LOADING = 34,
        MWAIT = 36,
        MONITOR_TRAP_FLAG = 37,
        MONITOR = 39,
        PAUSE = 40,
        ENTRY_FAILURE_MACHINE_CHECK = 41,
        TPR_BELOW_THRESHOLD = 43,
        APIC_ACCESS = 44,
        VIRTUALIZED_EOI = 45,
        GDTR_IDTR_ACCESS = 46,
        LDTR_TR_ACCESS = 47,
        EPT_VIOLATION = 48,
        EPT_MISCONFIGURATION = 49,
        INVEPT = 50,
        RDTSCP = 51,
        PREEMPTION_TIMER_EXPIRED = 52,
        INVVPID = 53,
        WBINVD = 54,
        XSETBV = 55,
        APIC_WRITE = 56,
        RDRAND = 57,
        INVPCID = 58,
        VMFUNC = 59,
        ENCLS = 60,
        RDSEED = 61,
        PAGE_MODIFICATION_LOG_FULL = 62,
        XSAVES = 63,
        XRSTORS = 64,
        PCONFIG = 65,
        SPP_RELATED_EVENT = 66,
        UMWAIT = 67,
        TPAUSE = 68,
        LOADIWKEY = 69,
        ENCLV = 70,
        ENQCMD_PASID_TRANSLATION_FAILURE = 72,
        ENQCMDS_PASID_TRANSLATION_FAILURE = 73,
        BUS_LOCK = 74,
        INSTRUCTION_TIMEOUT = 75,
        SEAMCALL = 76,
        TDCALL = 77,
        RDMSRLIST = 78,
        WRMSRLIST = 79,
    }
}

impl ExitReason {
    pub const fn from_bits(bits: u16) -> Self {
        ExitReason(bits)
    }

    pub const fn into_bits(self) -> u16 {
        self.0
    }

    /// An instruction no guest is offered, which exits: VMX's own (CPUID
    /// has no VMX, CR4.VMXE reads clear), VMFUNC (only with VM functions
    /// on), GETSEC (only with CR4.SMXE set; CPUID has no SMX) and
    /// MONITOR/MWAIT (no CPUID.1:ECX.MONITOR). A CPU without them raises
    /// #UD, and so must the hypervisor.
    pub const fn is_not_offered_instruction(self) -> bool {
        matches!(
            self,
            Self::VMCLEAR
                | Self::VMLAUNCH
                | Self::VMPTRLD
                | Self::VMPTRST
                | Self::VMREAD
                | Self::VMRESUME
                | Self::VMWRITE
                | Self::VMXOFF
                | Self::VMXON
                | Self::INVEPT
                | Self::INVVPID
                | Self::VMFUNC
                | Self::GETSEC
                | Self::MONITOR
                | Self::MWAIT
        )
    }
}

/// The exit-reason field, VMCS [`super::VmcsField::EXIT_REASON`] (SDM
/// §25.9.1, "Format of Exit Reason").
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct ExitReasonField {
    #[bits(16)]
    pub basic: ExitReason,
    /// Always 0.
    pub _reserved0: bool,
    #[bits(10)]
    pub _reserved1: u16,
    pub enclave_mode: bool,
    pub pending_mtf_exit: bool,
    pub exit_from_vmx_root: bool,
    pub _reserved2: bool,
    /// VM entry failed; the basic reason says why.
    pub entry_failure: bool,
}

/// Exit qualification for I/O instructions (SDM §28.2.1, "Exit
/// Qualification for I/O Instructions").
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct IoQualification {
    /// 0 = 1 byte, 1 = 2 bytes, 3 = 4 bytes; others are not used.
    #[bits(3)]
    pub size_code: u8,
    /// 1 = IN, 0 = OUT.
    pub is_in: bool,
    pub string: bool,
    pub rep: bool,
    /// 1 = the port is an immediate operand, 0 = in DX.
    pub immediate_operand: bool,
    #[bits(9)]
    pub _reserved0: u16,
    pub port: u16,
    pub _reserved1: u32,
}

impl IoQualification {
    pub const fn size(self) -> Option<IoSize> {
        match self.size_code() {
            0 => Some(IoSize::Byte),
            1 => Some(IoSize::Word),
            3 => Some(IoSize::Dword),
            _ => None,
        }
    }

    /// The access, or `None` if the size code is not one the SDM defines.
    pub const fn access(self) -> Option<IoPortAccess> {
        let Some(size) = self.size() else { return None };
        let direction = if self.is_in() { IoDirection::In } else { IoDirection::Out };
        Some(IoPortAccess { port: self.port(), size, direction, string: self.string(), rep: self.rep() })
    }
}

/// Exit qualification for EPT violations (SDM §28.2.1, "Exit Qualification
/// for EPT Violations"). Bits 3-6 are the rights of the guest-physical
/// address, ANDed over the EPT walk.
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct EptViolationQualification {
    pub data_read: bool,
    pub data_write: bool,
    pub instruction_fetch: bool,
    pub readable: bool,
    pub writable: bool,
    /// Executable (for supervisor mode, when MBEC is on).
    pub executable: bool,
    /// User-mode executable, when MBEC is on; undefined otherwise.
    pub user_executable: bool,
    /// The guest-linear-address VMCS field is valid.
    pub linear_address_valid: bool,
    /// With a valid linear address: 1 = the access was to the translation
    /// of that address, 0 = to a guest paging-structure entry.
    pub access_to_translation: bool,
    /// With advanced exit information: the linear address was user-mode.
    pub user_mode_linear_address: bool,
    /// With advanced exit information: the guest page was read/write.
    pub guest_page_writable: bool,
    /// With advanced exit information: the guest page was execute-disable.
    pub guest_page_execute_disable: bool,
    pub nmi_unblocking_due_to_iret: bool,
    pub shadow_stack_access: bool,
    pub supervisor_shadow_stack: bool,
    pub guest_paging_verification: bool,
    pub asynchronous: bool,
    #[bits(47)]
    pub _reserved0: u64,
}

impl EptViolationQualification {
    /// The guest faulted while walking its own page tables, not on the
    /// address it meant to reach (only known when a linear address is valid).
    pub const fn during_guest_page_walk(self) -> bool {
        self.linear_address_valid() && !self.access_to_translation()
    }
}

/// The kind of control-register access (exit qualification bits 5:4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrAccessType {
    MovToCr,
    MovFromCr,
    Clts,
    Lmsw,
}

impl CrAccessType {
    const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => CrAccessType::MovToCr,
            1 => CrAccessType::MovFromCr,
            2 => CrAccessType::Clts,
            _ => CrAccessType::Lmsw,
        }
    }

    const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// Exit qualification for control-register accesses (SDM §28.2.1, "Exit
/// Qualification for Control-Register Accesses").
#[bitfield(u64)]
#[derive(PartialEq, Eq)]
pub struct CrAccessQualification {
    /// The control register (0, 3, 4 or 8; 0 for CLTS and LMSW).
    #[bits(4)]
    pub cr: u8,
    #[bits(2)]
    pub access_type: CrAccessType,
    /// LMSW only: 1 = memory operand, 0 = register.
    pub lmsw_memory_operand: bool,
    pub _reserved0: bool,
    /// MOV CR only: the general-purpose register.
    #[bits(4, from = Gpr::from_number, into = Gpr::number)]
    pub gpr: Gpr,
    #[bits(4)]
    pub _reserved1: u8,
    /// LMSW only: the source operand.
    pub lmsw_source: u16,
    pub _reserved2: u32,
}

abi::open_enum! {
    /// Type of an event: bits 10:8 of the interruption-information fields.
    pub struct InterruptionType(u8) {
        EXTERNAL_INTERRUPT = 0,
        NMI = 2,
        HARDWARE_EXCEPTION = 3,
        SOFTWARE_INTERRUPT = 4,
        PRIVILEGED_SOFTWARE_EXCEPTION = 5,
        SOFTWARE_EXCEPTION = 6,
        OTHER_EVENT = 7,
    }
}

impl InterruptionType {
    pub const fn from_bits(bits: u8) -> Self {
        InterruptionType(bits)
    }

    pub const fn into_bits(self) -> u8 {
        self.0
    }
}

/// VM-entry interruption information (to inject an event), VM-exit
/// interruption information and IDT-vectoring information share this
/// format (SDM "Format of the VM-Entry Interruption-Information Field",
/// "Format of the VM-Exit Interruption-Information Field").
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct InterruptionInfo {
    pub vector: u8,
    #[bits(3)]
    pub interruption_type: InterruptionType,
    pub deliver_error_code: bool,
    /// Exit and IDT-vectoring information only.
    pub nmi_unblocking_due_to_iret: bool,
    #[bits(18)]
    pub _reserved0: u32,
    pub valid: bool,
}

abi::open_enum! {
    /// VM-instruction error numbers (SDM §31.4), read from
    /// [`super::VmcsField::VM_INSTRUCTION_ERROR`] after VMfailValid.
    pub struct VmInstructionError(u32) {
        VMCALL_IN_VMX_ROOT = 1,
        VMCLEAR_INVALID_ADDRESS = 2,
        VMCLEAR_VMXON_POINTER = 3,
        VMLAUNCH_NON_CLEAR_VMCS = 4,
        VMRESUME_NON_LAUNCHED_VMCS = 5,
        VMRESUME_AFTER_VMXOFF = 6,
        ENTRY_INVALID_CONTROL_FIELDS = 7,
        ENTRY_INVALID_HOST_STATE = 8,
        VMPTRLD_INVALID_ADDRESS = 9,
        VMPTRLD_VMXON_POINTER = 10,
        VMPTRLD_WRONG_REVISION = 11,
        UNSUPPORTED_VMCS_COMPONENT = 12,
        VMWRITE_READ_ONLY_COMPONENT = 13,
        VMXON_IN_VMX_ROOT = 15,
        ENTRY_INVALID_EXECUTIVE_VMCS = 16,
        ENTRY_NON_LAUNCHED_EXECUTIVE_VMCS = 17,
        ENTRY_EXECUTIVE_VMCS_NOT_VMXON = 18,
        VMCALL_NON_CLEAR_VMCS = 19,
        VMCALL_INVALID_EXIT_CONTROLS = 20,
        VMCALL_WRONG_MSEG_REVISION = 22,
        VMXOFF_UNDER_DUAL_MONITOR = 23,
        VMCALL_INVALID_SMM_MONITOR_FEATURES = 24,
        ENTRY_INVALID_EXECUTION_CONTROLS_IN_EXECUTIVE_VMCS = 25,
        ENTRY_EVENTS_BLOCKED_BY_MOV_SS = 26,
        INVALID_OPERAND_TO_INVEPT_INVVPID = 28,
    }
}
