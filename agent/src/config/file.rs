//! The TOML configuration file named by `agent.config_file`.
//!
//! Keys are the names of Kata's `AgentConfigBuilder` fields (`dev_mode`,
//! `log_level`, `tracing`, ... rather than the command-line spellings). Kata
//! reads timeouts with serde's `Duration` form, `{ secs = 3, nanos = 0 }`;
//! that form is accepted, and so is a plain integer number of seconds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;

use super::values::{
    parse_nonempty, parse_pipe_size, parse_url, GuestComponentsProcs, GuestComponentsRestApi,
};
use super::{set_timeout, AgentConfig};

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TomlDuration {
    Seconds(u64),
    Kata {
        secs: u64,
        #[serde(default)]
        nanos: u32,
    },
}

impl TomlDuration {
    fn get(&self) -> Duration {
        match *self {
            TomlDuration::Seconds(secs) => Duration::from_secs(secs),
            TomlDuration::Kata { secs, nanos } => Duration::new(secs, nanos),
        }
    }
}

/// Every field optional: a key left out keeps the default.
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    debug_console: Option<bool>,
    #[serde(alias = "devmode")]
    dev_mode: Option<bool>,
    log_level: Option<String>,
    hotplug_timeout: Option<TomlDuration>,
    cdh_api_timeout: Option<TomlDuration>,
    cdi_timeout: Option<TomlDuration>,
    image_pull_timeout: Option<TomlDuration>,
    debug_console_vport: Option<u32>,
    log_vport: Option<u32>,
    passfd_listener_port: Option<u32>,
    container_pipe_size: Option<i32>,
    server_addr: Option<String>,
    unified_cgroup_hierarchy: Option<bool>,
    tracing: Option<bool>,
    https_proxy: Option<String>,
    no_proxy: Option<String>,
    guest_components_rest_api: Option<GuestComponentsRestApi>,
    guest_components_procs: Option<GuestComponentsProcs>,
    image_registry_auth: Option<String>,
    #[serde(alias = "secure_image_storage_integrity")]
    secure_storage_integrity: Option<bool>,
    enable_signature_verification: Option<bool>,
    image_policy_file: Option<String>,
    policy_file: Option<String>,
    /// Keys we do not know: reported as warnings, like unknown `agent.*`
    /// options on the command line (Kata drops them silently).
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// Read and apply a config file. A missing or unparsable file is an error.
pub fn load(path: &Path) -> Result<(AgentConfig, Vec<String>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading agent config file {}", path.display()))?;
    parse(&text).with_context(|| format!("parsing agent config file {}", path.display()))
}

fn parse(text: &str) -> Result<(AgentConfig, Vec<String>)> {
    let file: FileConfig = toml::from_str(text)?;
    let mut cfg = AgentConfig::default();
    let mut warnings: Vec<String> = file
        .unknown
        .keys()
        .map(|k| format!("unknown agent config file key {k} ignored"))
        .collect();
    apply_scalars(&mut cfg, &file);
    apply_checked(&mut cfg, &file, &mut warnings)?;
    Ok((cfg, warnings))
}

/// Fields that take any value of their type.
fn apply_scalars(cfg: &mut AgentConfig, f: &FileConfig) {
    let bools = [
        (&mut cfg.debug_console, f.debug_console),
        (&mut cfg.dev_mode, f.dev_mode),
        (
            &mut cfg.unified_cgroup_hierarchy,
            f.unified_cgroup_hierarchy,
        ),
        (&mut cfg.tracing, f.tracing),
        (
            &mut cfg.secure_storage_integrity,
            f.secure_storage_integrity,
        ),
        (
            &mut cfg.enable_signature_verification,
            f.enable_signature_verification,
        ),
    ];
    for (field, value) in bools {
        if let Some(v) = value {
            *field = v;
        }
    }
    let ports = [
        (&mut cfg.debug_console_vport, f.debug_console_vport),
        (&mut cfg.log_vport, f.log_vport),
        (&mut cfg.passfd_listener_port, f.passfd_listener_port),
    ];
    for (field, value) in ports {
        if let Some(v) = value {
            *field = v;
        }
    }
    if let Some(v) = f.guest_components_rest_api {
        cfg.guest_components_rest_api = v;
    }
    if let Some(v) = f.guest_components_procs {
        cfg.guest_components_procs = v;
    }
}

/// Fields validated the same way as on the command line.
fn apply_checked(cfg: &mut AgentConfig, f: &FileConfig, warnings: &mut Vec<String>) -> Result<()> {
    if let Some(v) = &f.log_level {
        cfg.log_level = checked("log_level", v, |s| s.parse())?;
    }
    if let Some(v) = f.container_pipe_size {
        cfg.container_pipe_size = checked("container_pipe_size", &v.to_string(), parse_pipe_size)?;
    }
    if let Some(v) = &f.https_proxy {
        cfg.https_proxy = checked("https_proxy", v, parse_url)?;
    }
    let strings = [
        ("server_addr", &mut cfg.server_addr, &f.server_addr),
        ("no_proxy", &mut cfg.no_proxy, &f.no_proxy),
        (
            "image_registry_auth",
            &mut cfg.image_registry_auth,
            &f.image_registry_auth,
        ),
        (
            "image_policy_file",
            &mut cfg.image_policy_file,
            &f.image_policy_file,
        ),
        ("policy_file", &mut cfg.policy_file, &f.policy_file),
    ];
    for (name, field, value) in strings {
        if let Some(v) = value {
            *field = checked(name, v, parse_nonempty)?;
        }
    }
    let timeouts = [
        (
            "hotplug_timeout",
            &mut cfg.hotplug_timeout,
            &f.hotplug_timeout,
        ),
        (
            "cdh_api_timeout",
            &mut cfg.cdh_api_timeout,
            &f.cdh_api_timeout,
        ),
        ("cdi_timeout", &mut cfg.cdi_timeout, &f.cdi_timeout),
        (
            "image_pull_timeout",
            &mut cfg.image_pull_timeout,
            &f.image_pull_timeout,
        ),
    ];
    for (name, field, value) in timeouts {
        if let Some(v) = value {
            set_timeout(field, name, v.get(), warnings);
        }
    }
    Ok(())
}

fn checked<T>(key: &str, value: &str, parse: fn(&str) -> Result<T>) -> Result<T> {
    parse(value).map_err(|e| anyhow!("{key} = \"{value}\": {e:#}"))
}
