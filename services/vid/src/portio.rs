//! String I/O (`ins`/`outs`, with `rep`) over guest memory: each element
//! is one port access that the caller routes through the device bus
//! ([`crate::bus`]), like a single `in`/`out`.

use core::ops::ControlFlow;

use crate::guest::{Guest, Paging, linear};
use tlfs::{HvInterceptAccessType, HvX64IoPortInterceptMessage};
use x86decode::{AddressSize, CpuMode, Reg};

/// QEMU's `isa-debug-exit` convention: the run's status is `(value << 1) | 1`.
pub const TEST_EXIT: u16 = 0xf4;
/// Elements of a `rep ins`/`rep outs` done per intercept; the rest is left
/// in RCX and the instruction runs again (so a huge count cannot hold the
/// VID), as a CPU does when it takes an interrupt in the middle.
pub const REP_BUDGET: u64 = 4096;

/// One port access of an intercept (of its port and size), or one
/// element of a string instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    /// `in`, or `ins`: the value read is stored at ES:rDI.
    Read,
    /// `out` of this value, or `outs` of the value loaded from DS:rSI.
    Write(u64),
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
/// is taken as DS (an override is not seen). `port` does each element's
/// access (a read's value is used, a write's ignored); a `Break` stops the
/// instruction after that element (the guest ended its run) and is
/// returned.
pub fn string_io<B>(
    guest: &mut impl Guest,
    io: &HvX64IoPortInterceptMessage,
    mode: CpuMode,
    mut port: impl FnMut(Element) -> ControlFlow<B, u64>,
) -> (StringIo, Option<B>) {
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
    let mut stopped = None;
    let mut done = 0;
    while done < todo {
        done += 1;
        let outcome = if write {
            let mut b = [0xffu8; 4];
            let n = paging.read(guest, linear(mode, ds, rsi), &mut b[..usize::from(size)]);
            b[n..].fill(0xff);
            rsi = rsi.wrapping_add(step) & mask;
            port(Element::Write(u64::from(u32::from_le_bytes(b))))
        } else {
            let outcome = port(Element::Read);
            if let ControlFlow::Continue(value) = outcome {
                let _ = paging.write(guest, linear(mode, es, rdi), &(value as u32).to_le_bytes()[..usize::from(size)]);
            }
            rdi = rdi.wrapping_add(step) & mask;
            outcome
        };
        if let ControlFlow::Break(b) = outcome {
            stopped = Some(b);
            break;
        }
    }
    let merge = |full: u64, value: u64| Reg::new(x86decode::Gpr::Rax).set(full, value, asize.bytes());
    let regs = StringIo {
        rcx: rep.then(|| merge(io.rcx, (io.rcx & mask).wrapping_sub(done) & mask)),
        rsi: write.then(|| merge(io.rsi, rsi)),
        rdi: (!write).then(|| merge(io.rdi, rdi)),
        complete: done >= count,
    };
    (regs, stopped)
}
