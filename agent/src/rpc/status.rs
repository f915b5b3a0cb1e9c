//! The one place an agent error becomes a ttRPC status (called by
//! `dispatch!`): the kind gives the gRPC code, the message says what was
//! wrong.

use ttrpc::Code;

use crate::error::Error;

pub fn to_status(e: &Error) -> ttrpc::Error {
    let code = match e {
        Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
        Error::NotFound(_) => Code::NOT_FOUND,
        Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
        Error::Unimplemented(_) => Code::UNIMPLEMENTED,
        Error::DeadlineExceeded(_) => Code::DEADLINE_EXCEEDED,
        Error::Internal(_) => Code::INTERNAL,
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
}

/// The RPC exists in the API but this agent does not implement it.
pub fn unimplemented<T>(rpc: &str) -> crate::error::Result<T> {
    Err(Error::Unimplemented(format!(
        "/grpc.AgentService/{rpc} is not implemented by this agent"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_code_and_the_whole_message() {
        let cases = [
            (Error::invalid("bad"), Code::INVALID_ARGUMENT, "bad"),
            (Error::NotFound("gone".into()), Code::NOT_FOUND, "gone"),
            (
                Error::AlreadyExists("twice".into()),
                Code::ALREADY_EXISTS,
                "twice",
            ),
            (
                Error::Unimplemented("later".into()),
                Code::UNIMPLEMENTED,
                "later",
            ),
            (
                Error::DeadlineExceeded("no vdb".into()),
                Code::DEADLINE_EXCEEDED,
                "no vdb",
            ),
            (
                Error::from(anyhow::anyhow!("EIO").context("reading")),
                Code::INTERNAL,
                "reading: EIO",
            ),
        ];
        for (e, code, msg) in cases {
            match to_status(&e) {
                ttrpc::Error::RpcStatus(s) => {
                    assert_eq!(s.code(), code, "{e:?}");
                    assert_eq!(s.message(), msg);
                }
                other => panic!("not a status: {other:?}"),
            }
        }
    }
}
