//! The kernel command line: `key=value` words, parsed once into typed options.

use heapless::Vec;

/// How the lockup test's CPU hangs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockupTest {
    /// Spinning with interrupts off, no lock held.
    Spin,
    /// The same, holding the kernel lock.
    HoldingTheLock,
}

/// A deliberate fault, selected at boot, for testing the exception path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultTest {
    /// Read from an unmapped address.
    PageFault,
    /// Write to the kernel's own (read-only) text.
    WriteKernelText,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BootOptions {
    /// Power off once nothing is left to run, instead of idling.
    pub exit_when_idle: bool,
    pub fault_test: Option<FaultTest>,
    /// Measure and report costs (e.g. VM exits handled in ring 0).
    pub bench: bool,
    /// Send NMIs to this CPU throughout the run (`test=nmi`): a periodic
    /// NMI source and self-NMIs at chosen points of ring 0.
    pub nmi_test: bool,
    /// `cpus=N`: run on at most N CPUs, the boot CPU included (`cpus=1`
    /// starts no application processor). `None`: every CPU of the MADT.
    pub max_cpus: Option<u32>,
    /// `test=smp-silent-ap`: the first AP gets INIT but no STARTUP, so it
    /// never answers; boot must report it and go on with the others.
    pub silent_ap_test: bool,
    /// `test=lockup`: the first AP, once it is online, spins in ring 0
    /// with interrupts off for good, for the lockup detector to report;
    /// `test=lockup-held` the same holding the kernel lock.
    pub lockup_test: Option<LockupTest>,
    /// `timer=one-shot`: the local APIC timer counts down (one-shot mode)
    /// even where it has the TSC-deadline mode, to test that path.
    pub timer_one_shot: bool,
    /// `ipc=slow`: every syscall takes the general path, none the IPC fast
    /// path (to compare the two on the same system).
    pub slow_ipc: bool,
    /// `trace=on`: record VM exits, syscalls and context switches and
    /// print them when the system ends (`crate::trace`).
    pub trace: bool,
}

/// A word of the command line the kernel did not understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownOption<'a>(pub &'a str);

impl BootOptions {
    /// Parses `cmdline`; unknown words are returned (up to 8), not fatal.
    pub fn parse(cmdline: &str) -> (BootOptions, Vec<UnknownOption<'_>, 8>) {
        let mut options = BootOptions::default();
        let mut unknown = Vec::new();
        for word in cmdline.split_ascii_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match (key, value) {
                ("exit", "idle") => options.exit_when_idle = true,
                ("exit", "never") => options.exit_when_idle = false,
                ("test", "fault-pf") => options.fault_test = Some(FaultTest::PageFault),
                ("test", "fault-wp") => options.fault_test = Some(FaultTest::WriteKernelText),
                ("bench", "") => options.bench = true,
                ("test", "nmi") => options.nmi_test = true,
                ("test", "smp-silent-ap") => options.silent_ap_test = true,
                ("test", "lockup") => options.lockup_test = Some(LockupTest::Spin),
                ("test", "lockup-held") => options.lockup_test = Some(LockupTest::HoldingTheLock),
                ("timer", "one-shot") => options.timer_one_shot = true,
                ("timer", "tsc-deadline") => options.timer_one_shot = false,
                ("ipc", "slow") => options.slow_ipc = true,
                ("ipc", "fast") => options.slow_ipc = false,
                ("trace", "on") => options.trace = true,
                ("trace", "off") => options.trace = false,
                ("cpus", n) if n.parse::<u32>().is_ok_and(|n| n >= 1) => options.max_cpus = n.parse().ok(),
                _ => {
                    let _ = unknown.push(UnknownOption(word));
                }
            }
        }
        (options, unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_options_are_parsed() {
        assert!(BootOptions::parse("bench").0.bench);
        let (o, unknown) = BootOptions::parse("  exit=idle   test=fault-wp ");
        assert!(o.exit_when_idle);
        assert_eq!(o.fault_test, Some(FaultTest::WriteKernelText));
        assert!(unknown.is_empty());
        assert_eq!(BootOptions::parse("test=fault-pf").0.fault_test, Some(FaultTest::PageFault));
        let (o, unknown) = BootOptions::parse("test=nmi exit=idle");
        assert!(o.nmi_test && o.exit_when_idle && o.fault_test.is_none() && unknown.is_empty());
        assert!(BootOptions::parse("timer=one-shot").0.timer_one_shot);
        assert!(!BootOptions::parse("timer=one-shot timer=tsc-deadline").0.timer_one_shot);
        assert!(BootOptions::parse("trace=on exit=idle").0.trace);
        assert!(!BootOptions::parse("trace=on trace=off").0.trace);
    }

    #[test]
    fn the_last_word_wins_and_unknown_words_are_reported() {
        let (o, unknown) = BootOptions::parse("exit=idle exit=never quiet test=fault-xx");
        assert!(!o.exit_when_idle);
        assert_eq!(o.fault_test, None);
        assert_eq!(unknown.as_slice(), &[UnknownOption("quiet"), UnknownOption("test=fault-xx")]);
    }

    #[test]
    fn cpus_limits_the_cpus_started() {
        assert_eq!(BootOptions::parse("cpus=1").0.max_cpus, Some(1));
        assert_eq!(BootOptions::parse("cpus=4 exit=idle").0.max_cpus, Some(4));
        assert_eq!(BootOptions::parse("exit=idle").0.max_cpus, None);
        let (o, unknown) = BootOptions::parse("test=smp-silent-ap");
        assert!(o.silent_ap_test && unknown.is_empty());
        let (o, unknown) = BootOptions::parse("test=lockup");
        assert!(o.lockup_test == Some(LockupTest::Spin) && !o.silent_ap_test && unknown.is_empty());
        let (o, unknown) = BootOptions::parse("test=lockup-held");
        assert!(o.lockup_test == Some(LockupTest::HoldingTheLock) && unknown.is_empty());
        for bad in ["cpus=0", "cpus=", "cpus=-1", "cpus=two"] {
            let (o, unknown) = BootOptions::parse(bad);
            assert_eq!(o.max_cpus, None, "{bad}");
            assert_eq!(unknown.as_slice(), &[UnknownOption(bad)]);
        }
    }

    #[test]
    fn an_empty_command_line_gives_defaults() {
        assert_eq!(BootOptions::parse(""), (BootOptions::default(), Vec::new()));
    }
}
