//! The kernel command line: user options plus what the runner adds.
//!
//! Options are space-separated words such as `exit=idle` or
//! `test=fault-pf`. QEMU passes the line with `-append`; for Bochs and real
//! machines it goes on the `multiboot2` line of `grub.cfg`.

/// Split the user's `--cmdline` into words and add `exit=idle` when the run
/// has a deadline (so the kernel powers off once it has nothing left to
/// run), unless the user already chose an `exit=` option.
pub fn kernel_options(user: &str, add_exit_idle: bool) -> Vec<String> {
    let mut words: Vec<String> = user.split_whitespace().map(str::to_owned).collect();
    if add_exit_idle && !words.iter().any(|w| w.starts_with("exit=")) {
        words.push("exit=idle".to_owned());
    }
    words
}

/// The options as one line.
pub fn join(words: &[String]) -> String {
    words.join(" ")
}

/// Quote one word for `grub.cfg` so GRUB passes it through unchanged.
///
/// GRUB's script language treats `$`, quotes, `;`, `|`, `&`, `<`, `>`,
/// `{`, `}`, `#` and `\` specially; plain words are written as they are and
/// anything else is single-quoted. A word containing a single quote cannot
/// be represented and is rejected.
pub fn grub_word(word: &str) -> Result<String, String> {
    if word.contains('\'') {
        return Err(format!("kernel option {word:?} contains a single quote, which grub.cfg cannot carry"));
    }
    if word.chars().any(|c| c.is_control()) {
        return Err(format!("kernel option {word:?} contains a control character"));
    }
    let plain = word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:+%@".contains(c));
    Ok(if plain && !word.is_empty() { word.to_owned() } else { format!("'{word}'") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_exit_idle_only_with_deadline_and_only_once() {
        assert_eq!(kernel_options("", true), ["exit=idle"]);
        assert_eq!(kernel_options("  test=fault-pf  ", true), ["test=fault-pf", "exit=idle"]);
        assert_eq!(kernel_options("exit=never", true), ["exit=never"]);
        assert!(kernel_options("", false).is_empty());
    }

    #[test]
    fn grub_quoting() {
        assert_eq!(grub_word("test=fault-pf").unwrap(), "test=fault-pf");
        assert_eq!(grub_word("a$b").unwrap(), "'a$b'");
        assert!(grub_word("it's").is_err());
    }
}
