//! ttRPC status helpers: every error an RPC returns carries a gRPC code and a
//! message that says what was wrong.

use ttrpc::{Code, Error};

pub fn status(code: Code, msg: impl Into<String>) -> Error {
    Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

/// The RPC exists in the API but this agent does not implement it.
pub fn unimplemented<T>(rpc: &str) -> ttrpc::Result<T> {
    Err(status(
        Code::UNIMPLEMENTED,
        format!("/grpc.AgentService/{rpc} is not implemented by this agent"),
    ))
}

/// A bad request: the caller must change it.
pub fn invalid_argument(err: impl std::fmt::Display) -> Error {
    status(Code::INVALID_ARGUMENT, err.to_string())
}

/// A failure inside the agent; `{:#}` keeps the whole anyhow context chain.
pub fn internal(err: anyhow::Error) -> Error {
    status(Code::INTERNAL, format!("{err:#}"))
}

pub fn not_found(what: impl std::fmt::Display) -> Error {
    status(Code::NOT_FOUND, what.to_string())
}
