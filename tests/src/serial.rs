//! Checks on the guest's serial console log: the agent's options from the
//! kernel command line must be in effect.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// `agent.log=debug` is in effect when the console carries debug-level
/// records from the agent. Accepts slog's JSON (`"level":"DEBG"`), its
/// terminal format (` DEBG `) and a plain `level=debug`.
pub fn has_debug_records(log: &str) -> bool {
    log.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("\"level\":\"debg\"")
            || l.contains("\"level\":\"debug\"")
            || l.contains(" debg ")
            || l.contains("level=debug")
    })
}

/// The agent's start-up record (`announce`) reports its configuration;
/// `log_level` there is debug (the config may be nested as a JSON string).
pub fn announces_debug_level(log: &str) -> bool {
    log.lines().any(|l| {
        let l = l.replace("\\\"", "\"").to_ascii_lowercase();
        l.contains("\"announce\"") && l.contains("\"log_level\":\"debug\"")
    })
}

/// Fail unless the serial log at `path` shows the agent at debug level:
/// debug records on the console, or its announced configuration.
pub fn check_agent_debug_log(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    if !has_debug_records(&text) && !announces_debug_level(&text) {
        bail!(
            "no debug-level agent records and no announced log_level debug on the console ({} bytes of serial log at {}): agent.log=debug not in effect",
            bytes.len(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_debug_records() {
        assert!(has_debug_records(
            "[    0.1] x\n{\"msg\":\"rpc\",\"level\":\"DEBG\",\"source\":\"agent\"}\n"
        ));
        assert!(has_debug_records("Nov 23 12:00:00.000 DEBG started"));
        assert!(!has_debug_records("{\"msg\":\"rpc\",\"level\":\"INFO\"}\n"));
        assert!(!has_debug_records(""));
    }

    #[test]
    fn recognises_announced_level() {
        let nested = r#"{"msg":"announce","level":"INFO","config":"{\"log_level\":\"debug\"}"}"#;
        assert!(announces_debug_level(nested));
        let info = r#"{"msg":"announce","level":"INFO","config":"{\"log_level\":\"info\"}"}"#;
        assert!(!announces_debug_level(info));
    }
}
