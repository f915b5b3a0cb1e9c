//! The agent's configuration: Kata's agent options, read from the kernel
//! command line or from the TOML file it names, then overridden by
//! environment variables for stand-alone runs.
//!
//! Precedence (as in Kata's agent):
//! 1. If the command line has `agent.config_file=PATH`, the configuration
//!    comes from that file alone: every other agent option on the command line
//!    is ignored (each is reported as a warning here; Kata ignores them
//!    silently). A missing or unparsable file is an error.
//! 2. Otherwise each option on the command line is applied in order, the last
//!    of a repeated option winning.
//! 3. `KATA_AGENT_SERVER_ADDR`, `KATA_AGENT_LOG_LEVEL`, `KATA_AGENT_TRACING`
//!    and `KATA_AGENT_POLICY_FILE` then win over both. (Kata skips this step
//!    when the file came from `agent.config_file`; applying it always keeps
//!    one rule for developers running the agent by hand.)

mod cmdline;
mod file;
mod values;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

pub use values::{GuestComponentsProcs, GuestComponentsRestApi, LogLevel};

/// Where the agent listens by default: any vsock CID, Kata's agent port.
pub const DEFAULT_SERVER_ADDR: &str = "vsock://-1:1024";
pub const DEFAULT_HOTPLUG_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_CDH_API_TIMEOUT: Duration = Duration::from_secs(50);
pub const DEFAULT_CDI_TIMEOUT: Duration = Duration::from_secs(100);
pub const DEFAULT_IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(1200);

const ENV_SERVER_ADDR: &str = "KATA_AGENT_SERVER_ADDR";
const ENV_LOG_LEVEL: &str = "KATA_AGENT_LOG_LEVEL";
const ENV_TRACING: &str = "KATA_AGENT_TRACING";
const ENV_POLICY_FILE: &str = "KATA_AGENT_POLICY_FILE";

/// The effective agent configuration. Serialize gives the JSON the start-up
/// log prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentConfig {
    /// `agent.debug_console`: start a shell on the console / debug vsock port.
    pub debug_console: bool,
    /// `agent.devmode`: allow the agent to dump core.
    pub dev_mode: bool,
    /// `agent.log`.
    pub log_level: LogLevel,
    /// `agent.hotplug_timeout` (seconds): wait for a hot-plugged device.
    pub hotplug_timeout: Duration,
    /// `agent.cdh_api_timeout` (seconds): Confidential Data Hub API calls.
    pub cdh_api_timeout: Duration,
    /// `agent.cdi_timeout` (seconds): wait for CDI device specs.
    pub cdi_timeout: Duration,
    /// `agent.image_pull_timeout` (seconds): guest image pull through CDH.
    pub image_pull_timeout: Duration,
    /// `agent.debug_console_vport`: 0 means the serial console.
    pub debug_console_vport: u32,
    /// `agent.log_vport`: 0 means log to stdout.
    pub log_vport: u32,
    /// `agent.passfd_listener_port`: 0 means no passfd I/O listener.
    pub passfd_listener_port: u32,
    /// `agent.container_pipe_size` in bytes: 0 keeps the kernel default.
    pub container_pipe_size: i32,
    /// `agent.server_addr`: ttrpc listen address.
    pub server_addr: String,
    /// `cgroup_no_v1` (kernel parameter): `all` or empty.
    pub cgroup_no_v1: String,
    /// `systemd.unified_cgroup_hierarchy` (kernel parameter): cgroup v2 only.
    pub unified_cgroup_hierarchy: bool,
    /// `agent.trace`: OpenTelemetry tracing.
    pub tracing: bool,
    /// `agent.https_proxy`: proxy for image pulls in the guest.
    pub https_proxy: String,
    /// `agent.no_proxy`.
    pub no_proxy: String,
    /// `agent.guest_components_rest_api`.
    pub guest_components_rest_api: GuestComponentsRestApi,
    /// `agent.guest_components_procs`.
    pub guest_components_procs: GuestComponentsProcs,
    /// `agent.image_registry_auth`: `file://` or `kbs://` URI of registry credentials.
    pub image_registry_auth: String,
    /// `agent.secure_storage_integrity` / `agent.secure_image_storage_integrity`.
    pub secure_storage_integrity: bool,
    /// `agent.enable_signature_verification`.
    pub enable_signature_verification: bool,
    /// `agent.image_policy_file`: `file://` or `kbs://` URI of the image policy.
    pub image_policy_file: String,
    /// Agent policy document (`KATA_AGENT_POLICY_FILE` or the file's `policy_file`).
    pub policy_file: String,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            debug_console: false,
            dev_mode: false,
            log_level: LogLevel::Info,
            hotplug_timeout: DEFAULT_HOTPLUG_TIMEOUT,
            cdh_api_timeout: DEFAULT_CDH_API_TIMEOUT,
            cdi_timeout: DEFAULT_CDI_TIMEOUT,
            image_pull_timeout: DEFAULT_IMAGE_PULL_TIMEOUT,
            debug_console_vport: 0,
            log_vport: 0,
            passfd_listener_port: 0,
            container_pipe_size: 0,
            server_addr: DEFAULT_SERVER_ADDR.to_string(),
            cgroup_no_v1: String::new(),
            unified_cgroup_hierarchy: false,
            tracing: false,
            https_proxy: String::new(),
            no_proxy: String::new(),
            guest_components_rest_api: GuestComponentsRestApi::default(),
            guest_components_procs: GuestComponentsProcs::default(),
            image_registry_auth: String::new(),
            secure_storage_integrity: false,
            enable_signature_verification: false,
            image_policy_file: String::new(),
            policy_file: String::new(),
        }
    }
}

impl AgentConfig {
    /// Parse a kernel command line. Returns the config and warnings for the
    /// caller to log (unknown `agent.*` options, ignored values).
    pub fn from_cmdline(cmdline: &str) -> Result<(AgentConfig, Vec<String>)> {
        let params = cmdline::split(cmdline);
        if let Some(path) = cmdline::config_file(&params)? {
            let (cfg, mut warnings) = AgentConfig::from_toml_file(&path)?;
            warnings.extend(
                params
                    .iter()
                    .filter(|p| {
                        p.name.starts_with("agent.") && p.name != cmdline::CONFIG_FILE_OPTION
                    })
                    .map(|p| {
                        format!(
                            "{} ignored: {} is set and the configuration comes from that file",
                            p.name,
                            cmdline::CONFIG_FILE_OPTION
                        )
                    }),
            );
            return Ok((cfg, warnings));
        }
        let mut cfg = AgentConfig::default();
        let mut warnings = Vec::new();
        for p in &params {
            cmdline::apply(&mut cfg, p, &mut warnings)?;
        }
        Ok((cfg, warnings))
    }

    /// Read a TOML config file (keys as in Kata's agent config file).
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<(AgentConfig, Vec<String>)> {
        file::load(path.as_ref())
    }

    /// What the agent does at start: read the command line from
    /// `cmdline_path` (normally /proc/cmdline), follow `agent.config_file` if
    /// present, then apply the environment overrides from `env`.
    pub fn load(
        cmdline_path: &Path,
        env: &HashMap<String, String>,
    ) -> Result<(AgentConfig, Vec<String>)> {
        let text = std::fs::read_to_string(cmdline_path)
            .with_context(|| format!("reading kernel command line {}", cmdline_path.display()))?;
        let (mut cfg, mut warnings) = AgentConfig::from_cmdline(&text)?;
        cfg.apply_env(env, &mut warnings);
        Ok((cfg, warnings))
    }

    /// Environment overrides for development and stand-alone runs. Like Kata,
    /// a value that does not parse is not fatal: it is ignored (Kata turns a
    /// bad `KATA_AGENT_TRACING` into false; here it leaves tracing as it was)
    /// and reported as a warning.
    pub fn apply_env(&mut self, env: &HashMap<String, String>, warnings: &mut Vec<String>) {
        if let Some(addr) = env.get(ENV_SERVER_ADDR) {
            if addr.is_empty() {
                warnings.push(format!("{ENV_SERVER_ADDR} is empty, ignored"));
            } else {
                self.server_addr = addr.clone();
            }
        }
        if let Some(level) = env.get(ENV_LOG_LEVEL) {
            match level.parse() {
                Ok(l) => self.log_level = l,
                Err(e) => warnings.push(format!("{ENV_LOG_LEVEL}=\"{level}\" ignored: {e:#}")),
            }
        }
        if let Some(tracing) = env.get(ENV_TRACING) {
            match values::parse_bool(tracing) {
                Ok(t) => self.tracing = t,
                Err(e) => warnings.push(format!("{ENV_TRACING}=\"{tracing}\" ignored: {e:#}")),
            }
        }
        if let Some(policy) = env.get(ENV_POLICY_FILE) {
            self.policy_file = policy.clone();
        }
    }
}

/// Kata only takes a timeout above zero; zero keeps the previous value
/// (Kata drops it silently, here it is a warning).
fn set_timeout(field: &mut Duration, name: &str, value: Duration, warnings: &mut Vec<String>) {
    if value.is_zero() {
        warnings.push(format!(
            "{name}=0 ignored: a timeout must be positive, keeping {}s",
            field.as_secs()
        ));
    } else {
        *field = value;
    }
}

#[cfg(test)]
mod tests;
