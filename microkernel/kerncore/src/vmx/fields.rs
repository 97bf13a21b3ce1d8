//! VMCS field encodings (SDM Vol. 3D Appendix B) and the layout of an
//! encoding (SDM Vol. 3C §25.11.2, "VMREAD, VMWRITE, and Encodings of VMCS
//! Fields").

use bitfield_struct::bitfield;

abi::open_enum! {
    /// A VMCS field, as VMREAD and VMWRITE name it. The 64-bit fields are
    /// given by their full encoding (access type 0); the high half alone is
    /// that plus one.
    pub struct VmcsField(u32) {
        // 16-bit control fields (B.1.1).
        VIRTUAL_PROCESSOR_ID = 0x0000,
        POSTED_INTERRUPT_NOTIFICATION_VECTOR = 0x0002,
        EPTP_INDEX = 0x0004,
        // 16-bit guest-state fields (B.1.2).
        GUEST_ES_SELECTOR = 0x0800,
        GUEST_CS_SELECTOR = 0x0802,
        GUEST_SS_SELECTOR = 0x0804,
        GUEST_DS_SELECTOR = 0x0806,
        GUEST_FS_SELECTOR = 0x0808,
        GUEST_GS_SELECTOR = 0x080a,
        GUEST_LDTR_SELECTOR = 0x080c,
        GUEST_TR_SELECTOR = 0x080e,
        GUEST_INTERRUPT_STATUS = 0x0810,
        GUEST_PML_INDEX = 0x0812,
        // 16-bit host-state fields (B.1.3).
        HOST_ES_SELECTOR = 0x0c00,
        HOST_CS_SELECTOR = 0x0c02,
        HOST_SS_SELECTOR = 0x0c04,
        HOST_DS_SELECTOR = 0x0c06,
        HOST_FS_SELECTOR = 0x0c08,
        HOST_GS_SELECTOR = 0x0c0a,
        HOST_TR_SELECTOR = 0x0c0c,
        // 64-bit control fields (B.2.1).
        IO_BITMAP_A = 0x2000,
        IO_BITMAP_B = 0x2002,
        MSR_BITMAP = 0x2004,
        VM_EXIT_MSR_STORE_ADDRESS = 0x2006,
        VM_EXIT_MSR_LOAD_ADDRESS = 0x2008,
        VM_ENTRY_MSR_LOAD_ADDRESS = 0x200a,
        EXECUTIVE_VMCS_POINTER = 0x200c,
        PML_ADDRESS = 0x200e,
        TSC_OFFSET = 0x2010,
        VIRTUAL_APIC_ADDRESS = 0x2012,
        APIC_ACCESS_ADDRESS = 0x2014,
        POSTED_INTERRUPT_DESCRIPTOR_ADDRESS = 0x2016,
        VM_FUNCTION_CONTROLS = 0x2018,
        EPT_POINTER = 0x201a,
        EOI_EXIT_BITMAP_0 = 0x201c,
        EOI_EXIT_BITMAP_1 = 0x201e,
        EOI_EXIT_BITMAP_2 = 0x2020,
        EOI_EXIT_BITMAP_3 = 0x2022,
        EPTP_LIST_ADDRESS = 0x2024,
        VMREAD_BITMAP_ADDRESS = 0x2026,
        VMWRITE_BITMAP_ADDRESS = 0x2028,
        VIRTUALIZATION_EXCEPTION_INFORMATION_ADDRESS = 0x202a,
        XSS_EXITING_BITMAP = 0x202c,
        ENCLS_EXITING_BITMAP = 0x202e,
        SUB_PAGE_PERMISSION_TABLE_POINTER = 0x2030,
        TSC_MULTIPLIER = 0x2032,
        TERTIARY_PROCESSOR_BASED_CONTROLS = 0x2034,
        // 64-bit read-only data field (B.2.2).
        GUEST_PHYSICAL_ADDRESS = 0x2400,
        // 64-bit guest-state fields (B.2.3).
        VMCS_LINK_POINTER = 0x2800,
        GUEST_IA32_DEBUGCTL = 0x2802,
        GUEST_IA32_PAT = 0x2804,
        GUEST_IA32_EFER = 0x2806,
        GUEST_IA32_PERF_GLOBAL_CTRL = 0x2808,
        GUEST_PDPTE0 = 0x280a,
        GUEST_PDPTE1 = 0x280c,
        GUEST_PDPTE2 = 0x280e,
        GUEST_PDPTE3 = 0x2810,
        GUEST_IA32_BNDCFGS = 0x2812,
        GUEST_IA32_RTIT_CTL = 0x2814,
        GUEST_IA32_LBR_CTL = 0x2816,
        GUEST_IA32_PKRS = 0x2818,
        // 64-bit host-state fields (B.2.4).
        HOST_IA32_PAT = 0x2c00,
        HOST_IA32_EFER = 0x2c02,
        HOST_IA32_PERF_GLOBAL_CTRL = 0x2c04,
        HOST_IA32_PKRS = 0x2c06,
        // 32-bit control fields (B.3.1).
        PIN_BASED_CONTROLS = 0x4000,
        PRIMARY_PROCESSOR_BASED_CONTROLS = 0x4002,
        EXCEPTION_BITMAP = 0x4004,
        PAGE_FAULT_ERROR_CODE_MASK = 0x4006,
        PAGE_FAULT_ERROR_CODE_MATCH = 0x4008,
        CR3_TARGET_COUNT = 0x400a,
        VM_EXIT_CONTROLS = 0x400c,
        VM_EXIT_MSR_STORE_COUNT = 0x400e,
        VM_EXIT_MSR_LOAD_COUNT = 0x4010,
        VM_ENTRY_CONTROLS = 0x4012,
        VM_ENTRY_MSR_LOAD_COUNT = 0x4014,
        VM_ENTRY_INTERRUPTION_INFORMATION = 0x4016,
        VM_ENTRY_EXCEPTION_ERROR_CODE = 0x4018,
        VM_ENTRY_INSTRUCTION_LENGTH = 0x401a,
        TPR_THRESHOLD = 0x401c,
        SECONDARY_PROCESSOR_BASED_CONTROLS = 0x401e,
        PLE_GAP = 0x4020,
        PLE_WINDOW = 0x4022,
        // 32-bit read-only data fields (B.3.2).
        VM_INSTRUCTION_ERROR = 0x4400,
        EXIT_REASON = 0x4402,
        VM_EXIT_INTERRUPTION_INFORMATION = 0x4404,
        VM_EXIT_INTERRUPTION_ERROR_CODE = 0x4406,
        IDT_VECTORING_INFORMATION = 0x4408,
        IDT_VECTORING_ERROR_CODE = 0x440a,
        VM_EXIT_INSTRUCTION_LENGTH = 0x440c,
        VM_EXIT_INSTRUCTION_INFORMATION = 0x440e,
        // 32-bit guest-state fields (B.3.3).
        GUEST_ES_LIMIT = 0x4800,
        GUEST_CS_LIMIT = 0x4802,
        GUEST_SS_LIMIT = 0x4804,
        GUEST_DS_LIMIT = 0x4806,
        GUEST_FS_LIMIT = 0x4808,
        GUEST_GS_LIMIT = 0x480a,
        GUEST_LDTR_LIMIT = 0x480c,
        GUEST_TR_LIMIT = 0x480e,
        GUEST_GDTR_LIMIT = 0x4810,
        GUEST_IDTR_LIMIT = 0x4812,
        GUEST_ES_ACCESS_RIGHTS = 0x4814,
        GUEST_CS_ACCESS_RIGHTS = 0x4816,
        GUEST_SS_ACCESS_RIGHTS = 0x4818,
        GUEST_DS_ACCESS_RIGHTS = 0x481a,
        GUEST_FS_ACCESS_RIGHTS = 0x481c,
        GUEST_GS_ACCESS_RIGHTS = 0x481e,
        GUEST_LDTR_ACCESS_RIGHTS = 0x4820,
        GUEST_TR_ACCESS_RIGHTS = 0x4822,
        GUEST_INTERRUPTIBILITY_STATE = 0x4824,
        GUEST_ACTIVITY_STATE = 0x4826,
        GUEST_SMBASE = 0x4828,
        GUEST_IA32_SYSENTER_CS = 0x482a,
        VMX_PREEMPTION_TIMER_VALUE = 0x482e,
        // 32-bit host-state field (B.3.4).
        HOST_IA32_SYSENTER_CS = 0x4c00,
        // Natural-width control fields (B.4.1).
        CR0_GUEST_HOST_MASK = 0x6000,
        CR4_GUEST_HOST_MASK = 0x6002,
        CR0_READ_SHADOW = 0x6004,
        CR4_READ_SHADOW = 0x6006,
        CR3_TARGET_VALUE_0 = 0x6008,
        CR3_TARGET_VALUE_1 = 0x600a,
        CR3_TARGET_VALUE_2 = 0x600c,
        CR3_TARGET_VALUE_3 = 0x600e,
        // Natural-width read-only data fields (B.4.2).
        EXIT_QUALIFICATION = 0x6400,
        IO_RCX = 0x6402,
        IO_RSI = 0x6404,
        IO_RDI = 0x6406,
        IO_RIP = 0x6408,
        GUEST_LINEAR_ADDRESS = 0x640a,
        // Natural-width guest-state fields (B.4.3).
        GUEST_CR0 = 0x6800,
        GUEST_CR3 = 0x6802,
        GUEST_CR4 = 0x6804,
        GUEST_ES_BASE = 0x6806,
        GUEST_CS_BASE = 0x6808,
        GUEST_SS_BASE = 0x680a,
        GUEST_DS_BASE = 0x680c,
        GUEST_FS_BASE = 0x680e,
        GUEST_GS_BASE = 0x6810,
        GUEST_LDTR_BASE = 0x6812,
        GUEST_TR_BASE = 0x6814,
        GUEST_GDTR_BASE = 0x6816,
        GUEST_IDTR_BASE = 0x6818,
        GUEST_DR7 = 0x681a,
        GUEST_RSP = 0x681c,
        GUEST_RIP = 0x681e,
        GUEST_RFLAGS = 0x6820,
        GUEST_PENDING_DEBUG_EXCEPTIONS = 0x6822,
        GUEST_IA32_SYSENTER_ESP = 0x6824,
        GUEST_IA32_SYSENTER_EIP = 0x6826,
        GUEST_IA32_S_CET = 0x6828,
        GUEST_SSP = 0x682a,
        GUEST_IA32_INTERRUPT_SSP_TABLE_ADDR = 0x682c,
        // Natural-width host-state fields (B.4.4).
        HOST_CR0 = 0x6c00,
        HOST_CR3 = 0x6c02,
        HOST_CR4 = 0x6c04,
        HOST_FS_BASE = 0x6c06,
        HOST_GS_BASE = 0x6c08,
        HOST_TR_BASE = 0x6c0a,
        HOST_GDTR_BASE = 0x6c0c,
        HOST_IDTR_BASE = 0x6c0e,
        HOST_IA32_SYSENTER_ESP = 0x6c10,
        HOST_IA32_SYSENTER_EIP = 0x6c12,
        HOST_RSP = 0x6c14,
        HOST_RIP = 0x6c16,
        HOST_IA32_S_CET = 0x6c18,
        HOST_SSP = 0x6c1a,
        HOST_IA32_INTERRUPT_SSP_TABLE_ADDR = 0x6c1c,
    }
}

impl VmcsField {
    /// The encoding's parts.
    pub const fn encoding(self) -> VmcsFieldEncoding {
        VmcsFieldEncoding::from_bits(self.0)
    }

    /// The high 32 bits of a 64-bit field, for 32-bit VMREAD/VMWRITE.
    pub const fn high_half(self) -> Option<VmcsField> {
        let e = self.encoding();
        if matches!(e.width(), VmcsFieldWidth::Bits64) && !e.access_high() {
            Some(VmcsField(e.with_access_high(true).into_bits()))
        } else {
            None
        }
    }
}

/// Width of a VMCS field (encoding bits 14:13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmcsFieldWidth {
    Bits16,
    Bits64,
    Bits32,
    /// 64 bits on a CPU with Intel 64.
    Natural,
}

impl VmcsFieldWidth {
    const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => VmcsFieldWidth::Bits16,
            1 => VmcsFieldWidth::Bits64,
            2 => VmcsFieldWidth::Bits32,
            _ => VmcsFieldWidth::Natural,
        }
    }

    const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// Kind of a VMCS field (encoding bits 11:10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmcsFieldKind {
    Control,
    /// VM-exit information; read-only unless the CPU allows writes to it.
    ReadOnlyData,
    GuestState,
    HostState,
}

impl VmcsFieldKind {
    const fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => VmcsFieldKind::Control,
            1 => VmcsFieldKind::ReadOnlyData,
            2 => VmcsFieldKind::GuestState,
            _ => VmcsFieldKind::HostState,
        }
    }

    const fn into_bits(self) -> u8 {
        self as u8
    }
}

/// The structure of a VMCS field encoding.
#[bitfield(u32)]
#[derive(PartialEq, Eq)]
pub struct VmcsFieldEncoding {
    /// Selects the high 32 bits of a 64-bit field.
    pub access_high: bool,
    #[bits(9)]
    pub index: u16,
    #[bits(2)]
    pub kind: VmcsFieldKind,
    pub _reserved0: bool,
    #[bits(2)]
    pub width: VmcsFieldWidth,
    #[bits(17)]
    pub _reserved1: u32,
}
