//! An OCI spec in the agent API's protobuf form (`oci.Spec`), sent as
//! CreateContainer does, and its process as ExecProcess sends one: the
//! conversion to oci-spec's types (through the OCI JSON layout), the
//! validator, the cgroup path, the environment the container init builds.

use protobuf::Message as _;
use protocols::agent::{CreateContainerRequest, ExecProcessRequest};
use protocols::oci::Spec;

use super::checks;

pub fn run(data: &[u8]) {
    let Ok(spec) = Spec::parse_from_bytes(data) else {
        return;
    };
    let mut exec = ExecProcessRequest::new();
    exec.container_id = "fuzz".into();
    exec.exec_id = "fuzz-exec".into();
    exec.process = spec.Process.clone();
    let _ = checks::exec_process(&exec);
    let mut create = CreateContainerRequest::new();
    create.container_id = "fuzz".into();
    create.OCI = Some(spec).into();
    let _ = checks::create_container(&create);
}
