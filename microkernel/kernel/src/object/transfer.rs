//! Moving a message between two threads at a rendezvous: the four register
//! words, the rest of the words through the IPC buffers, and capabilities
//! when the sender's capability allows granting.

use super::{Task, Thread};
use crate::arch::idt::TrapFrame;
use crate::arch::memory;
use abi::{CapSlot, ErrorCode, IpcBuffer, MAX_MESSAGE_WORDS, MAX_TRANSFER_CAPS, MessageInfo, REGISTER_WORDS};
use core::mem::offset_of;
use kerncore::cap::CapTable;
use kerncore::ipc::{Kind, Message, Transfer};
use kerncore::sched::ThreadId;

pub struct Xfer<'k, const N: usize> {
    pub threads: &'k mut [Thread],
    pub tasks: &'k [Option<Task>],
    pub caps: &'k mut CapTable<N>,
    pub vcpus: &'k mut [Option<super::vm::Vcpu>],
}

/// Sets the caller's reply to `words`: the first four in registers, the
/// rest in its IPC buffer.
pub fn reply_words(k: &mut super::Kernel, t: ThreadId, words: &[u64]) -> Result<MessageInfo, ErrorCode> {
    if words.len() > MAX_MESSAGE_WORDS {
        return Err(ErrorCode::MESSAGE_TOO_LONG);
    }
    let thread = &mut k.threads[usize::from(t.0)];
    if let Some(rest) = words.get(REGISTER_WORDS..).filter(|rest| !rest.is_empty()) {
        let (_, phys) = thread.ipc_buffer.ok_or(ErrorCode::MESSAGE_TOO_LONG)?;
        memory::write_phys_words(buffer_words(phys), rest);
    }
    let mut head = [0; REGISTER_WORDS];
    let n = words.len().min(REGISTER_WORDS);
    head[..n].copy_from_slice(&words[..n]);
    set_registers(&mut thread.context, head);
    Ok(MessageInfo::new().with_length(words.len() as u8))
}

/// The message registers of a saved context.
pub fn registers(frame: &TrapFrame) -> [u64; REGISTER_WORDS] {
    [frame.rdx, frame.r8, frame.r9, frame.r10]
}

pub fn set_registers(frame: &mut TrapFrame, words: [u64; REGISTER_WORDS]) {
    [frame.rdx, frame.r8, frame.r9, frame.r10] = words;
}

/// Where the words after the registers' start in the IPC buffer at `phys`.
fn buffer_words(phys: u64) -> u64 {
    phys + (offset_of!(IpcBuffer, words) + 8 * REGISTER_WORDS) as u64
}

fn slot_at(phys: u64, field: usize, index: usize) -> CapSlot {
    let mut raw = [0; 4];
    memory::read_phys(phys + (field + 4 * index) as u64, &mut raw);
    CapSlot(u32::from_le_bytes(raw))
}

impl<const N: usize> Xfer<'_, N> {
    fn thread(&self, t: ThreadId) -> Result<&Thread, ErrorCode> {
        self.threads.get(usize::from(t.0)).filter(|t| t.alive).ok_or(ErrorCode::PEER_GONE)
    }

    /// The sender's first `len` message words (at most
    /// `MAX_MESSAGE_WORDS`) into `words`: the fault report, or registers +
    /// buffer. Words past those the source has stay as they are (zero).
    fn words(
        &self,
        from: ThreadId,
        kind: Kind,
        len: usize,
        words: &mut [u64; MAX_MESSAGE_WORDS],
    ) -> Result<(), ErrorCode> {
        let sender = self.thread(from)?;
        if kind == Kind::Fault {
            let source: &[u64] = match sender.vcpu.and_then(|v| self.vcpus.get(v as usize)?.as_ref()) {
                Some(vcpu) => match &vcpu.report {
                    Some(report) => report,
                    None => &vcpu.exit,
                },
                None => &sender.fault.to_words(),
            };
            let n = len.min(source.len());
            words[..n].copy_from_slice(&source[..n]);
            return Ok(());
        }
        words[..REGISTER_WORDS].copy_from_slice(&registers(&sender.context));
        if len > REGISTER_WORDS {
            let (_, phys) = sender.ipc_buffer.ok_or(ErrorCode::INVALID_ARGUMENT)?;
            memory::read_phys_words(buffer_words(phys), &mut words[REGISTER_WORDS..len]);
        }
        Ok(())
    }

    /// Copies up to three capabilities from the sender's `send_caps` slots
    /// into the receiver's `receive_slots`. Returns how many moved.
    fn transfer_caps(&mut self, from: ThreadId, to: ThreadId, count: usize, grant: bool) -> Result<u8, ErrorCode> {
        if count == 0 {
            return Ok(0);
        }
        if count > MAX_TRANSFER_CAPS {
            return Err(ErrorCode::INVALID_ARGUMENT);
        }
        let sender = self.thread(from)?;
        let (_, send_buf) = sender.ipc_buffer.ok_or(ErrorCode::INVALID_ARGUMENT)?;
        let sender_space = self.cspace(from)?;
        // Validate every source before anything moves.
        let mut sources = [None; MAX_TRANSFER_CAPS];
        for (i, source) in sources.iter_mut().enumerate().take(count) {
            let slot = slot_at(send_buf, offset_of!(IpcBuffer, send_caps), i);
            *source = Some(self.caps.lookup_any(sender_space, slot)?);
        }
        if !grant {
            return Err(ErrorCode::NO_RIGHTS);
        }
        let receiver = self.thread(to)?;
        let (_, recv_buf) = receiver.ipc_buffer.ok_or(ErrorCode::INVALID_ARGUMENT)?;
        let receiver_space = self.cspace(to)?;
        let mut moved = 0;
        for (i, source) in sources.iter().enumerate().take(count) {
            let Some((src, cap)) = *source else { break };
            let slot = slot_at(recv_buf, offset_of!(IpcBuffer, receive_slots), i);
            let Ok(dest) = self.caps.resolve(receiver_space, slot) else {
                break;
            };
            // A receiver that named no free slot simply gets fewer capabilities.
            if self.caps.derive(src, dest, cap.rights).is_err() {
                break;
            }
            moved += 1;
        }
        Ok(moved)
    }

    fn cspace(&self, t: ThreadId) -> Result<kerncore::cap::CSpace, ErrorCode> {
        let task = self.thread(t)?.task.ok_or(ErrorCode::PEER_GONE)?;
        Ok(self.tasks.get(task as usize).and_then(Option::as_ref).ok_or(ErrorCode::PEER_GONE)?.cspace)
    }
}

impl<const N: usize> Transfer for Xfer<'_, N> {
    fn transfer(&mut self, from: ThreadId, to: ThreadId, kind: Kind, msg: Message) -> Result<MessageInfo, ErrorCode> {
        if kind == Kind::FaultReply {
            // A VP's handler replies with register updates; for a faulted
            // thread the reply only resumes it.
            let Some(v) = self.thread(to)?.vcpu else { return Ok(MessageInfo::new()) };
            let len = usize::from(msg.info.length()).min(MAX_MESSAGE_WORDS);
            let mut words = [0; MAX_MESSAGE_WORDS];
            self.words(from, Kind::Reply, len, &mut words)?;
            let vcpu = self.vcpus.get_mut(v as usize).and_then(Option::as_mut).ok_or(ErrorCode::PEER_GONE)?;
            super::vm::apply_reply(vcpu, &words[..len], msg.info.label())?;
            crate::trace::vm_reply(v, from);
            return Ok(MessageInfo::new());
        }
        let len = usize::from(msg.info.length());
        if len > MAX_MESSAGE_WORDS {
            return Err(ErrorCode::MESSAGE_TOO_LONG);
        }
        if kind == Kind::Fault && msg.info.caps() == 0 {
            // A VM exit's words go straight from the VP to the handler.
            let exit = self.thread(from)?.vcpu.and_then(|v| self.vcpus.get(v as usize)?.as_ref());
            if let Some(vcpu) = exit.filter(|vcpu| vcpu.report.is_none()) {
                let receiver_buffer = self.thread(to)?.ipc_buffer.map(|(_, phys)| phys);
                if len > REGISTER_WORDS && receiver_buffer.is_none() {
                    return Err(ErrorCode::MESSAGE_TOO_LONG);
                }
                let words = &vcpu.exit[..len];
                let mut head = [0; REGISTER_WORDS];
                let n = len.min(REGISTER_WORDS);
                head[..n].copy_from_slice(&words[..n]);
                set_registers(&mut self.threads[usize::from(to.0)].context, head);
                if let Some(phys) = receiver_buffer.filter(|_| len > REGISTER_WORDS) {
                    memory::write_phys_words(buffer_words(phys), &words[REGISTER_WORDS..]);
                }
                return Ok(MessageInfo::new().with_label(msg.info.label()).with_length(len as u8));
            }
        }
        let mut words = [0; MAX_MESSAGE_WORDS];
        self.words(from, kind, len, &mut words)?;
        let receiver = self.thread(to)?;
        let receiver_buffer = receiver.ipc_buffer.map(|(_, phys)| phys);
        if len > REGISTER_WORDS && receiver_buffer.is_none() {
            return Err(ErrorCode::MESSAGE_TOO_LONG);
        }
        let caps = self.transfer_caps(from, to, usize::from(msg.info.caps()), msg.grant)?;
        let receiver = &mut self.threads[usize::from(to.0)];
        let mut head = [0; REGISTER_WORDS];
        head.copy_from_slice(&words[..REGISTER_WORDS]);
        set_registers(&mut receiver.context, head);
        if let Some(phys) = receiver_buffer.filter(|_| len > REGISTER_WORDS) {
            memory::write_phys_words(buffer_words(phys), &words[REGISTER_WORDS..len]);
        }
        Ok(MessageInfo::new().with_label(msg.info.label()).with_length(len as u8).with_caps(caps))
    }
}
