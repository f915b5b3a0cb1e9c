//! Typed option values and the parsers that turn their text form into them.
//!
//! The spellings accepted here follow Kata's agent (src/agent/src/config.rs),
//! with one deliberate difference: a value Kata would silently turn into
//! `false` (for example `agent.trace=yes`) is an error here, because a
//! mistyped option that quietly does nothing is harder to find than a guest
//! that refuses to start with a message naming the option.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Agent log level. Kata takes logrus names (the Go agent's) and maps them
/// onto slog; `fatal` and `panic` only log at the most severe level, they do
/// not abort.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Critical,
    Error,
    Warning,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The slog level the logger filters on.
    pub fn to_slog(self) -> slog::Level {
        match self {
            LogLevel::Critical => slog::Level::Critical,
            LogLevel::Error => slog::Level::Error,
            LogLevel::Warning => slog::Level::Warning,
            LogLevel::Info => slog::Level::Info,
            LogLevel::Debug => slog::Level::Debug,
            LogLevel::Trace => slog::Level::Trace,
        }
    }
}

impl FromStr for LogLevel {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "critical" | "fatal" | "panic" => LogLevel::Critical,
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warning,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => bail!(
                "invalid log level: expected one of critical, fatal, panic, error, \
                 warn, warning, info, debug, trace"
            ),
        })
    }
}

/// Which REST API features the guest-components api-server-rest exposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestComponentsRestApi {
    All,
    Attestation,
    #[default]
    Resource,
}

impl FromStr for GuestComponentsRestApi {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "all" => Self::All,
            "attestation" => Self::Attestation,
            "resource" => Self::Resource,
            _ => bail!(
                "invalid guest components REST API feature: expected all, attestation or resource"
            ),
        })
    }
}

/// Which guest-components processes the agent starts as its children. Each
/// one implies the ones before it: api-server-rest needs the data hub, which
/// needs the attestation agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestComponentsProcs {
    None,
    AttestationAgent,
    ConfidentialDataHub,
    #[default]
    ApiServerRest,
}

impl FromStr for GuestComponentsProcs {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "none" => Self::None,
            "attestation-agent" => Self::AttestationAgent,
            "confidential-data-hub" => Self::ConfidentialDataHub,
            "api-server-rest" => Self::ApiServerRest,
            _ => bail!(
                "invalid guest components process: expected none, attestation-agent, \
                 confidential-data-hub or api-server-rest"
            ),
        })
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            LogLevel::Critical => "critical",
            LogLevel::Error => "error",
            LogLevel::Warning => "warning",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        };
        f.write_str(name)
    }
}

/// Kata's boolean spelling: Rust's `true`/`false` (lower case only), or an
/// unsigned integer where anything but 0 is true.
pub fn parse_bool(s: &str) -> Result<bool> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => match s.parse::<u64>() {
            Ok(n) => Ok(n != 0),
            Err(_) => bail!("invalid boolean: expected true, false or an unsigned integer"),
        },
    }
}

/// Timeouts are whole seconds on the command line (Kata parses them as u64).
pub fn parse_seconds(s: &str) -> Result<Duration> {
    match s.parse::<u64>() {
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => bail!("invalid duration: expected a whole number of seconds"),
    }
}

/// A vsock port number.
pub fn parse_port(s: &str) -> Result<u32> {
    match s.parse::<u32>() {
        Ok(port) => Ok(port),
        Err(_) => bail!("invalid port: expected an unsigned 32-bit integer"),
    }
}

/// The size in bytes of container stdio pipes; 0 keeps the kernel's default.
pub fn parse_pipe_size(s: &str) -> Result<i32> {
    match s.parse::<i32>() {
        Ok(size) if size >= 0 => Ok(size),
        Ok(_) => bail!("invalid pipe size: must not be negative"),
        Err(_) => bail!("invalid pipe size: expected an integer"),
    }
}

/// Kata runs the proxy through `Url::parse`; without the url crate we check
/// the shape that matters to a proxy user, `scheme://something`, and keep the
/// text as given (Kata's round trip through Url may add a trailing `/`).
pub fn parse_url(s: &str) -> Result<String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        bail!("invalid URL: expected scheme://host[:port]");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() || rest.contains(char::is_whitespace) {
        bail!("invalid URL: expected scheme://host[:port]");
    }
    Ok(s.to_string())
}

/// String options must not be empty (Kata: "name=value parameter missing value").
pub fn parse_nonempty(s: &str) -> Result<String> {
    if s.is_empty() {
        bail!("missing value");
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_map_to_slog() {
        let cases = [
            ("critical", slog::Level::Critical),
            ("fatal", slog::Level::Critical),
            ("panic", slog::Level::Critical),
            ("error", slog::Level::Error),
            ("warn", slog::Level::Warning),
            ("warning", slog::Level::Warning),
            ("info", slog::Level::Info),
            ("debug", slog::Level::Debug),
            ("trace", slog::Level::Trace),
        ];
        for (text, level) in cases {
            let parsed: LogLevel = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed.to_slog(), level, "{text}");
        }
        for bad in ["", "Info", "debugging", "xdebug", "5"] {
            assert!(bad.parse::<LogLevel>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn booleans_follow_kata_spelling() {
        for (text, want) in [
            ("true", true),
            ("false", false),
            ("1", true),
            ("0", false),
            ("11", true),
        ] {
            assert_eq!(parse_bool(text).ok(), Some(want), "{text}");
        }
        for bad in ["yes", "True", "a", "", "-1", "."] {
            assert!(parse_bool(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn urls_need_scheme_and_host() {
        assert_eq!(
            parse_url("http://proxy.example:81").ok().as_deref(),
            Some("http://proxy.example:81")
        );
        for bad in ["proxy:81", "://x", "http://", "1http://x", "http://a b"] {
            assert!(parse_url(bad).is_err(), "{bad:?} accepted");
        }
    }
}
