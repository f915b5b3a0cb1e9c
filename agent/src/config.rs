//! TEMPORARY minimal configuration (replaced by the full Kata option parser).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum LogLevel {
    Critical,
    Error,
    Warning,
    Info,
    Debug,
}

impl LogLevel {
    pub fn to_slog(self) -> slog::Level {
        match self {
            LogLevel::Critical => slog::Level::Critical,
            LogLevel::Error => slog::Level::Error,
            LogLevel::Warning => slog::Level::Warning,
            LogLevel::Info => slog::Level::Info,
            LogLevel::Debug => slog::Level::Debug,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentConfig {
    pub server_addr: String,
    pub log_level: LogLevel,
    pub log_vport: u32,
    pub hotplug_timeout: Duration,
    pub container_pipe_size: i32,
    pub debug_console: bool,
    pub unified_cgroup_hierarchy: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            server_addr: "vsock://-1:1024".into(),
            log_level: LogLevel::Info,
            log_vport: 0,
            hotplug_timeout: Duration::from_secs(3),
            container_pipe_size: 0,
            debug_console: false,
            unified_cgroup_hierarchy: false,
        }
    }
}

impl AgentConfig {
    pub fn load(
        _cmdline: &Path,
        env: &HashMap<String, String>,
    ) -> Result<(AgentConfig, Vec<String>)> {
        let mut c = AgentConfig::default();
        if let Some(a) = env.get("KATA_AGENT_SERVER_ADDR") {
            c.server_addr = a.clone();
        }
        if env.get("KATA_AGENT_LOG_LEVEL").map(String::as_str) == Some("debug") {
            c.log_level = LogLevel::Debug;
        }
        Ok((c, Vec::new()))
    }
}
