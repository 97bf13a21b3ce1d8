//! One line per check: the reporter the TLFS and the fidelity suites share.
//!
//! Every check prints `testkernel: <suite>: <what>: ok [(<note>)]`,
//! `...: FAIL <why>`, or `...: informational: <text>` for what the test
//! observes but does not require. A test passes only if all its required
//! checks pass.

use crate::println;
use guest_testkernel::tlfs::{Verdict, suite_check_line};
use guest_testkernel::{Detail, Text, detail};

/// A required check's result: `Ok` with a note (maybe empty) or why it failed.
pub type Check = Result<Detail, Detail>;

pub fn ok() -> Check {
    Ok(Detail::new())
}

pub fn fail_unless(cond: bool, why: Detail) -> Check {
    if cond { ok() } else { Err(why) }
}

/// The checks of one test of one suite.
pub struct Checks {
    suite: &'static str,
    total: u32,
    failed: u32,
}

impl Checks {
    pub fn new(suite: &'static str) -> Checks {
        Checks { suite, total: 0, failed: 0 }
    }

    /// A required check; true if it passed.
    pub fn require(&mut self, what: &str, check: Check) -> bool {
        self.total += 1;
        let passed = check.is_ok();
        let line = match &check {
            Ok(note) => suite_check_line(self.suite, what, Verdict::Ok(note.as_str())),
            Err(why) => suite_check_line(self.suite, what, Verdict::Fail(why.as_str())),
        };
        println!("{line}");
        self.failed += u32::from(!passed);
        passed
    }

    /// What the test observed but does not require.
    pub fn info(&mut self, what: &str, text: core::fmt::Arguments<'_>) {
        let mut t = Text::<128>::new();
        let _ = core::fmt::Write::write_fmt(&mut t, text);
        println!("{}", suite_check_line(self.suite, what, Verdict::Informational(t.as_str())));
    }

    /// A line naming a check that could not run, counted as failed.
    pub fn fail(&mut self, what: &str, why: Detail) {
        self.require(what, Err(why));
    }

    pub fn finish(self) -> Result<(), Detail> {
        if self.failed == 0 {
            println!("testkernel: {}: all {} required checks passed", self.suite, self.total);
            Ok(())
        } else {
            Err(detail!("{} of {} required checks failed", self.failed, self.total))
        }
    }
}
