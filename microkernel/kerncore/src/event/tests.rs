use super::*;

fn register(kind: Kind, vector: u16, code: Option<u32>, length: u8) -> u64 {
    HvX64PendingInterruptionRegister::new()
        .with_interruption_pending(true)
        .with_interruption_type(kind.0)
        .with_deliver_error_code(code.is_some())
        .with_instruction_length(length)
        .with_interruption_vector(vector)
        .with_error_code(code.unwrap_or(0))
        .into_bits()
}

#[test]
fn a_register_without_the_pending_bit_asks_for_nothing() {
    assert_eq!(Interruption::from_register(0), Ok(None));
    assert_eq!(Interruption::from_register(register(Kind::INTERRUPT, 0x30, None, 0) & !1), Ok(None));
}

#[test]
fn valid_interruptions_round_trip_through_the_register() {
    for i in [
        Interruption::interrupt(0x30),
        Interruption { kind: Kind::NMI, vector: 2, error_code: None, instruction_length: 0 },
        Interruption { kind: Kind::EXCEPTION, vector: 13, error_code: Some(0x18), instruction_length: 0 },
        Interruption { kind: Kind::EXCEPTION, vector: 6, error_code: None, instruction_length: 0 },
        Interruption { kind: Kind::SOFTWARE_INTERRUPT, vector: 0x80, error_code: None, instruction_length: 2 },
        Interruption { kind: Kind::SOFTWARE_EXCEPTION, vector: 3, error_code: None, instruction_length: 1 },
    ] {
        assert_eq!(Interruption::from_register(i.to_register()), Ok(Some(i)), "{i:?}");
    }
}

#[test]
fn an_external_interrupt_may_have_any_vector() {
    // The 8259's vector through LINT0 is its ICW2 base plus the line: 08h
    // for IRQ 0 as a PC BIOS sets it up, or 00h-07h for a base of 0.
    for vector in [0, 7, 8, 15, 16, 0xff] {
        let i = Interruption::interrupt(vector);
        assert_eq!(Interruption::from_register(i.to_register()), Ok(Some(i)), "{vector:#x}");
        assert_eq!(u32::from(i.to_vmx(true)), u32::from(vector) | 1 << 31);
    }
}

#[test]
fn malformed_registers_are_refused_with_the_reason() {
    let reserved = register(Kind::INTERRUPT, 0x30, None, 0) | 1 << 9;
    assert_eq!(Interruption::from_register(reserved), Err(Invalid::ReservedBits));
    assert_eq!(Interruption::from_register(register(Kind(1), 0x30, None, 0)), Err(Invalid::UnknownType));
    assert_eq!(Interruption::from_register(register(Kind(7), 0x30, None, 0)), Err(Invalid::UnknownType));
    assert_eq!(Interruption::from_register(register(Kind::INTERRUPT, 0x100, None, 0)), Err(Invalid::Vector));
    assert_eq!(Interruption::from_register(register(Kind::NMI, 3, None, 0)), Err(Invalid::Vector));
    assert_eq!(Interruption::from_register(register(Kind::EXCEPTION, 32, None, 0)), Err(Invalid::Vector));
    assert_eq!(Interruption::from_register(register(Kind::EXCEPTION, 13, None, 0)), Err(Invalid::ErrorCode));
    assert_eq!(Interruption::from_register(register(Kind::EXCEPTION, 6, Some(0), 0)), Err(Invalid::ErrorCode));
    assert_eq!(Interruption::from_register(register(Kind::INTERRUPT, 0x30, Some(0), 0)), Err(Invalid::ErrorCode));
    assert_eq!(
        Interruption::from_register(register(Kind::SOFTWARE_INTERRUPT, 0x80, None, 0)),
        Err(Invalid::InstructionLength)
    );
}

#[test]
fn only_maskable_interrupts_wait_for_if_and_the_shadow() {
    let irq = Interruption::interrupt(0x20);
    assert!(irq.deliverable(true, false));
    assert!(!irq.deliverable(false, false));
    assert!(!irq.deliverable(true, true));
    let nmi = Interruption { kind: Kind::NMI, vector: 2, error_code: None, instruction_length: 0 };
    assert!(nmi.deliverable(false, true));
}

#[test]
fn svm_encoding_matches_eventinj() {
    let gp = Interruption { kind: Kind::EXCEPTION, vector: 13, error_code: Some(0x18), instruction_length: 0 };
    // Vector 13, type 3 (bits 8..10), EV (bit 11), V (bit 31), error code high.
    assert_eq!(gp.to_svm(true).into_bits(), 13 | 3 << 8 | 1 << 11 | 1 << 31 | 0x18 << 32);
    assert_eq!(gp.to_svm(false).into_bits(), 13 | 3 << 8 | 1 << 31);
    assert_eq!(Interruption::interrupt(0x30).to_svm(true).into_bits(), 0x30 | 1 << 31);
    let int3 = Interruption { kind: Kind::SOFTWARE_EXCEPTION, vector: 3, error_code: None, instruction_length: 1 };
    assert_eq!(int3.to_svm(true).event_type(), EventType::EXCEPTION);
    assert!(int3.is_software());
}

#[test]
fn vmx_encoding_matches_entry_interruption_information() {
    let pf = Interruption { kind: Kind::EXCEPTION, vector: 14, error_code: Some(2), instruction_length: 0 };
    assert_eq!(u32::from(pf.to_vmx(true)), 14 | 3 << 8 | 1 << 11 | 1 << 31);
    let int80 = Interruption { kind: Kind::SOFTWARE_INTERRUPT, vector: 0x80, error_code: None, instruction_length: 2 };
    assert_eq!(u32::from(int80.to_vmx(true)), 0x80 | 4 << 8 | 1 << 31);
}

#[test]
fn interrupted_hardware_events_are_delivered_again_and_software_ones_re_execute() {
    let irq = EventInjection::new().with_vector(0x30).with_valid(true);
    assert_eq!(Interruption::interrupted_svm(irq, None), Some(Interruption::interrupt(0x30)));
    let pf = EventInjection::new()
        .with_vector(14)
        .with_event_type(EventType::EXCEPTION)
        .with_error_code_valid(true)
        .with_error_code(4)
        .with_valid(true);
    assert_eq!(Interruption::interrupted_svm(pf, None).and_then(|i| i.error_code), Some(4));
    let int3 = EventInjection::new().with_vector(3).with_event_type(EventType::EXCEPTION).with_valid(true);
    assert_eq!(Interruption::interrupted_svm(int3, None), None);
    let soft = EventInjection::new().with_vector(0x80).with_event_type(EventType::SOFTWARE_INTERRUPT).with_valid(true);
    assert_eq!(Interruption::interrupted_svm(soft, None), None);
    assert_eq!(Interruption::interrupted_svm(EventInjection::new().with_vector(0x30), None), None);
    let virq = EventInjection::new().with_vector(0xed).with_event_type(EventType::EXCEPTION).with_valid(true);
    assert_eq!(
        Interruption::interrupted_svm(virq, None),
        Some(Interruption::interrupt(0xed)),
        "QEMU's V_IRQ cut short"
    );
    // An 8259 at 08h: its IRQ 5 is 13, reported (with an error code) as
    // an exception; the offered vector says it was the interrupt, and
    // IRQ 3 or 4 (11, 12) or a base of 0 (vectors 2, 3) likewise.
    for vector in [2, 3, 4, 8, 13] {
        let virq = EventInjection::new()
            .with_vector(vector)
            .with_event_type(EventType::EXCEPTION)
            .with_error_code_valid(vector >= 8)
            .with_valid(true);
        assert_eq!(Interruption::interrupted_svm(virq, Some(vector)), Some(Interruption::interrupt(vector)));
        let other = if vector >= 8 { Some(0) } else { None };
        let exception =
            Interruption::interrupted_svm(virq, Some(vector.wrapping_add(1))).map(|i| (i.kind, i.error_code));
        if matches!(vector, 3 | 4) {
            assert_eq!(exception, None, "INT3 and INTO run again");
        } else {
            assert_eq!(exception, Some((Kind::EXCEPTION, other)), "another vector offered: the exception");
        }
    }

    let nmi = InterruptionInfo::new().with_vector(2).with_interruption_type(InterruptionType::NMI).with_valid(true);
    assert_eq!(Interruption::interrupted_vmx(nmi, 0).map(|i| i.kind), Some(Kind::NMI));
    let gp = InterruptionInfo::new()
        .with_vector(13)
        .with_interruption_type(InterruptionType::HARDWARE_EXCEPTION)
        .with_deliver_error_code(true)
        .with_valid(true);
    assert_eq!(Interruption::interrupted_vmx(gp, 0x10).and_then(|i| i.error_code), Some(0x10));
    let soft = InterruptionInfo::new().with_vector(0x80).with_interruption_type(InterruptionType::SOFTWARE_INTERRUPT);
    assert_eq!(Interruption::interrupted_vmx(soft.with_valid(true), 0), None);
}
