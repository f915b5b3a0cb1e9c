//! The kata-agent API: Kata Containers' agent protocol (package `grpc`),
//! generated at build time from `proto/*.proto`.
//!
//! - [`agent`], [`oci`], [`types`], [`csi`], [`health`]: protobuf messages.
//! - [`agent_ttrpc`], [`health_ttrpc`]: async ttRPC server traits
//!   (`AgentService`, `Health`), their `create_*` registration functions, and
//!   clients (`AgentServiceClient`, `HealthClient`).

macro_rules! generated {
    ($($name:ident),* $(,)?) => {$(
        #[allow(clippy::all, clippy::pedantic, unused, missing_docs, non_camel_case_types, non_snake_case, non_upper_case_globals)]
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".rs"));
        }
    )*};
}

generated!(agent, agent_ttrpc, csi, health, health_ttrpc, oci, types);

/// Version of this API, reported by Health.Version as `grpc_version`.
pub const API_VERSION: &str = "0.0.1";

/// `google.protobuf.Empty`: the ttRPC stubs refer to it as `super::empty::Empty`.
pub mod empty {
    pub use protobuf::well_known_types::empty::Empty;
}
