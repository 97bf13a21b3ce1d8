use super::*;
use core::mem::offset_of;

/// A 64-bit code segment as a VMCS holds it: type 0xB, S, P, L, G.
fn code64() -> HvX64SegmentRegister {
    HvX64SegmentRegister {
        base: 0,
        limit: 0xffff_ffff,
        selector: 0x08,
        attributes: HvX64SegmentAttributes::new()
            .with_segment_type(0xb)
            .with_non_system_segment(true)
            .with_present(true)
            .with_long(true)
            .with_granularity(true),
    }
}

fn data_segment(selector: u16) -> HvX64SegmentRegister {
    HvX64SegmentRegister {
        base: 0x1000 * u64::from(selector),
        limit: 0xffff_ffff,
        selector,
        attributes: HvX64SegmentAttributes::new()
            .with_segment_type(0x3)
            .with_non_system_segment(true)
            .with_present(true)
            .with_default(true)
            .with_granularity(true),
    }
}

fn header(vp_index: u32, length: u8, access: HvInterceptAccessType) -> HvX64InterceptMessageHeader {
    HvX64InterceptMessageHeader {
        vp_index,
        instruction_length_and_cr8: HvX64InstructionLength::new().with_instruction_length(length),
        intercept_access_type: access,
        execution_state: HvX64VpExecutionState::new().with_cr0_pe(true).with_efer_lma(true),
        cs_segment: code64(),
        rip: 0xffff_8000_0010_2030,
        rflags: 0x202,
    }
}

fn io_port() -> HvX64IoPortInterceptMessage {
    let mut message = HvX64IoPortInterceptMessage {
        header: header(1, 1, HvInterceptAccessType::WRITE),
        port_number: 0x3f8,
        access_info: HvX64IoPortAccessInfo::new().with_access_size(1),
        instruction_byte_count: 0,
        reserved: 0,
        rax: 0x41,
        instruction_bytes: [0; 16],
        ds_segment: data_segment(0x10),
        es_segment: data_segment(0x18),
        rcx: 7,
        rsi: 0x2000,
        rdi: 0x3000,
    };
    message.set_instruction(&[0xee]);
    message
}

fn memory() -> HvX64MemoryInterceptMessage {
    let mut message = HvX64MemoryInterceptMessage {
        header: header(2, 3, HvInterceptAccessType::READ),
        cache_type: HvCacheType::X64_WRITE_BACK,
        instruction_byte_count: 0,
        memory_access_info: HvX64MemoryAccessInfo::new().with_gva_valid(true),
        tpr_priority: 0,
        reserved: 0,
        guest_virtual_address: 0xffff_8000_fee0_0030,
        guest_physical_address: 0xfee0_0030,
        instruction_bytes: [0; 16],
    };
    message.set_instruction(&[0x8b, 0x07, 0x90]);
    message
}

fn exception() -> HvX64ExceptionInterceptMessage {
    let mut message = HvX64ExceptionInterceptMessage::new_zeroed();
    message.header = header(3, 0, HvInterceptAccessType::EXECUTE);
    message.exception_vector = 14;
    message.exception_info = HvX64ExceptionInfo::new().with_error_code_valid(true);
    message.error_code = 0b10;
    message.exception_parameter = 0xdead_b000;
    message.ds_segment = data_segment(0x10);
    message.ss_segment = data_segment(0x18);
    message.rax = 1;
    message.r15 = 15;
    message.set_instruction(&[0x48, 0x89, 0x07]);
    message
}

/// One body of every type this crate decodes.
fn every_body() -> Vec<HvMessageBody> {
    vec![
        HvMessageBody::UnmappedGpa(memory()),
        HvMessageBody::GpaIntercept(HvX64MemoryInterceptMessage {
            memory_access_info: HvX64MemoryAccessInfo::new(),
            ..memory()
        }),
        HvMessageBody::TimerExpired(HvTimerMessagePayload {
            timer_index: 2,
            reserved: 0,
            expiration_time: 1_000_000,
            delivery_time: 1_000_123,
        }),
        HvMessageBody::InvalidVpRegisterValue(HvInvalidVpRegisterMessage { vp_index: 4, reserved: 0 }),
        HvMessageBody::UnrecoverableException(HvX64UnrecoverableExceptionMessage {
            header: header(5, 0, HvInterceptAccessType::EXECUTE),
        }),
        HvMessageBody::UnsupportedFeature(HvX64UnsupportedFeatureMessage {
            vp_index: 6,
            feature_code: HvUnsupportedFeatureCode::TASK_SWITCH_TSS,
            feature_parameter: 0x28,
        }),
        HvMessageBody::X64IoPortIntercept(io_port()),
        HvMessageBody::MsrIntercept(HvX64MsrInterceptMessage {
            header: header(7, 2, HvInterceptAccessType::WRITE),
            msr_number: 0x4000_0001,
            reserved: 0,
            rdx: 0,
            rax: 0x1001,
        }),
        HvMessageBody::X64CpuidIntercept(HvX64CpuidInterceptMessage {
            header: header(8, 2, HvInterceptAccessType::EXECUTE),
            rax: 0x4000_0000,
            rcx: 0,
            rdx: 0,
            rbx: 0,
            default_result_rax: 0x4000_0006,
            default_result_rcx: 0x7263_694d,
            default_result_rdx: 0x7648_2074,
            default_result_rbx: 0x6f73_6f72,
        }),
        HvMessageBody::ExceptionIntercept(exception()),
        HvMessageBody::X64ApicEoi(HvX64ApicEoiMessage { vp_index: 9, interrupt_vector: 0x31 }),
        HvMessageBody::X64Halt(HvX64HaltMessage { header: header(10, 1, HvInterceptAccessType::EXECUTE) }),
    ]
}

#[test]
fn sizes_match_the_layouts() {
    assert_eq!(size_of::<HvMessageHeader>(), 16);
    assert_eq!(size_of::<HvMessage>(), 256);
    assert_eq!(size_of::<HvX64SegmentRegister>(), 16);
    assert_eq!(size_of::<HvX64InterceptMessageHeader>(), 0x28);
    assert_eq!(size_of::<HvX64IoPortInterceptMessage>(), 0x80);
    assert_eq!(size_of::<HvX64MemoryInterceptMessage>(), 0x50);
    assert_eq!(size_of::<HvX64CpuidInterceptMessage>(), 0x68);
    assert_eq!(size_of::<HvX64MsrInterceptMessage>(), 0x40);
    assert_eq!(size_of::<HvX64ExceptionInterceptMessage>(), 0xf0);
    assert_eq!(size_of::<HvX64UnrecoverableExceptionMessage>(), 0x28);
    assert_eq!(size_of::<HvX64HaltMessage>(), 0x28);
    assert_eq!(size_of::<HvInvalidVpRegisterMessage>(), 8);
    assert_eq!(size_of::<HvX64UnsupportedFeatureMessage>(), 16);
    assert_eq!(size_of::<HvX64ApicEoiMessage>(), 8);
    assert_eq!(size_of::<HvTimerMessagePayload>(), 24);
    for (size, expected) in [
        (size_of::<HvMessageFlags>(), 1),
        (size_of::<HvInterceptAccessType>(), 1),
        (size_of::<HvX64InstructionLength>(), 1),
        (size_of::<HvX64VpExecutionState>(), 2),
        (size_of::<HvX64SegmentAttributes>(), 2),
        (size_of::<HvX64IoPortAccessInfo>(), 1),
        (size_of::<HvX64MemoryAccessInfo>(), 1),
        (size_of::<HvX64ExceptionInfo>(), 1),
        (size_of::<HvCacheType>(), 4),
        (size_of::<HvMessageType>(), 4),
    ] {
        assert_eq!(size, expected);
    }
}

#[test]
fn message_header_offsets() {
    assert_eq!(offset_of!(HvMessageHeader, message_type), 0);
    assert_eq!(offset_of!(HvMessageHeader, payload_size), 4);
    assert_eq!(offset_of!(HvMessageHeader, message_flags), 5);
    assert_eq!(offset_of!(HvMessageHeader, reserved), 6);
    assert_eq!(offset_of!(HvMessageHeader, origination_id), 8);
    assert_eq!(offset_of!(HvMessage, payload), 16);
}

#[test]
fn segment_register_offsets_and_attributes() {
    assert_eq!(offset_of!(HvX64SegmentRegister, base), 0);
    assert_eq!(offset_of!(HvX64SegmentRegister, limit), 8);
    assert_eq!(offset_of!(HvX64SegmentRegister, selector), 12);
    assert_eq!(offset_of!(HvX64SegmentRegister, attributes), 14);
    // The usual VMX access rights of a 64-bit ring-0 code segment.
    assert_eq!(code64().attributes.into_bits(), 0xa09b);
    let a = HvX64SegmentAttributes::new().with_descriptor_privilege_level(3).with_available(true);
    assert_eq!(a.into_bits(), 0x1060);
    assert_eq!(HvX64SegmentAttributes::new().with_default(true).into_bits(), 0x4000);
}

#[test]
fn intercept_header_offsets() {
    type H = HvX64InterceptMessageHeader;
    assert_eq!(offset_of!(H, vp_index), 0x00);
    assert_eq!(offset_of!(H, instruction_length_and_cr8), 0x04);
    assert_eq!(offset_of!(H, intercept_access_type), 0x05);
    assert_eq!(offset_of!(H, execution_state), 0x06);
    assert_eq!(offset_of!(H, cs_segment), 0x08);
    assert_eq!(offset_of!(H, rip), 0x18);
    assert_eq!(offset_of!(H, rflags), 0x20);
}

#[test]
fn io_port_offsets() {
    type M = HvX64IoPortInterceptMessage;
    assert_eq!(offset_of!(M, header), 0x00);
    assert_eq!(offset_of!(M, port_number), 0x28);
    assert_eq!(offset_of!(M, access_info), 0x2a);
    assert_eq!(offset_of!(M, instruction_byte_count), 0x2b);
    assert_eq!(offset_of!(M, reserved), 0x2c);
    assert_eq!(offset_of!(M, rax), 0x30);
    assert_eq!(offset_of!(M, instruction_bytes), 0x38);
    assert_eq!(offset_of!(M, ds_segment), 0x48);
    assert_eq!(offset_of!(M, es_segment), 0x58);
    assert_eq!(offset_of!(M, rcx), 0x68);
    assert_eq!(offset_of!(M, rsi), 0x70);
    assert_eq!(offset_of!(M, rdi), 0x78);
}

#[test]
fn memory_offsets() {
    type M = HvX64MemoryInterceptMessage;
    assert_eq!(offset_of!(M, cache_type), 0x28);
    assert_eq!(offset_of!(M, instruction_byte_count), 0x2c);
    assert_eq!(offset_of!(M, memory_access_info), 0x2d);
    assert_eq!(offset_of!(M, tpr_priority), 0x2e);
    assert_eq!(offset_of!(M, reserved), 0x2f);
    assert_eq!(offset_of!(M, guest_virtual_address), 0x30);
    assert_eq!(offset_of!(M, guest_physical_address), 0x38);
    assert_eq!(offset_of!(M, instruction_bytes), 0x40);
}

#[test]
fn cpuid_and_msr_offsets() {
    type C = HvX64CpuidInterceptMessage;
    assert_eq!(offset_of!(C, rax), 0x28);
    assert_eq!(offset_of!(C, rcx), 0x30);
    assert_eq!(offset_of!(C, rdx), 0x38);
    assert_eq!(offset_of!(C, rbx), 0x40);
    assert_eq!(offset_of!(C, default_result_rax), 0x48);
    assert_eq!(offset_of!(C, default_result_rcx), 0x50);
    assert_eq!(offset_of!(C, default_result_rdx), 0x58);
    assert_eq!(offset_of!(C, default_result_rbx), 0x60);
    type M = HvX64MsrInterceptMessage;
    assert_eq!(offset_of!(M, msr_number), 0x28);
    assert_eq!(offset_of!(M, reserved), 0x2c);
    assert_eq!(offset_of!(M, rdx), 0x30);
    assert_eq!(offset_of!(M, rax), 0x38);
}

#[test]
fn exception_offsets() {
    type E = HvX64ExceptionInterceptMessage;
    assert_eq!(offset_of!(E, exception_vector), 0x28);
    assert_eq!(offset_of!(E, exception_info), 0x2a);
    assert_eq!(offset_of!(E, instruction_byte_count), 0x2b);
    assert_eq!(offset_of!(E, error_code), 0x2c);
    assert_eq!(offset_of!(E, exception_parameter), 0x30);
    assert_eq!(offset_of!(E, reserved), 0x38);
    assert_eq!(offset_of!(E, instruction_bytes), 0x40);
    assert_eq!(offset_of!(E, ds_segment), 0x50);
    assert_eq!(offset_of!(E, ss_segment), 0x60);
    assert_eq!(offset_of!(E, rax), 0x70);
    assert_eq!(offset_of!(E, rsp), 0x90);
    assert_eq!(offset_of!(E, r8), 0xb0);
    assert_eq!(offset_of!(E, r15), 0xe8);
}

#[test]
fn small_payload_offsets() {
    // TLFS 13.3.1 gives the timer payload's offsets within the whole message.
    let at = |field: usize| size_of::<HvMessageHeader>() + field;
    assert_eq!(at(offset_of!(HvTimerMessagePayload, timer_index)), 16);
    assert_eq!(at(offset_of!(HvTimerMessagePayload, reserved)), 20);
    assert_eq!(at(offset_of!(HvTimerMessagePayload, expiration_time)), 24);
    assert_eq!(at(offset_of!(HvTimerMessagePayload, delivery_time)), 32);
    assert_eq!(offset_of!(HvX64UnsupportedFeatureMessage, feature_code), 4);
    assert_eq!(offset_of!(HvX64UnsupportedFeatureMessage, feature_parameter), 8);
    assert_eq!(offset_of!(HvX64ApicEoiMessage, interrupt_vector), 4);
}

#[test]
fn bitfields_follow_the_spec_drawings() {
    // TLFS 13.2.3.
    let s = HvX64VpExecutionState::new;
    assert_eq!(s().with_cpl(3).into_bits(), 0x0003);
    assert_eq!(s().with_cr0_pe(true).into_bits(), 0x0004);
    assert_eq!(s().with_cr0_am(true).into_bits(), 0x0008);
    assert_eq!(s().with_efer_lma(true).into_bits(), 0x0010);
    assert_eq!(s().with_debug_active(true).into_bits(), 0x0020);
    assert_eq!(s().with_interruption_pending(true).into_bits(), 0x0040);
    assert_eq!(s().with_vtl(1).into_bits(), 0x0080);
    assert_eq!(s().with_vtl(0xf).into_bits(), 0x0780);
    assert_eq!(s().with_enclave_mode(true).into_bits(), 0x0800);
    assert_eq!(s().with_interrupt_shadow(true).into_bits(), 0x1000);
    assert_eq!(s().with_virtualization_fault_active(true).into_bits(), 0x2000);
    assert_eq!(s().with_reserved(3).into_bits(), 0xc000);
    // TLFS 13.2.4: 001b, 010b, 100b, then StringOp and RepPrefix.
    let io = HvX64IoPortAccessInfo::new;
    assert_eq!(io().with_access_size(4).into_bits(), 0x04);
    assert_eq!(io().with_string_op(true).into_bits(), 0x08);
    assert_eq!(io().with_rep_prefix(true).into_bits(), 0x10);
    for (bits, valid) in
        [(0x01, true), (0x02, true), (0x04, true), (0x1a, true), (0x03, false), (0x00, false), (0x21, false)]
    {
        assert_eq!(HvX64IoPortAccessInfo::from_bits(bits).is_valid(), valid, "{bits:#x}");
    }
    // TLFS 13.2.5, 13.2.6, 11.10.3.
    assert_eq!(HvX64ExceptionInfo::new().with_error_code_valid(true).into_bits(), 1);
    assert_eq!(HvX64ExceptionInfo::new().with_software_exception(true).into_bits(), 2);
    assert_eq!(HvX64MemoryAccessInfo::new().with_gva_valid(true).into_bits(), 1);
    assert_eq!(HvX64MemoryAccessInfo::new().with_tlb_locked_no_overlay(true).into_bits(), 8);
    assert_eq!(HvMessageFlags::new().with_message_pending(true).into_bits(), 1);
    let length = HvX64InstructionLength::new().with_instruction_length(15).with_cr8(2);
    assert_eq!(length.into_bits(), 0x2f);
}

#[test]
fn message_types_have_their_tlfs_values() {
    let named = [
        (HvMessageType::NONE, 0x0000_0000),
        (HvMessageType::UNMAPPED_GPA, 0x8000_0000),
        (HvMessageType::GPA_INTERCEPT, 0x8000_0001),
        (HvMessageType::TIMER_EXPIRED, 0x8000_0010),
        (HvMessageType::INVALID_VP_REGISTER_VALUE, 0x8000_0020),
        (HvMessageType::UNRECOVERABLE_EXCEPTION, 0x8000_0021),
        (HvMessageType::UNSUPPORTED_FEATURE, 0x8000_0022),
        (HvMessageType::TLB_PAGE_SIZE_MISMATCH, 0x8000_0023),
        (HvMessageType::EVENT_LOG_BUFFERS_COMPLETE, 0x8000_0040),
        (HvMessageType::HYPERCALL_INTERCEPT, 0x8000_0050),
        (HvMessageType::X64_IO_PORT_INTERCEPT, 0x8001_0000),
        (HvMessageType::MSR_INTERCEPT, 0x8001_0001),
        (HvMessageType::X64_CPUID_INTERCEPT, 0x8001_0002),
        (HvMessageType::EXCEPTION_INTERCEPT, 0x8001_0003),
        (HvMessageType::X64_APIC_EOI, 0x8001_0004),
        (HvMessageType::X64_LEGACY_FP_ERROR, 0x8001_0005),
        (HvMessageType::REGISTER_INTERCEPT, 0x8001_0006),
        (HvMessageType::X64_HALT, 0x8001_0007),
    ];
    for (t, value) in named {
        assert_eq!(t.0, value);
        assert!(t.name().is_some());
    }
    for body in every_body() {
        let t = body.message_type();
        assert_ne!(t.0 & HvMessageType::HYPERVISOR_MASK, 0, "{t:?}");
    }
    assert_eq!(HvInterceptAccessType::EXECUTE.0, 2);
    assert_eq!(HvCacheType::X64_WRITE_BACK.0, 6);
}

#[test]
fn a_built_message_has_the_expected_bytes() {
    let message = HvMessage::from_body(&HvMessageBody::X64IoPortIntercept(io_port()), 0x42);
    let words = message.to_words();
    // MessageType | PayloadSize << 32 | MessageFlags << 40 | Reserved << 48.
    assert_eq!(words[0], 0x8001_0000 | (0x80 << 32));
    assert_eq!(words[1], 0x42);
    assert_eq!(message.header.sender(), HvPartitionId(0x42));
    let bytes = message.as_bytes();
    assert_eq!(bytes.len(), 256);
    // Payload byte 0x28: the port; 0x2a: access info; 0x2b: one instruction byte.
    assert_eq!(&bytes[16 + 0x28..16 + 0x2c], &[0xf8, 0x03, 0x01, 0x01]);
    assert_eq!(bytes[16 + 0x38], 0xee);
    // Nothing is written past the payload.
    assert!(bytes[16 + 0x80..].iter().all(|&b| b == 0));
    assert_eq!(message.payload_bytes().len(), 0x80);
    assert_eq!(io_port().instruction(), &[0xee]);
    assert_eq!(io_port().header.instruction_length(), 1);
}

#[test]
fn every_body_round_trips_through_words_and_bytes() {
    for body in every_body() {
        let message = HvMessage::from_body(&body, 7);
        assert_eq!(message.header.message_type, body.message_type());
        assert_eq!(message.header.message_flags, HvMessageFlags::new());
        assert_eq!(message.parse(), Ok(body));

        let words = message.to_words();
        assert_eq!(words.len(), HV_MESSAGE_WORDS);
        let back = HvMessage::from_words(&words).unwrap();
        assert_eq!(back, message);
        assert_eq!(back.parse(), Ok(body));
        assert_eq!(HvMessage::from_word_array(words), message);
        assert_eq!(HvMessage::ref_from_words(&words), Ok(&message));
        let short = HvMessageError::Length { expected: HV_MESSAGE_WORDS, actual: HV_MESSAGE_WORDS - 1 };
        assert_eq!(HvMessage::ref_from_words(&words[1..]), Err(short));

        let from_bytes = HvMessage::from_bytes(message.as_bytes()).unwrap();
        assert_eq!(from_bytes.parse(), Ok(body));

        if let Some(header) = body.intercept_header() {
            assert_eq!(body.vp_index(), Some(header.vp_index));
        }
    }
    assert_eq!(every_body()[2].vp_index(), None); // timers name no VP
    assert_eq!(every_body()[10].vp_index(), Some(9));
}

#[test]
fn short_inputs_are_refused() {
    let words = HvMessage::from_body(&every_body()[0], 1).to_words();
    for n in 0..HV_MESSAGE_WORDS {
        assert_eq!(
            HvMessage::from_words(&words[..n]),
            Err(HvMessageError::Length { expected: HV_MESSAGE_WORDS, actual: n })
        );
    }
    let long = [0u64; HV_MESSAGE_WORDS + 1];
    assert_eq!(HvMessage::from_words(&long), Err(HvMessageError::Length { expected: 32, actual: 33 }));
    let bytes = [0u8; 257];
    for n in [0, 1, 16, 255, 257] {
        assert_eq!(HvMessage::from_bytes(&bytes[..n]), Err(HvMessageError::Length { expected: 256, actual: n }));
    }
    // An unaligned but whole message is fine.
    assert!(HvMessage::from_bytes(&bytes[1..]).is_ok());
}

#[test]
fn short_payloads_are_refused() {
    for body in every_body() {
        let mut message = HvMessage::from_body(&body, 1);
        let expected = usize::from(message.header.payload_size);
        for size in 0..expected {
            message.header.payload_size = u8::try_from(size).unwrap();
            assert_eq!(
                message.parse(),
                Err(HvMessageError::PayloadTooShort { message_type: body.message_type(), expected, actual: size })
            );
        }
        // Longer claims up to the maximum are accepted (a sender may append fields)...
        message.header.payload_size = 240;
        assert_eq!(message.parse(), Ok(body));
        // ...but not past the end of the slot.
        for size in 241..=255 {
            message.header.payload_size = size;
            assert_eq!(message.parse(), Err(HvMessageError::PayloadTooLong(usize::from(size))));
            assert_eq!(message.payload_bytes().len(), 240);
        }
    }
}

#[test]
fn unknown_and_undecoded_types_are_refused() {
    let mut message = HvMessage::from_body(&HvMessageBody::X64IoPortIntercept(io_port()), 1);
    for t in [
        HvMessageType::NONE,
        HvMessageType::TLB_PAGE_SIZE_MISMATCH,
        HvMessageType::EVENT_LOG_BUFFERS_COMPLETE,
        HvMessageType::X64_LEGACY_FP_ERROR,
        HvMessageType::REGISTER_INTERCEPT,
        HvMessageType(0x8001_0008),
        HvMessageType(1),
        HvMessageType(u32::MAX),
    ] {
        message.header.message_type = t;
        assert_eq!(message.parse(), Err(HvMessageError::UnsupportedType(t)));
    }
    // A hypercall intercept is decoded, so a short one is refused as short.
    message.header.message_type = HvMessageType::HYPERCALL_INTERCEPT;
    assert!(matches!(message.parse(), Err(HvMessageError::PayloadTooShort { expected: 0xc8, .. })));
    assert!(HvMessage::empty().is_empty());
    assert_eq!(HvMessage::empty().parse(), Err(HvMessageError::UnsupportedType(HvMessageType::NONE)));
}

#[test]
fn garbage_never_panics_and_is_judged_by_type_and_size() {
    let known: Vec<HvMessageType> = every_body().iter().map(HvMessageBody::message_type).collect();
    let layout_size = |t: HvMessageType| {
        every_body()
            .into_iter()
            .find(|b| b.message_type() == t)
            .map(|b| HvMessage::from_body(&b, 0).header.payload_size)
    };
    // Deterministic garbage.
    let mut garbage = fastrand::Rng::with_seed(0x1234_5678_9abc_def1);
    let mut decoded = 0;
    for round in 0..20_000 {
        let mut words = [0u64; HV_MESSAGE_WORDS];
        for word in &mut words {
            *word = garbage.u64(..);
        }
        // Half the time, a known type, so the payload checks are exercised too.
        if round % 2 == 0 {
            let t = known[garbage.usize(..12)];
            words[0] = (words[0] & !0xffff_ffff) | u64::from(t.0);
        }
        let message = HvMessage::from_words(&words).unwrap();
        assert_eq!(message.to_words(), words);
        let t = message.header.message_type;
        let size = message.header.payload_size;
        match message.parse() {
            Ok(body) => {
                decoded += 1;
                assert_eq!(body.message_type(), t);
                let needed = layout_size(t).unwrap();
                assert!(size >= needed && usize::from(size) <= 240);
                // What was decoded re-encodes to the same leading payload bytes.
                let again = HvMessage::from_body(&body, message.header.origination_id);
                let n = usize::from(needed);
                assert_eq!(again.payload.as_bytes()[..n], message.payload.as_bytes()[..n]);
            }
            Err(HvMessageError::UnsupportedType(u)) => {
                assert_eq!(u, t);
                assert!(!known.contains(&t));
            }
            Err(HvMessageError::PayloadTooShort { message_type, expected, actual }) => {
                assert_eq!(message_type, t);
                assert!(actual < expected);
            }
            Err(HvMessageError::PayloadTooLong(n)) => assert!(n > 240),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(decoded > 100, "only {decoded} decoded");
}

#[test]
fn raw_messages() {
    let message = HvMessage::from_raw(HvMessageType(0x42), 0x00ab_cdef, b"hello").unwrap();
    assert_eq!(message.payload_bytes(), b"hello");
    assert_eq!(message.header.port().map(HvPortId::get), Some(0x00ab_cdef));
    assert_eq!(message.parse(), Err(HvMessageError::UnsupportedType(HvMessageType(0x42))));
    assert!(HvMessage::from_raw(HvMessageType(0x42), 0, &[0xff; 240]).is_ok());
    assert_eq!(HvMessage::from_raw(HvMessageType(0x42), 0, &[0; 241]), Err(HvMessageError::PayloadTooLong(241)));
    assert_eq!(HvMessage::from_raw(HvMessageType(0x42), 0, &[0; 300]), Err(HvMessageError::PayloadTooLong(300)));
    // A port ID with reserved bits set, or wider than 32 bits, is no port.
    let mut header = message.header;
    header.origination_id = 0x0100_0000;
    assert_eq!(header.port(), None);
    header.origination_id = 1 << 32;
    assert_eq!(header.port(), None);
}

#[test]
fn instruction_bytes_are_bounded() {
    let mut m = exception();
    assert_eq!(m.instruction(), &[0x48, 0x89, 0x07]);
    m.set_instruction(&[0x90; 20]);
    assert_eq!(m.instruction_byte_count, 16);
    assert_eq!(m.instruction(), &[0x90; 16]);
    // A count the hypervisor should never send is clamped, not trusted.
    m.instruction_byte_count = 200;
    assert_eq!(m.instruction().len(), 16);
    m.set_instruction(&[]);
    assert_eq!(m.instruction(), &[] as &[u8]);
    assert_eq!(m.instruction_bytes, [0; 16]);
}
