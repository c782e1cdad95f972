//! The error type of the test host and the gateway.

use std::fmt;
use std::io;
use std::path::PathBuf;

use proxy_wasm_host::abi::v0_2_1::GuestError;

/// An error that kept a filter from loading, starting or running.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Occurs when the `.wasm` file does not exist.
    FilterNotBuilt {
        /// The path that was tried.
        path: PathBuf,
    },
    /// Occurs when the `.wasm` file exists but cannot be read.
    ReadFilter {
        /// The path that was read.
        path: PathBuf,
        /// The error of the read.
        source: io::Error,
    },
    /// Occurs when the engine cannot be built or the bytes are not a valid
    /// module.
    CompileFilter {
        /// The path or name of the module.
        path: PathBuf,
        /// The error of the runtime.
        source: proxy_wasm_host::Error,
    },
    /// Occurs when the module is not a proxy-wasm guest of ABI 0.2.1 or
    /// 0.2.0, or a guest callback fails: a trap, a panic in the filter, or a
    /// spent CPU budget.
    Guest {
        /// The filter's name.
        filter: String,
        /// The error of the host crate.
        source: GuestError,
        /// The lines the guest logged while it failed.
        log_lines: Vec<String>,
    },
    /// Occurs when `proxy_on_vm_start` returns false.
    VmStartRejected {
        /// The filter's name.
        filter: String,
        /// The lines the guest logged while it started.
        log_lines: Vec<String>,
    },
    /// Occurs when `proxy_on_configure` returns false, which is how a filter
    /// rejects its configuration.
    ConfigRejected {
        /// The filter's name.
        filter: String,
        /// The lines the guest logged while it read the configuration; the
        /// filter's reason is among them.
        log_lines: Vec<String>,
    },
    /// Occurs when a filter paused a request or a response and never resumed
    /// it.
    ///
    /// This host runs no callouts or timers, so nothing can resume a stream
    /// that the last callback of its direction left paused.
    Stalled {
        /// The filter's name.
        filter: String,
        /// The callback that returned `Pause` last.
        callback: &'static str,
    },
}

fn write_lines(f: &mut fmt::Formatter<'_>, log_lines: &[String]) -> fmt::Result {
    if log_lines.is_empty() {
        return write!(f, " (the filter logged nothing)");
    }
    write!(f, "; the filter logged:")?;
    for line in log_lines {
        write!(f, "\n  {line}")?;
    }
    Ok(())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FilterNotBuilt { path } => write!(
                f,
                "filter module {} not found; build it with ./build.sh, \
                 which writes dist/sliding_window_rate_limit.wasm",
                path.display()
            ),
            Self::ReadFilter { path, source } => {
                write!(
                    f,
                    "failed to read filter module {}: {source}",
                    path.display()
                )
            }
            Self::CompileFilter { path, source } => write!(
                f,
                "failed to compile filter module {}: {source}",
                path.display()
            ),
            Self::Guest {
                filter,
                source,
                log_lines,
            } => {
                write!(f, "filter {filter} failed: {source}")?;
                write_lines(f, log_lines)
            }
            Self::VmStartRejected { filter, log_lines } => {
                write!(f, "filter {filter} rejected its VM start")?;
                write_lines(f, log_lines)
            }
            Self::ConfigRejected { filter, log_lines } => {
                write!(f, "filter {filter} rejected its configuration")?;
                write_lines(f, log_lines)
            }
            Self::Stalled { filter, callback } => write!(
                f,
                "filter {filter} paused the stream in {callback} and never resumed it; \
                 this host runs no callouts or timers that could resume it"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::ReadFilter { source, .. } => Some(source),
            Self::CompileFilter { source, .. } => Some(source),
            Self::Guest { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// Returns the lines the filter logged while it failed, when the error
    /// has them.
    pub fn log_lines(&self) -> &[String] {
        match self {
            Self::Guest { log_lines, .. }
            | Self::VmStartRejected { log_lines, .. }
            | Self::ConfigRejected { log_lines, .. } => log_lines,
            _ => &[],
        }
    }
}
