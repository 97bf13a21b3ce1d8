//! Interruptions delivered to a guest: what a VMM asks for through the TLFS
//! pending-interruption register, validated once here, and its encodings
//! for SVM's EVENTINJ and VMX's VM-entry interruption information, plus
//! the way back from an exit that interrupted a delivery.

use crate::svm::{EventInjection, EventType};
use crate::vmx::{InterruptionInfo, InterruptionType};
use tlfs::{HvX64PendingInterruptionRegister, HvX64PendingInterruptionType as Kind};

/// Exceptions that push an error code in protected mode (SDM "Exception
/// and Interrupt Reference": #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP).
const ERROR_CODE_VECTORS: [u8; 8] = [8, 10, 11, 12, 13, 14, 17, 21];

/// A validated interruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interruption {
    pub kind: Kind,
    pub vector: u8,
    pub error_code: Option<u32>,
    /// For software interrupts and exceptions: the instruction's length.
    pub instruction_length: u8,
}

/// Why a pending-interruption value is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    ReservedBits,
    UnknownType,
    /// The vector does not fit the type (an NMI not at 2, an exception
    /// above 31, or a vector above 255).
    Vector,
    /// An error code for a type or vector that never has one, or none
    /// for an exception that always has one.
    ErrorCode,
    /// A software event without an instruction length of 1 to 15.
    InstructionLength,
}

impl Interruption {
    /// An external interrupt at `vector`.
    pub const fn interrupt(vector: u8) -> Interruption {
        Interruption { kind: Kind::INTERRUPT, vector, error_code: None, instruction_length: 0 }
    }

    /// A hardware exception at `vector` (< 32), with the error code it pushes, if any.
    pub const fn exception(vector: u8, error_code: Option<u32>) -> Interruption {
        Interruption { kind: Kind::EXCEPTION, vector, error_code, instruction_length: 0 }
    }

    /// The interruption a TLFS register value asks for: `None` when it has
    /// no InterruptionPending bit.
    pub fn from_register(value: u64) -> Result<Option<Interruption>, Invalid> {
        let r = HvX64PendingInterruptionRegister::from_bits(value);
        if !r.interruption_pending() {
            return Ok(None);
        }
        if r.reserved() != 0 {
            return Err(Invalid::ReservedBits);
        }
        let vector = u8::try_from(r.interruption_vector()).map_err(|_| Invalid::Vector)?;
        let kind = r.kind();
        let vector_ok = match kind {
            // Any vector: an external interrupt is what the 8259 (ExtINT)
            // names, e.g. 08h-0Fh as a PC BIOS programs it, and VM entry
            // injects any (SDM Vol. 3C 26.2.1.3; APM Vol. 2 15.20). The
            // local APIC's illegal vectors 0-15 are its model's to refuse.
            Kind::INTERRUPT => true,
            Kind::NMI => vector == 2,
            Kind::EXCEPTION | Kind::PRIVILEGED_SOFTWARE_EXCEPTION | Kind::SOFTWARE_EXCEPTION => vector < 32,
            Kind::SOFTWARE_INTERRUPT => true,
            _ => return Err(Invalid::UnknownType),
        };
        if !vector_ok {
            return Err(Invalid::Vector);
        }
        let wants_code = kind == Kind::EXCEPTION && ERROR_CODE_VECTORS.contains(&vector);
        if r.deliver_error_code() != wants_code {
            return Err(Invalid::ErrorCode);
        }
        let software =
            matches!(kind, Kind::SOFTWARE_INTERRUPT | Kind::PRIVILEGED_SOFTWARE_EXCEPTION | Kind::SOFTWARE_EXCEPTION);
        let length = r.instruction_length();
        if software && !(1..=15).contains(&length) {
            return Err(Invalid::InstructionLength);
        }
        Ok(Some(Interruption {
            kind,
            vector,
            error_code: wants_code.then_some(r.error_code()),
            instruction_length: if software { length } else { 0 },
        }))
    }

    /// The TLFS register value of this interruption.
    pub fn to_register(&self) -> u64 {
        HvX64PendingInterruptionRegister::pending(self.kind, self.vector, self.error_code)
            .with_instruction_length(self.instruction_length)
            .into_bits()
    }

    /// Maskable by RFLAGS.IF and the interrupt shadow.
    pub fn is_maskable(&self) -> bool {
        self.kind == Kind::INTERRUPT
    }

    /// An NMI: blocked from its delivery until the next IRET (SDM Vol. 3A
    /// §6.7.1), so the next one waits for that.
    pub fn is_nmi(&self) -> bool {
        self.kind == Kind::NMI
    }

    /// Whether the guest can take it now: a maskable interrupt needs IF set
    /// and no STI/MOV SS shadow; the rest are delivered regardless.
    pub fn deliverable(&self, interrupts_enabled: bool, shadow: bool) -> bool {
        !self.is_maskable() || (interrupts_enabled && !shadow)
    }

    /// Delivered with the return address past the instruction (INT n,
    /// INT3, INTO, INT1).
    pub fn is_software(&self) -> bool {
        self.instruction_length != 0
    }

    /// SVM's EVENTINJ. SVM injects software exceptions (INT3, INTO, INT1)
    /// as exceptions; `is_software` tells the caller to move RIP past the
    /// instruction first, since without next-RIP the CPU pushes RIP as it is.
    /// `protected` is CR0.PE: real mode pushes no error code.
    pub fn to_svm(&self, protected: bool) -> EventInjection {
        let event_type = match self.kind {
            Kind::INTERRUPT => EventType::EXTERNAL_INTERRUPT,
            Kind::NMI => EventType::NMI,
            Kind::SOFTWARE_INTERRUPT => EventType::SOFTWARE_INTERRUPT,
            _ => EventType::EXCEPTION,
        };
        let code = self.error_code.filter(|_| protected);
        EventInjection::new()
            .with_vector(self.vector)
            .with_event_type(event_type)
            .with_error_code_valid(code.is_some())
            .with_error_code(code.unwrap_or(0))
            .with_valid(true)
    }

    /// VMX's VM-entry interruption information; the error code and
    /// instruction length go to their own fields.
    pub fn to_vmx(&self, protected: bool) -> InterruptionInfo {
        InterruptionInfo::new()
            .with_vector(self.vector)
            .with_interruption_type(InterruptionType(self.kind.0))
            .with_deliver_error_code(self.error_code.is_some() && protected)
            .with_valid(true)
    }

    /// The event an SVM exit interrupted (EXITINTINFO), to deliver again.
    /// Software interrupts are not: RIP still points at the INT, which
    /// runs again. `offered`: the virtual interrupt (V_IRQ) still offered
    /// at the exit, if any.
    pub fn interrupted_svm(info: EventInjection, offered: Option<u8>) -> Option<Interruption> {
        if !info.valid() {
            return None;
        }
        let kind = match info.event_type() {
            EventType::EXTERNAL_INTERRUPT => Kind::INTERRUPT,
            EventType::NMI => Kind::NMI,
            // QEMU's TCG reports a virtual interrupt (V_IRQ) it was
            // delivering as an exception: no exception has a vector above
            // 31, and below it the offered vector tells (an 8259 may be
            // programmed there, e.g. at 08h as a PC BIOS does).
            EventType::EXCEPTION if info.vector() >= 32 || offered == Some(info.vector()) => Kind::INTERRUPT,
            EventType::EXCEPTION => Kind::EXCEPTION,
            _ => return None,
        };
        // INT3 and INTO are reported as exceptions; they re-execute too.
        if kind == Kind::EXCEPTION && matches!(info.vector(), 3 | 4) {
            return None;
        }
        // An interrupt has no error code (QEMU may report one for it).
        let error_code = (info.error_code_valid() && kind != Kind::INTERRUPT).then_some(info.error_code());
        Some(Interruption { kind, vector: info.vector(), error_code, instruction_length: 0 })
    }

    /// The event a VMX exit interrupted (IDT-vectoring information and its
    /// error code), to deliver again; software events re-execute instead.
    pub fn interrupted_vmx(info: InterruptionInfo, error_code: u32) -> Option<Interruption> {
        if !info.valid() {
            return None;
        }
        let kind = match info.interruption_type() {
            InterruptionType::EXTERNAL_INTERRUPT => Kind::INTERRUPT,
            InterruptionType::NMI => Kind::NMI,
            InterruptionType::HARDWARE_EXCEPTION => Kind::EXCEPTION,
            _ => return None,
        };
        let error_code = info.deliver_error_code().then_some(error_code);
        Some(Interruption { kind, vector: info.vector(), error_code, instruction_length: 0 })
    }
}

#[cfg(test)]
mod tests;
