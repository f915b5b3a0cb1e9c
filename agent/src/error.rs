//! The agent's one error type. Every operation an RPC reaches returns
//! [`Result`]; the kind says whose fault it was, and `rpc` turns it into a
//! ttRPC status once, in `dispatch!`. Code below the RPC layer that only
//! fails internally keeps using `anyhow` and `?`: an `anyhow::Error` becomes
//! [`Error::Internal`] on the way up.

use std::fmt::Display;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is wrong: the caller must change it (INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// The container, process or file the request names does not exist
    /// (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// What the request would create is there already (ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// The RPC or the feature it needs is not in this agent or guest
    /// (UNIMPLEMENTED).
    #[error("{0}")]
    Unimplemented(String),
    /// What the request waits for did not come in time: a hot-plugged
    /// device within agent.hotplug_timeout (DEADLINE_EXCEEDED).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Something failed inside the agent or the guest (INTERNAL); `{:#}`
    /// keeps the whole context chain of the source.
    #[error("{0:#}")]
    Internal(anyhow::Error),
}

/// Marks an `anyhow` chain as a wait that ran out of time: anywhere in the
/// chain, it makes the whole error an [`Error::DeadlineExceeded`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeadlineExceeded(pub String);

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        if e.chain().any(|c| c.is::<DeadlineExceeded>()) {
            Error::DeadlineExceeded(format!("{e:#}"))
        } else {
            Error::Internal(e)
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Display) -> Error {
        Error::InvalidArgument(msg.to_string())
    }

    pub fn internal(msg: impl Display) -> Error {
        Error::Internal(anyhow::anyhow!("{msg}"))
    }

    /// The same error, its message prefixed with `what` (as anyhow's
    /// `context` does), its kind kept.
    pub fn context(self, what: impl Display) -> Error {
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{what}: {m}")),
            Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
            Error::AlreadyExists(m) => Error::AlreadyExists(format!("{what}: {m}")),
            Error::Unimplemented(m) => Error::Unimplemented(format!("{what}: {m}")),
            Error::DeadlineExceeded(m) => Error::DeadlineExceeded(format!("{what}: {m}")),
            Error::Internal(e) => Error::Internal(e.context(what.to_string())),
        }
    }
}

/// For checks written with `anyhow` (validators): their failure is the
/// caller's mistake.
pub trait Invalid<T> {
    /// An error becomes [`Error::InvalidArgument`] with its whole chain.
    fn invalid(self) -> Result<T>;
}

impl<T> Invalid<T> for anyhow::Result<T> {
    fn invalid(self) -> Result<T> {
        self.map_err(|e| Error::InvalidArgument(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_and_the_chain() {
        let e = Error::invalid("bad size").context("CopyFile /x");
        assert!(matches!(&e, Error::InvalidArgument(m) if m == "CopyFile /x: bad size"));
        let e = Error::from(anyhow::anyhow!("EIO").context("reading")).context("Stats c1");
        assert!(matches!(e, Error::Internal(_)));
        assert_eq!(e.to_string(), "Stats c1: reading: EIO");
        let e = anyhow::Result::<()>::Err(anyhow::anyhow!("no '/'").context("id"))
            .invalid()
            .unwrap_err();
        assert_eq!(e.to_string(), "id: no '/'");
    }

    #[test]
    fn a_deadline_anywhere_in_the_chain_is_the_kind() {
        let e = Error::from(
            anyhow::Error::from(DeadlineExceeded("timed out waiting for vdb".into()))
                .context("scsi storage for /run/x"),
        );
        assert!(matches!(&e, Error::DeadlineExceeded(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "scsi storage for /run/x: timed out waiting for vdb"
        );
    }
}
