//! The sandbox: the state of the one pod this agent serves.
//!
//! Each field belongs to one module, which owns its type and its logic:
//! containers to `container`, storages to `storage`.

use std::collections::HashMap;

use slog::Logger;

use crate::config::AgentConfig;
use crate::container::Container;
use crate::storage::StorageRegistry;

pub struct Sandbox {
    pub logger: Logger,
    /// Set by CreateSandbox; empty before.
    pub id: String,
    pub hostname: String,
    pub containers: HashMap<String, Container>,
    pub storages: StorageRegistry,
    pub config: AgentConfig,
}

impl Sandbox {
    pub fn new(config: &AgentConfig, logger: Logger) -> Self {
        Sandbox {
            logger,
            id: String::new(),
            hostname: String::new(),
            containers: HashMap::new(),
            storages: StorageRegistry::default(),
            config: config.clone(),
        }
    }
}
