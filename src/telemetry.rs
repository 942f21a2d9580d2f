//! Logging: `tracing` to stderr, JSON when not on a terminal (containers), human-readable on a
//! terminal; filtered by `RUST_LOG` (default `info`). Secret values are never passed to a log
//! call anywhere in the crate: log keys, versions and rules, not values.
//!
//! Errors are written with [`Chain`] wherever they leave the program (log lines, stderr): an
//! error's own message says what failed at its level and its `source()` says why, so only the
//! whole chain tells the operator the real reason (tokio-postgres's "db error" is followed by
//! the server's message, an I/O failure by the OS error).

use std::error::Error;
use std::fmt::{Debug, Display, Formatter};
use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum LogFormat {
    /// JSON unless stderr is a terminal.
    #[default]
    Auto,
    Json,
    Pretty,
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .compact()
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}

/// Displays an error and every cause under it: `outer: cause: root cause`.
///
/// A cause whose message its parent already ends with is not repeated (some libraries put their
/// source's text into their own message as well as returning it from `source()`). Use it at the
/// edges: `tracing::warn!(error = %Chain(&e), "…")`, `eprintln!("rtconfig: {}", Chain(&e))`.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl Display for Chain<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> std::fmt::Result {
        let mut parent = self.0.to_string();
        f.write_str(&parent)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !parent.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            parent = text;
            next = cause.source();
        }
        Ok(())
    }
}

impl Debug for Chain<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> std::fmt::Result {
        Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        /// The usual shape: the message names this level only.
        #[error("cannot read the namespace")]
        Read(#[source] Middle),
        /// A library that also prints its source in its own message.
        #[error("pool failed: {0}")]
        Repeats(#[source] Middle),
    }

    #[derive(Debug, thiserror::Error)]
    #[error("db error")]
    struct Middle(#[source] std::io::Error);

    fn io() -> std::io::Error {
        std::io::Error::other("database \"x\" does not exist")
    }

    #[test]
    fn a_chain_shows_every_cause_once() {
        let e = Outer::Read(Middle(io()));
        assert_eq!(
            Chain(&e).to_string(),
            "cannot read the namespace: db error: database \"x\" does not exist"
        );
        let e = Outer::Repeats(Middle(io()));
        assert_eq!(
            Chain(&e).to_string(),
            "pool failed: db error: database \"x\" does not exist"
        );
        assert_eq!(Chain(&io()).to_string(), "database \"x\" does not exist");
    }
}
