//! A message as it travels through an endpoint: a label and up to
//! [`MAX_MESSAGE_WORDS`] words (the first four in registers, the rest in the
//! IPC buffer; the runtime does that split).

use abi::{MAX_MESSAGE_WORDS, MessageInfo, REGISTER_WORDS};
use core::fmt;

/// A message: label and words. Words past [`Message::len`] are always zero,
/// so two messages are equal exactly when label and used words are.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    label: u32,
    len: u8,
    words: [u64; MAX_MESSAGE_WORDS],
}

/// The message already holds [`MAX_MESSAGE_WORDS`] words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageFull;

const _: () = assert!(MAX_MESSAGE_WORDS <= u8::MAX as usize && REGISTER_WORDS <= MAX_MESSAGE_WORDS);

impl Message {
    /// An empty message with `label`.
    pub const fn new(label: u32) -> Message {
        Message { label, len: 0, words: [0; MAX_MESSAGE_WORDS] }
    }

    /// A message with `label` and `words`; `None` if there are too many.
    pub fn from_words(label: u32, words: &[u64]) -> Option<Message> {
        let mut message = Message::new(label);
        message.words.get_mut(..words.len())?.copy_from_slice(words);
        message.len = words.len() as u8;
        Some(message)
    }

    pub const fn label(&self) -> u32 {
        self.label
    }

    pub fn set_label(&mut self, label: u32) {
        self.label = label;
    }

    /// Words in use.
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn words(&self) -> &[u64] {
        &self.words[..self.len()]
    }

    pub fn words_mut(&mut self) -> &mut [u64] {
        let len = self.len();
        &mut self.words[..len]
    }

    /// Empties the message and gives it `label`.
    pub fn clear(&mut self, label: u32) {
        let len = self.len();
        // A short message (the usual) clears its register words in place
        // of a call to memset: the words past `len` are zero already.
        if len <= REGISTER_WORDS {
            self.words[..REGISTER_WORDS].fill(0);
        } else {
            self.words[..len].fill(0);
        }
        self.len = 0;
        self.label = label;
    }

    /// The words that travel in registers, zero past [`Message::len`].
    pub fn register_words(&self) -> [u64; REGISTER_WORDS] {
        let mut head = [0; REGISTER_WORDS];
        head.copy_from_slice(&self.words[..REGISTER_WORDS]);
        head
    }

    /// Sets `label` and `len` (as [`Message::set_len`]) and the register
    /// words from `registers`, of which those at `len` and past are dropped
    /// (kept zero): what a receive returns. The words past them are the
    /// caller's to fill.
    pub fn set_received(
        &mut self,
        label: u32,
        len: usize,
        registers: [u64; REGISTER_WORDS],
    ) -> Result<(), MessageFull> {
        self.set_len(len)?;
        self.label = label;
        for (i, (word, register)) in self.words[..REGISTER_WORDS].iter_mut().zip(registers).enumerate() {
            *word = if i < len { register } else { 0 };
        }
        Ok(())
    }

    /// Appends a word.
    pub fn push(&mut self, word: u64) -> Result<(), MessageFull> {
        let slot = self.words.get_mut(self.len as usize).ok_or(MessageFull)?;
        *slot = word;
        self.len += 1;
        Ok(())
    }

    /// Sets the number of words in use (at most [`MAX_MESSAGE_WORDS`]);
    /// new words are zero, dropped words are cleared.
    pub fn set_len(&mut self, len: usize) -> Result<(), MessageFull> {
        if len > MAX_MESSAGE_WORDS {
            return Err(MessageFull);
        }
        // Words past the old length are zero already: only a shrink clears.
        let old = self.len();
        if len < old {
            self.words[len..old].fill(0);
        }
        self.len = len as u8;
        Ok(())
    }

    /// The [`MessageInfo`] describing this message (no capabilities attached).
    pub fn info(&self) -> MessageInfo {
        MessageInfo::new().with_label(self.label).with_length(self.len)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("label", &format_args!("{:#x}", self.label))
            .field("words", &self.words())
            .finish()
    }
}
