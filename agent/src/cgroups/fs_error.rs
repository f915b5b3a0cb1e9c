//! cgroups-rs's manager error without its systemd variants.
//!
//! `FsManager` (the cgroupfs manager) never returns a systemd error, but
//! formatting `cgroups_rs::manager::Error` (its derived Debug, which anyhow
//! keeps for every error it wraps) reaches zbus's D-Bus message decoder:
//! converted to this type first, the agent links none of it (x86_64 musl
//! release agent -112 KiB). The messages are cgroups-rs's own.

use cgroups_rs::manager::Error as ManagerError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("invalid argument")]
    InvalidArgument,
    /// The resources cannot be applied (the caller's mistake).
    #[error("invalid linux resource")]
    InvalidLinuxResource,
    #[error("cgroupfs error: {0}")]
    Cgroupfs(#[source] cgroups_rs::fs::error::Error),
    #[error("systemd cgroup error from the cgroupfs manager")]
    Systemd,
}

impl From<ManagerError> for FsError {
    fn from(e: ManagerError) -> FsError {
        match e {
            ManagerError::InvalidArgument => FsError::InvalidArgument,
            ManagerError::InvalidLinuxResource => FsError::InvalidLinuxResource,
            ManagerError::Cgroupfs(e) => FsError::Cgroupfs(e),
            ManagerError::SystemdCgroup(_) | ManagerError::SystemdDbus(_) => FsError::Systemd,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_cgroups_rs_says() {
        for (ours, theirs) in [
            (FsError::InvalidArgument, ManagerError::InvalidArgument),
            (
                FsError::InvalidLinuxResource,
                ManagerError::InvalidLinuxResource,
            ),
        ] {
            assert_eq!(ours.to_string(), theirs.to_string());
        }
    }

    #[test]
    fn an_invalid_resource_stays_recognisable() {
        let e = anyhow::Error::new(FsError::from(ManagerError::InvalidLinuxResource));
        assert!(matches!(
            e.downcast_ref::<FsError>(),
            Some(FsError::InvalidLinuxResource)
        ));
    }
}
