//! The sandbox: the state of the one pod this agent serves (containers,
//! storages, hostname, ...). Filled in by the container life cycle work.

use slog::Logger;

use crate::config::AgentConfig;

pub struct Sandbox {
    pub logger: Logger,
}

impl Sandbox {
    pub fn new(_config: &AgentConfig, logger: Logger) -> Self {
        Sandbox { logger }
    }
}
