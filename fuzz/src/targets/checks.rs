//! The agent's request checks behind the real generated ttRPC dispatch:
//! `Checker` implements `grpc.AgentService` with, for each RPC that has
//! them, exactly the checks the agent runs on the request before it
//! touches anything (the functions the handlers call), plus the invariants
//! a passed check promises to the code after it. Every other RPC keeps the
//! generated default (NOT_FOUND "not supported"), after ttrpc's generated
//! handler decoded its payload. Nothing here mounts, writes or spawns.

use std::path::Path;

use async_trait::async_trait;
use kata_agent::container::init::environment;
use kata_agent::error::{Error, Invalid, Result};
use kata_agent::guest::copy_file;
use kata_agent::sandbox::containers::{create, exec};
use kata_agent::storage::{validate_mount_point, STORAGE_ROOT};
use kata_agent::{limits, rpc::status};
use protocols::agent::*;
use protocols::agent_ttrpc::AgentService;
use protocols::empty::Empty;
use ttrpc::r#async::TtrpcContext;

pub struct Checker;

fn answer<T: Default>(r: Result<()>) -> ttrpc::Result<T> {
    r.map(|()| T::default()).map_err(|e| status::to_status(&e))
}

/// A storage as the registry checks it before mounting (storage::add_one,
/// drivers::apply): the mount point, then the option list each driver
/// parses.
pub fn storage(s: &Storage) -> Result<()> {
    let rel = validate_mount_point(&s.mount_point).map_err(|e| Error::invalid(format!("{e:#}")))?;
    assert!(
        rel.is_relative() && !rel.as_os_str().is_empty(),
        "{:?}: {rel:?}",
        s.mount_point
    );
    let full = Path::new(STORAGE_ROOT).join(&rel);
    assert!(
        full.starts_with(STORAGE_ROOT) && full != Path::new(STORAGE_ROOT),
        "{:?} resolved to {}",
        s.mount_point,
        full.display()
    );
    crate::targets::storage_options::options(&s.options);
    Ok(())
}

fn storages(list: &[Storage]) -> Result<()> {
    list.iter().try_for_each(storage)
}

/// A process that passed the validator must have an environment that
/// execve takes: the container init must not fail on what the agent
/// accepted.
fn process_environment(p: &oci_spec::runtime::Process) {
    if let Err(e) = environment(p) {
        panic!("the validator passed a process whose environment fails later: {e:#}");
    }
}

pub fn create_container(req: &CreateContainerRequest) -> Result<()> {
    let v = create::validate(req)?;
    let process = v
        .oci
        .process()
        .as_ref()
        .expect("check_spec passed a spec without a process");
    process_environment(process);
    assert!(
        !v.cgroup_path.is_empty()
            && !v.cgroup_path.starts_with('/')
            && !v.cgroup_path.split('/').any(|c| c == ".." || c.is_empty()),
        "cgroup path {:?} escapes its hierarchy",
        v.cgroup_path
    );
    storages(&req.storages)
}

pub fn exec_process(req: &ExecProcessRequest) -> Result<()> {
    let p = exec::validate(req)?;
    process_environment(&p);
    Ok(())
}

pub fn create_sandbox(req: &CreateSandboxRequest) -> Result<()> {
    kata_agent::sandbox::setup::validate(req).invalid()?;
    storages(&req.storages)
}

pub fn copy_file(req: &CopyFileRequest) -> Result<()> {
    let root = Path::new(copy_file::SHARED_ROOT);
    let (parent, name) = copy_file::check_path(root, &req.path)?;
    let mut names = name.components();
    assert!(
        matches!(
            (names.next(), names.next()),
            (Some(std::path::Component::Normal(_)), None)
        ),
        "CopyFile {:?}: file name {name:?} is not one component",
        req.path
    );
    assert!(
        root.join(&parent).join(&name).starts_with(root),
        "CopyFile {:?} lands outside {}",
        req.path,
        root.display()
    );
    Ok(())
}

fn read_len(req: &ReadStreamRequest) -> Result<()> {
    limits::check("ReadStream len", req.len.into(), limits::MAX_READ_LEN)
        .map(|_| ())
        .map_err(Error::invalid)
}

#[async_trait]
impl AgentService for Checker {
    async fn create_container(
        &self,
        _: &TtrpcContext,
        req: CreateContainerRequest,
    ) -> ttrpc::Result<Empty> {
        answer(create_container(&req))
    }

    async fn exec_process(
        &self,
        _: &TtrpcContext,
        req: ExecProcessRequest,
    ) -> ttrpc::Result<Empty> {
        answer(exec_process(&req))
    }

    async fn create_sandbox(
        &self,
        _: &TtrpcContext,
        req: CreateSandboxRequest,
    ) -> ttrpc::Result<Empty> {
        answer(create_sandbox(&req))
    }

    async fn update_ephemeral_mounts(
        &self,
        _: &TtrpcContext,
        req: UpdateEphemeralMountsRequest,
    ) -> ttrpc::Result<Empty> {
        answer(storages(&req.storages))
    }

    async fn copy_file(&self, _: &TtrpcContext, req: CopyFileRequest) -> ttrpc::Result<Empty> {
        answer(copy_file(&req))
    }

    async fn read_stdout(
        &self,
        _: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        answer(read_len(&req))
    }

    async fn read_stderr(
        &self,
        _: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        answer(read_len(&req))
    }
}
