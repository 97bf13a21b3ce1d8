//! Port I/O: string I/O (`ins`/`outs`, with `rep`) over guest memory, on
//! the ports it knows itself (COM1's data and line status registers, the
//! test-exit port); single accesses go through the device bus
//! ([`crate::bus`]).

use crate::guest::{Guest, Paging, linear};
use tlfs::{HvInterceptAccessType, HvX64IoPortInterceptMessage};
use x86decode::{AddressSize, CpuMode, Reg, size_mask};

/// COM1's data register: bytes written here are guest console output.
pub const UART_DATA: u16 = 0x3f8;
/// The UART's line status register: the guest polls it before writing.
pub const UART_LINE_STATUS: u16 = 0x3fd;
/// Line status: transmitter empty, holding register empty.
pub const LINE_STATUS_READY: u8 = 0x60;
/// QEMU's `isa-debug-exit` convention: the run's status is `(value << 1) | 1`.
pub const TEST_EXIT: u16 = 0xf4;
/// Elements of a `rep ins`/`rep outs` done per intercept; the rest is left
/// in RCX and the instruction runs again (so a huge count cannot hold the
/// VID), as a CPU does when it takes an interrupt in the middle.
pub const REP_BUDGET: u64 = 4096;

/// What a port write means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortWrite {
    /// Nothing to do (ignored, or a byte sent to the console).
    Done,
    /// The guest wrote `value` to the test-exit port.
    TestExit(u32),
}

/// The value a port read returns, in the low `size` bytes: the UART says it
/// is ready to send, everything else reads all ones.
pub const fn port_read(port: u16, size: u8) -> u64 {
    match port {
        UART_LINE_STATUS => LINE_STATUS_READY as u64,
        UART_DATA => 0,
        _ => size_mask(size),
    }
}

/// A port write of the low `size` bytes of `value`; console bytes go to
/// `console`.
pub fn port_write(port: u16, size: u8, value: u64, console: &mut impl FnMut(u8)) -> PortWrite {
    let value = value & size_mask(size);
    match port {
        UART_DATA => {
            console(value as u8);
            PortWrite::Done
        }
        TEST_EXIT => PortWrite::TestExit(value as u32),
        _ => PortWrite::Done,
    }
}

/// The registers after a string I/O intercept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringIo {
    /// RCX (only with `rep`), RSI (`outs`) or RDI (`ins`).
    pub rcx: Option<u64>,
    pub rsi: Option<u64>,
    pub rdi: Option<u64>,
    /// The instruction completed: RIP moves on.
    pub complete: bool,
    /// The guest wrote the test-exit port (an `outs` to it).
    pub test_exit: Option<u32>,
}

/// The address size of string I/O: the mode's default (an address-size
/// prefix is not looked for: the kernel sends no instruction bytes).
pub const fn address_size(mode: CpuMode) -> AddressSize {
    match mode {
        CpuMode::Long64 => AddressSize::Bits64,
        CpuMode::Protected32 => AddressSize::Bits32,
        CpuMode::Real16 | CpuMode::Protected16 => AddressSize::Bits16,
    }
}

/// Runs `ins`/`outs` (with `rep`: RCX times, at most [`REP_BUDGET`] per
/// intercept) over guest memory: `outs` reads DS:rSI, `ins` writes ES:rDI,
/// stepping by the element size backwards when RFLAGS.DF is set. Memory
/// that is not RAM reads all ones and drops writes. The segment of `outs`
/// is taken as DS (an override is not seen).
pub fn string_io(
    guest: &mut impl Guest,
    io: &HvX64IoPortInterceptMessage,
    mode: CpuMode,
    console: &mut impl FnMut(u8),
) -> StringIo {
    let size = io.access_info.access_size().clamp(1, 4);
    let write = io.header.intercept_access_type == HvInterceptAccessType::WRITE;
    let rep = io.access_info.rep_prefix();
    let asize = address_size(mode);
    let mask = asize.mask();
    let paging = Paging::of(&io.header);
    let step = if io.header.rflags & crate::guest::rflags::DF != 0 {
        (u64::from(size)).wrapping_neg()
    } else {
        u64::from(size)
    };
    let count = if rep { io.rcx & mask } else { 1 };
    let todo = count.min(REP_BUDGET);
    let base = |seg: &tlfs::HvX64SegmentRegister| if mode == CpuMode::Long64 { 0 } else { seg.base };
    let (ds, es) = (base(&io.ds_segment), base(&io.es_segment));
    let (mut rsi, mut rdi) = (io.rsi & mask, io.rdi & mask);
    let mut test_exit = None;
    let mut done = 0;
    while done < todo {
        done += 1;
        if write {
            let mut b = [0xffu8; 4];
            let n = paging.read(guest, linear(mode, ds, rsi), &mut b[..usize::from(size)]);
            b[n..].fill(0xff);
            if let PortWrite::TestExit(v) = port_write(io.port_number, size, u64::from(u32::from_le_bytes(b)), console)
            {
                test_exit = Some(v);
            }
            rsi = rsi.wrapping_add(step) & mask;
        } else {
            let value = port_read(io.port_number, size) as u32;
            let _ = paging.write(guest, linear(mode, es, rdi), &value.to_le_bytes()[..usize::from(size)]);
            rdi = rdi.wrapping_add(step) & mask;
        }
        if test_exit.is_some() {
            break;
        }
    }
    let merge = |full: u64, value: u64| Reg::new(x86decode::Gpr::Rax).set(full, value, asize.bytes());
    StringIo {
        rcx: rep.then(|| merge(io.rcx, (io.rcx & mask).wrapping_sub(done) & mask)),
        rsi: write.then(|| merge(io.rsi, rsi)),
        rdi: (!write).then(|| merge(io.rdi, rdi)),
        complete: done >= count,
        test_exit,
    }
}
