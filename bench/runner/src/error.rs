//! The runner's error type: one message that states what failed and why.

use std::fmt;

/// A failure that stops a section of the benchmark.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    /// Creates an error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// The result of a benchmark step.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds what was being done to an error from another library.
pub trait Context<T> {
    /// Prefixes the error with the message that `what` returns.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|error| Error(format!("{}: {error}", what())))
    }
}
