//! Containers: the life cycle (create, start, exec, wait, signal, remove)
//! and the `kata-agent init` child that sets up a container.

/// One container of the sandbox.
pub struct Container {
    pub id: String,
}
