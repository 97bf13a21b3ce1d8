use super::*;
use hvdef::{
    HvX64InstructionLength, HvX64InterceptMessageHeader, HvX64IoPortAccessInfo, HvX64IoPortInterceptMessage,
    HvX64SegmentRegister, HvX64VpExecutionState,
};

fn segment() -> HvX64SegmentRegister {
    hvdef::segment_register_from_value(0, 0)
}

fn header(rip: u64, len: u8, access: HvInterceptAccessType) -> HvX64InterceptMessageHeader {
    HvX64InterceptMessageHeader {
        vp_index: 0,
        instruction_length_and_cr8: HvX64InstructionLength::new().with_instruction_length(len),
        intercept_access_type: access,
        execution_state: HvX64VpExecutionState::new(),
        cs_segment: segment(),
        rip,
        rflags: 2,
    }
}

fn io(port: u16, write: bool, rax: u64, len: u8) -> HvMessage {
    let access = if write { HvInterceptAccessType::WRITE } else { HvInterceptAccessType::READ };
    let body = HvMessageBody::X64IoPortIntercept(HvX64IoPortInterceptMessage {
        header: header(0x1000, len, access),
        port_number: port,
        access_info: HvX64IoPortAccessInfo::new().with_access_size(1),
        instruction_byte_count: 0,
        reserved: 0,
        rax,
        instruction_bytes: [0; 16],
        ds_segment: segment(),
        es_segment: segment(),
        rcx: 0,
        rsi: 0,
        rdi: 0,
    });
    HvMessage::from_body(&body, 0)
}

fn updates(action: &Action) -> Vec<(HvRegisterName, u64)> {
    match action {
        Action::Resume(u) => u.to_vec(),
        Action::Stop(s) => panic!("unexpected stop {s:?}"),
    }
}

#[test]
fn uart_writes_are_output_and_skip_the_instruction() {
    let mut out = Vec::new();
    let action = handle(&io(UART_DATA, true, 0x1234_5641, 1), |b| out.push(b));
    assert_eq!(out, b"A");
    assert_eq!(updates(&action), [(HvRegisterName::RIP, 0x1001)]);
}

#[test]
fn line_status_says_ready_and_unknown_ports_read_ones() {
    let action = handle(&io(UART_LINE_STATUS, false, 0xaaaa_0000, 1), |_| panic!("no output"));
    assert_eq!(updates(&action), [(HvRegisterName::RIP, 0x1001), (HvRegisterName::RAX, 0xaaaa_0060)]);
    let action = handle(&io(0x1234, false, 0x5500, 1), |_| {});
    assert_eq!(updates(&action)[1], (HvRegisterName::RAX, 0x55ff));
}

#[test]
fn the_test_exit_port_stops_with_the_value() {
    let action = handle(&io(TEST_EXIT, true, 0x7, 2), |_| {});
    assert_eq!(action, Action::Stop(Stop::TestExit { value: 7 }));
}

#[test]
fn unknown_lengths_and_garbage_stop_the_vp_without_panicking() {
    assert!(matches!(handle(&io(UART_DATA, true, 0, 0), |_| {}), Action::Stop(Stop::Failed { .. })));
    assert!(matches!(handle(&HvMessage::empty(), |_| {}), Action::Stop(Stop::Failed { .. })));
}

#[test]
fn guest_console_assembles_bounded_lines() {
    let mut c = GuestConsole::default();
    let mut lines = Vec::new();
    for &b in b"hi\r\n\x01x\n" {
        if let Some(l) = c.byte(b) {
            lines.push(l.to_vec());
        }
    }
    assert_eq!(lines, [b"hi".to_vec(), b"?x".to_vec()]);
    let long: Vec<Vec<u8>> = (0..LINE_MAX + 5).filter_map(|_| c.byte(b'a')).map(|l| l.to_vec()).collect();
    assert_eq!(long.len(), 1);
    assert_eq!(long[0].len(), LINE_MAX);
}

#[test]
fn the_demo_guest_ends_with_its_message() {
    assert_eq!(&DEMO_GUEST[0x13..0x13 + 5], b"Hello");
    assert_eq!(*DEMO_GUEST.last().unwrap(), 0);
}

#[test]
fn the_bench_guest_loops_back_to_its_out() {
    // `loop` is E2 rel8, relative to the next instruction at offset 9: -3 is the OUT at 6.
    assert_eq!(BENCH_GUEST[6], 0xee);
    assert_eq!((BENCH_GUEST[7], BENCH_GUEST[8] as i8), (0xe2, -3));
    assert_eq!(u16::from_le_bytes([BENCH_GUEST[4], BENCH_GUEST[5]]), BENCH_EXITS);
}
