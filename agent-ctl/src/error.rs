//! ttRPC errors for people: one line with the status code and message, not
//! the protobuf Debug dump. The CLI and the e2e suite print them this way.

use std::fmt::Display;

/// A ttRPC error in one line: the status code and message when the agent
/// sent one, else the transport error.
pub fn describe(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

/// `call.await.rpc("CreateContainer c1")?`: the error as `what: CODE: message`.
pub trait RpcResultExt<T> {
    fn rpc(self, what: impl Display) -> anyhow::Result<T>;
}

impl<T> RpcResultExt<T> for ttrpc::Result<T> {
    fn rpc(self, what: impl Display) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::anyhow!("{what}: {}", describe(&e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_transport_errors_in_one_line() {
        let status = ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::NOT_FOUND,
            "container c1 not found",
        ));
        assert_eq!(describe(&status), "NOT_FOUND: container c1 not found");
        let r: ttrpc::Result<()> = Err(status);
        assert_eq!(
            r.rpc("StatsContainer c1").unwrap_err().to_string(),
            "StatsContainer c1: NOT_FOUND: container c1 not found"
        );
        let other = ttrpc::Error::Others("connection reset".into());
        assert!(
            describe(&other).contains("connection reset"),
            "{}",
            describe(&other)
        );
    }
}
