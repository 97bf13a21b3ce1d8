//! The runner's own messages and small formatting helpers.
//!
//! The serial console goes to stdout; everything the runner says goes to
//! stderr with a `[tessera]` prefix, so `tessera > out.txt` keeps a clean
//! console transcript.

use std::ffi::OsStr;
use std::fmt::Display;

/// Print one runner message to stderr (below a progress line, which it
/// clears first).
pub fn note(msg: impl Display) {
    crate::progress::clear_line();
    eprintln!("[tessera] {msg}");
}

/// Print a warning to stderr.
pub fn warn(msg: impl Display) {
    crate::progress::clear_line();
    eprintln!("[tessera] warning: {msg}");
}

/// Print an error to stderr.
pub fn error(msg: impl Display) {
    crate::progress::clear_line();
    eprintln!("[tessera] error: {msg}");
}

/// Quote one word for a POSIX shell, only when needed.
pub fn shell_word(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let safe = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+%@".contains(c));
    if safe { s.into_owned() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// Render a command (program and arguments) so it can be pasted into a shell.
pub fn shell_line(cmd: &std::process::Command) -> String {
    let mut out = shell_word(cmd.get_program());
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&shell_word(arg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_word(OsStr::new("abc-1.2,x=y")), "abc-1.2,x=y");
        assert_eq!(shell_word(OsStr::new("a b")), "'a b'");
        assert_eq!(shell_word(OsStr::new("it's")), r"'it'\''s'");
        assert_eq!(shell_word(OsStr::new("")), "''");
    }
}
