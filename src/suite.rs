//! `tessera test`: run `cargo test --workspace`, stream its output, and add
//! up the per-binary `test result:` lines into one closing line.
//!
//! cargo test ends with the summaries of the doc-test runs, which are
//! usually `0 passed`; the grand total printed last says what really ran.

use std::io::{self, Read, Write};
use std::process::{Command, ExitStatus, Stdio};

/// Totals over all `test result:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub binaries: u32,
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Tally {
    /// Add one line of cargo test output if it is a `test result:` line
    /// (`test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; ...`).
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        let Some((_, counts)) = rest.split_once(". ") else {
            return;
        };
        self.binaries += 1;
        for part in counts.split(';') {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }

    /// The closing line: `tessera: N passed, N failed, N skipped`.
    pub fn closing_line(&self) -> String {
        format!("tessera: {} passed, {} failed, {} skipped", self.passed, self.failed, self.ignored)
    }
}

/// Run `cargo test --workspace <args>` (`cmd` is the cargo to run), copying its stdout through live
/// while counting results; stderr (compiler output) is inherited.
pub fn cargo_test(mut cmd: Command, args: &[String]) -> io::Result<(ExitStatus, Tally)> {
    cmd.args(["test", "--workspace"]).args(args).stdout(Stdio::piped());
    crate::ui::note(format!("==> running the test suite: {}", crate::ui::shell_line(&cmd)));
    let mut child = cmd.spawn()?;
    let mut pipe = child.stdout.take().expect("stdout is piped");
    let mut tally = Tally::default();
    let mut line = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut out = io::stdout().lock();
        let _ = out.write_all(&buf[..n]);
        let _ = out.flush();
        for &b in &buf[..n] {
            if b == b'\n' {
                tally.add_line(&String::from_utf8_lossy(&line));
                line.clear();
            } else {
                line.push(b);
            }
        }
    }
    tally.add_line(&String::from_utf8_lossy(&line));
    Ok((child.wait()?, tally))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_adds_result_lines() {
        let mut t = Tally::default();
        t.add_line("test result: ok. 10 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        t.add_line("test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 4.46s");
        t.add_line("test foo ... ok");
        t.add_line("running 3 tests");
        assert_eq!(t, Tally { binaries: 2, passed: 11, failed: 3, ignored: 2 });
        assert_eq!(t.closing_line(), "tessera: 11 passed, 3 failed, 2 skipped");
    }
}
