//! What a test asserts about a failed RPC: its ttRPC status code and message.
//! (Printing an error for people is agent-ctl's `describe`.)

/// The status the agent answered with; panics (failing the test) when the
/// call failed without one (transport error, timeout).
#[track_caller]
pub fn status(e: &ttrpc::Error) -> (ttrpc::Code, String) {
    match e {
        ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => panic!("expected an RPC status, got {other:?}"),
    }
}

/// The status code alone.
#[track_caller]
pub fn code(e: &ttrpc::Error) -> ttrpc::Code {
    status(e).0
}

/// The status of a call that must have failed.
#[track_caller]
pub fn err_status<T: std::fmt::Debug>(r: ttrpc::Result<T>) -> (ttrpc::Code, String) {
    match r {
        Err(e) => status(&e),
        Ok(v) => panic!("expected an RPC status, the call succeeded: {v:?}"),
    }
}
