//! Where a container's cgroup lives: the spec's linux.cgroupsPath made safe
//! and relative to each hierarchy's root.

use anyhow::{bail, Result};

/// The cgroup path below the hierarchy root (no leading slash) for a
/// container.
///
/// - empty `cgroups_path`: `<container_id>` (Kata's agent uses "/<id>" too);
/// - systemd form `slice:prefix:name`: the colons become slashes, as Kata's
///   agent does when it drives cgroupfs directly;
/// - otherwise the path itself, absolute or not, always below the root.
///
/// `..` components and NUL bytes are refused: a path from the request must
/// not name a cgroup outside the hierarchy, nor the root cgroup itself.
pub fn relative_path(container_id: &str, cgroups_path: &str) -> Result<String> {
    let raw = if cgroups_path.is_empty() {
        container_id.to_string()
    } else if cgroups_path.split(':').count() == 3 {
        cgroups_path.replace(':', "/")
    } else {
        cgroups_path.to_string()
    };
    if raw.contains('\0') {
        bail!("cgroup path {raw:?} (container {container_id}) contains a NUL byte");
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("cgroup path {raw:?} (container {container_id}) must not contain `..`"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        bail!("cgroup path {raw:?} (container {container_id}) names the root cgroup");
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::relative_path;

    #[test]
    fn default_is_the_container_id() {
        assert_eq!(relative_path("abc", "").unwrap(), "abc");
    }

    #[test]
    fn absolute_and_relative_paths_are_below_the_root() {
        assert_eq!(
            relative_path("c", "/kubepods/pod1/c").unwrap(),
            "kubepods/pod1/c"
        );
        assert_eq!(relative_path("c", "kubepods//./c/").unwrap(), "kubepods/c");
    }

    #[test]
    fn systemd_form_becomes_a_path() {
        assert_eq!(
            relative_path("c", "system.slice:kata_agent:c").unwrap(),
            "system.slice/kata_agent/c"
        );
    }

    #[test]
    fn escapes_and_the_root_are_refused() {
        for bad in ["/a/../../etc", "..", "/", "a\0b"] {
            let err = relative_path("c", bad).unwrap_err().to_string();
            assert!(err.contains("container c"), "{bad:?}: {err}");
        }
        assert!(relative_path("../x", "").is_err());
    }
}
