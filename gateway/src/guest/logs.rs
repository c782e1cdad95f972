//! A log sink that keeps what guests log.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use proxy_wasm_host::abi::v0_2_1::types::LogLevel;
use proxy_wasm_host::abi::v0_2_1::{GuestId, LogContext, LogSink};

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The level the guest gave.
    pub level: LogLevel,
    /// The message, decoded as UTF-8 with replacement characters.
    pub message: String,
    /// The guest that logged it.
    pub guest: GuestId,
    /// The plugin name of the root, once `on_configure` has run.
    pub plugin: Option<String>,
    /// The position of the line among every line this capture received.
    pub sequence: u64,
}

/// Returns the lowercase name of a log level, as the message prefix uses it.
pub fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "trace",
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
        LogLevel::Critical => "critical",
    }
}

/// A function that prints one line as it arrives.
type Echo = Box<dyn Fn(&LogLine) + Send + Sync>;

/// A [`LogSink`] that keeps each (level, message) line, and can echo them to
/// standard error.
///
/// One capture can serve many workers, and each line records the guest
/// that logged it.
#[derive(Default)]
pub struct LogCapture {
    state: Mutex<CaptureState>,
    echo: Option<Echo>,
    max_lines: Option<usize>,
}

impl fmt::Debug for LogCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogCapture")
            .field("lines", &self.state().lines.len())
            .field("echo", &self.echo.is_some())
            .field("max_lines", &self.max_lines)
            .finish()
    }
}

#[derive(Debug, Default)]
struct CaptureState {
    lines: VecDeque<LogLine>,
    received: u64,
}

impl LogCapture {
    /// Creates a capture that keeps every line and prints nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates a capture that keeps every line and also prints each one to
    /// standard error as `[plugin] level: message`.
    pub fn echoing() -> Self {
        Self::new().with_echo(|line| {
            let plugin = line.plugin.as_deref().unwrap_or("-");
            eprintln!("[{plugin}] {}: {}", level_name(line.level), line.message);
        })
    }

    /// Calls `echo` with each line as it arrives, besides keeping it.
    #[must_use]
    pub fn with_echo(mut self, echo: impl Fn(&LogLine) + Send + Sync + 'static) -> Self {
        self.echo = Some(Box::new(echo));
        self
    }

    /// Keeps only the newest `max_lines` lines, for a long-running process.
    #[must_use]
    pub fn with_max_lines(mut self, max_lines: usize) -> Self {
        self.max_lines = Some(max_lines);
        self
    }

    fn state(&self) -> MutexGuard<'_, CaptureState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns every kept line as (level, message), oldest first.
    pub fn lines(&self) -> Vec<(LogLevel, String)> {
        self.state()
            .lines
            .iter()
            .map(|line| (line.level, line.message.clone()))
            .collect()
    }

    /// Returns every kept line with its guest and plugin, oldest first.
    pub fn records(&self) -> Vec<LogLine> {
        self.state().lines.iter().cloned().collect()
    }

    /// Returns whether any kept message contains `text`.
    pub fn contains(&self, text: &str) -> bool {
        self.state()
            .lines
            .iter()
            .any(|line| line.message.contains(text))
    }

    /// Returns the kept messages logged at exactly `level`, oldest first.
    pub fn lines_at(&self, level: LogLevel) -> Vec<String> {
        self.state()
            .lines
            .iter()
            .filter(|line| line.level == level)
            .map(|line| line.message.clone())
            .collect()
    }

    /// Forgets every kept line.
    pub fn clear(&self) {
        self.state().lines.clear();
    }

    /// Returns the number of lines received so far, kept or not. Pass it to
    /// [`LogCapture::lines_of_since`] later.
    pub fn mark(&self) -> u64 {
        self.state().received
    }

    /// Returns the kept lines of `guest` received at or after `mark`,
    /// formatted as `level: message`.
    pub fn lines_of_since(&self, guest: GuestId, mark: u64) -> Vec<String> {
        self.state()
            .lines
            .iter()
            .filter(|line| line.guest == guest && line.sequence >= mark)
            .map(|line| format!("{}: {}", level_name(line.level), line.message))
            .collect()
    }
}

impl LogSink for LogCapture {
    fn log(&self, context: LogContext<'_>, level: LogLevel, message: &[u8]) {
        let message = String::from_utf8_lossy(message).into_owned();
        let plugin = context
            .plugin_name
            .map(|name| String::from_utf8_lossy(&name).into_owned());

        let mut state = self.state();
        let line = LogLine {
            level,
            message,
            guest: context.guest,
            plugin,
            sequence: state.received,
        };
        state.received += 1;
        state.lines.push_back(line.clone());
        if let Some(max_lines) = self.max_lines {
            while state.lines.len() > max_lines {
                state.lines.pop_front();
            }
        }
        drop(state);

        // The echo runs without the lock, so it may read this capture.
        if let Some(echo) = &self.echo {
            echo(&line);
        }
    }
}
