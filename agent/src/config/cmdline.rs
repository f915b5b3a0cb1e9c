//! Kernel command line: splitting it into parameters the way the kernel does,
//! and applying the agent's options to an [`AgentConfig`].

use anyhow::{anyhow, Result};

use super::values::{
    parse_bool, parse_nonempty, parse_pipe_size, parse_port, parse_seconds, parse_url,
};
use super::{set_timeout, AgentConfig};

/// The option naming a TOML file that replaces command-line parsing.
pub const CONFIG_FILE_OPTION: &str = "agent.config_file";

/// One `name[=value]` parameter, quotes already removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub value: Option<String>,
}

/// Split a command line into parameters following the kernel's `next_arg`:
/// whitespace separates parameters except inside double quotes; a quote that
/// opens the whole parameter or its value is dropped together with a matching
/// quote at the end, quotes in the middle are kept. So `agent.x="a b"` and
/// `"agent.x=a b"` both give `agent.x` = `a b`.
pub fn split(cmdline: &str) -> Vec<Param> {
    tokens(cmdline).into_iter().map(|t| to_param(&t)).collect()
}

fn tokens(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_quote = false;
    for c in cmdline.chars() {
        if c.is_whitespace() && !in_quote {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if c == '"' {
            in_quote = !in_quote;
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn strip_quotes(s: &str) -> &str {
    match s.strip_prefix('"') {
        Some(inner) => inner.strip_suffix('"').unwrap_or(inner),
        None => s,
    }
}

fn to_param(token: &str) -> Param {
    let token = strip_quotes(token);
    match token.split_once('=') {
        Some((name, value)) => Param {
            name: name.to_string(),
            value: Some(strip_quotes(value).to_string()),
        },
        None => Param {
            name: token.to_string(),
            value: None,
        },
    }
}

/// The first `agent.config_file` on the line, as Kata stops at the first one.
pub fn config_file(params: &[Param]) -> Result<Option<String>> {
    match params.iter().find(|p| p.name == CONFIG_FILE_OPTION) {
        Some(p) => value_of(p, parse_nonempty).map(Some),
        None => Ok(None),
    }
}

/// Run `parse` on the parameter's value, naming the option and the value in
/// the error.
fn value_of<T>(p: &Param, parse: fn(&str) -> Result<T>) -> Result<T> {
    let Some(value) = p.value.as_deref() else {
        return Err(anyhow!(
            "{}: missing value (expected {}=VALUE)",
            p.name,
            p.name
        ));
    };
    parse(value).map_err(|e| anyhow!("{}=\"{}\": {:#}", p.name, value, e))
}

/// A boolean option: bare means true (Kata's spelling for `agent.debug_console`,
/// `agent.devmode` and `agent.trace`; accepted here for every boolean).
fn flag_of(p: &Param, parse: fn(&str) -> Result<bool>) -> Result<bool> {
    match p.value {
        None => Ok(true),
        Some(_) => value_of(p, parse),
    }
}

/// systemd reads `systemd.unified_cgroup_hierarchy` itself and takes its own
/// boolean words besides Kata's spellings; agreeing with systemd keeps the
/// agent's idea of the cgroup layout the same as the one systemd sets up.
fn parse_systemd_bool(s: &str) -> Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "y" | "on" | "t" => Ok(true),
        "no" | "n" | "off" | "f" => Ok(false),
        lower => parse_bool(lower),
    }
}

/// Apply one parameter. Non-agent parameters other than the two cgroup ones
/// are none of the agent's business and are skipped; unknown `agent.*` ones
/// become warnings.
pub fn apply(cfg: &mut AgentConfig, p: &Param, warnings: &mut Vec<String>) -> Result<()> {
    match p.name.as_str() {
        "systemd.unified_cgroup_hierarchy" => {
            cfg.unified_cgroup_hierarchy = flag_of(p, parse_systemd_bool)?
        }
        // Kata only records `all`; other values (e.g. `memory`) are the kernel's.
        "cgroup_no_v1" => {
            if p.value.as_deref() == Some("all") {
                cfg.cgroup_no_v1 = "all".to_string();
            }
        }
        name => {
            if let Some(option) = name.strip_prefix("agent.") {
                apply_agent(cfg, option, p, warnings)?;
            }
        }
    }
    Ok(())
}

fn apply_agent(
    cfg: &mut AgentConfig,
    option: &str,
    p: &Param,
    warnings: &mut Vec<String>,
) -> Result<()> {
    match option {
        "debug_console" => cfg.debug_console = flag_of(p, parse_bool)?,
        "devmode" => cfg.dev_mode = flag_of(p, parse_bool)?,
        "trace" => cfg.tracing = flag_of(p, parse_bool)?,
        "enable_signature_verification" => {
            cfg.enable_signature_verification = flag_of(p, parse_bool)?
        }
        // Older Kata spells it secure_storage_integrity, newer releases
        // secure_image_storage_integrity; both set the same thing.
        "secure_storage_integrity" | "secure_image_storage_integrity" => {
            cfg.secure_storage_integrity = flag_of(p, parse_bool)?
        }
        "log" => cfg.log_level = value_of(p, |s| s.parse())?,
        "server_addr" => cfg.server_addr = value_of(p, parse_nonempty)?,
        "hotplug_timeout" => {
            let t = value_of(p, parse_seconds)?;
            set_timeout(&mut cfg.hotplug_timeout, &p.name, t, warnings);
        }
        "cdh_api_timeout" => {
            let t = value_of(p, parse_seconds)?;
            set_timeout(&mut cfg.cdh_api_timeout, &p.name, t, warnings);
        }
        "cdi_timeout" => {
            let t = value_of(p, parse_seconds)?;
            set_timeout(&mut cfg.cdi_timeout, &p.name, t, warnings);
        }
        "image_pull_timeout" => {
            let t = value_of(p, parse_seconds)?;
            set_timeout(&mut cfg.image_pull_timeout, &p.name, t, warnings);
        }
        "debug_console_vport" => cfg.debug_console_vport = value_of(p, parse_port)?,
        "log_vport" => cfg.log_vport = value_of(p, parse_port)?,
        "passfd_listener_port" => cfg.passfd_listener_port = value_of(p, parse_port)?,
        "container_pipe_size" => cfg.container_pipe_size = value_of(p, parse_pipe_size)?,
        "https_proxy" => cfg.https_proxy = value_of(p, parse_url)?,
        "no_proxy" => cfg.no_proxy = value_of(p, parse_nonempty)?,
        "guest_components_rest_api" => cfg.guest_components_rest_api = value_of(p, |s| s.parse())?,
        "guest_components_procs" => cfg.guest_components_procs = value_of(p, |s| s.parse())?,
        "image_registry_auth" => cfg.image_registry_auth = value_of(p, parse_nonempty)?,
        "image_policy_file" => cfg.image_policy_file = value_of(p, parse_nonempty)?,
        // Handled before any other option by the caller.
        "config_file" => {}
        _ => warnings.push(format!("unknown agent option {} ignored", p.name)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, value: Option<&str>) -> Param {
        Param {
            name: name.to_string(),
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn splits_on_whitespace_and_keeps_equals_in_values() {
        assert_eq!(
            split("  a  agent.x=y=z\tb=\n"),
            vec![
                param("a", None),
                param("agent.x", Some("y=z")),
                param("b", Some("")),
            ]
        );
    }

    #[test]
    fn quoted_values_keep_their_spaces() {
        assert_eq!(
            split(r#"agent.no_proxy="a b" "agent.x=c d" e"#),
            vec![
                param("agent.no_proxy", Some("a b")),
                param("agent.x", Some("c d")),
                param("e", None),
            ]
        );
    }

    #[test]
    fn inner_quotes_are_kept_and_unterminated_quote_runs_to_the_end() {
        assert_eq!(
            split(r#"k=a"b c"d x="open end"#),
            vec![param("k", Some(r#"a"b c"d"#)), param("x", Some("open end"))]
        );
    }
}
