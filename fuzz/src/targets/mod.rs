//! One module per target; `checks` holds the agent's request checks that
//! more than one target runs.

pub mod checks;
pub mod oci_spec;
pub mod safe_path;
pub mod storage_options;
pub mod ttrpc_frame;
