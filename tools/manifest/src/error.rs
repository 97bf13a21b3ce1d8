//! Diagnostics: one [`Error`] per mistake, all of them collected in [`Errors`].

use std::fmt;

/// One mistake in a manifest or a build.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Error {
    /// What the mistake is in: `task "vid"`, `system`, `partition "linux"`,
    /// or `FILE:LINE:COLUMN` for a TOML syntax or type error.
    pub subject: String,
    /// The field (`uses`, `memory`, ...), or empty.
    pub field: String,
    pub message: String,
}

impl Error {
    pub(crate) fn new(subject: impl Into<String>, field: &str, message: impl Into<String>) -> Error {
        Error { subject: subject.into(), field: field.into(), message: message.into() }
    }

    pub(crate) fn task(task: &str, field: &str, message: impl Into<String>) -> Error {
        Error::new(format!("task \"{task}\""), field, message)
    }

    pub(crate) fn partition(partition: &str, field: &str, message: impl Into<String>) -> Error {
        Error::new(format!("partition \"{partition}\""), field, message)
    }

    pub(crate) fn system(field: &str, message: impl Into<String>) -> Error {
        Error::new("system", field, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.subject, self.message)
        } else {
            write!(f, "{}: {}: {}", self.subject, self.field, self.message)
        }
    }
}

/// Every mistake found, sorted (by subject, field, message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl Errors {
    pub(crate) fn sorted(mut errors: Vec<Error>) -> Errors {
        errors.sort();
        errors.dedup();
        Errors(errors)
    }

    pub(crate) fn one(error: Error) -> Errors {
        Errors(vec![error])
    }

    /// The messages, as `Display` shows each one.
    pub fn messages(&self) -> Vec<String> {
        self.0.iter().map(Error::to_string).collect()
    }
}

/// Numbered, one per line: `error 1/2: task "vid": uses: ...`.
impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        for (i, e) in self.0.iter().enumerate() {
            writeln!(f, "error {}/{n}: {e}", i + 1)?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}
