//! The committed inputs of every target, run through it as plain tests:
//! the seed corpus (`corpus/<target>/`, generated here from the requests
//! the e2e suite and the agent tests send) and every input a fuzzer found
//! (`regressions/<target>/`, kept with the fix).
//!
//! `KATA_FUZZ_BLESS=1 cargo test -p kata-fuzz --test corpus` rewrites the
//! seeds after a change to the requests below.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use protocols::agent::*;
use protocols::health::CheckRequest;
use ttrpc::proto::{MessageHeader, Request};

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(kind)
}

/// The files of `<kind>/<target>/` (none if it does not exist).
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let d = dir(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&d) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).expect("reading an input");
            (p, data)
        })
        .collect()
}

#[test]
fn every_target_has_a_seed_corpus_and_nothing_else_does() {
    let mut dirs: Vec<String> = std::fs::read_dir(dir("corpus"))
        .expect("corpus/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names = kata_fuzz::names();
    names.sort();
    assert_eq!(dirs, names, "corpus/ must hold one directory per target");
    for t in names {
        assert!(!inputs("corpus", t).is_empty(), "corpus/{t}/ is empty");
    }
}

#[test]
fn the_corpus_and_the_regressions_run_clean() {
    let mut failed = Vec::new();
    for t in kata_fuzz::TARGETS {
        for kind in ["corpus", "regressions"] {
            for (path, data) in inputs(kind, t.name) {
                if std::panic::catch_unwind(|| (t.run)(&data)).is_err() {
                    failed.push(path.display().to_string());
                }
            }
        }
    }
    assert!(failed.is_empty(), "failing inputs: {failed:#?}");
}

#[test]
fn the_seeds_are_current() {
    let bless = std::env::var_os("KATA_FUZZ_BLESS").is_some();
    for (target, seeds) in seeds() {
        let d = dir("corpus").join(target);
        if bless {
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).expect("creating the corpus directory");
        }
        for (name, data) in &seeds {
            let path = d.join(name);
            if bless {
                std::fs::write(&path, data).expect("writing a seed");
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                &committed == data,
                "{} is not what the generator makes: run KATA_FUZZ_BLESS=1 cargo test -p kata-fuzz --test corpus",
                path.display()
            );
        }
        assert_eq!(
            inputs("corpus", target).len(),
            seeds.len(),
            "corpus/{target}/ has files the generator does not make (bless to drop them)"
        );
    }
}

type Seeds = BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>;

fn seeds() -> Seeds {
    let mut all = Seeds::new();
    all.insert("ttrpc_frame", frames());
    all.insert("oci_spec", specs());
    all.insert("storage_options", storage_texts());
    all.insert("safe_path", paths());
    all
}

const CID: &str = "fuzz-seed";

fn storage(driver: &str, source: &str, mount_point: &str, options: &[&str]) -> Storage {
    let mut s = Storage::new();
    s.driver = driver.into();
    s.source = source.into();
    s.mount_point = mount_point.into();
    s.options = options.iter().map(|o| o.to_string()).collect();
    s
}

/// The storages Kata's runtime sends: the shared directory over
/// virtio-fs or 9p (the e2e suite's), the sandbox's shm, an emptyDir,
/// an ephemeral resize (kata_agent.go, sandbox.go).
fn kata_storages() -> Vec<Storage> {
    let mut shm = storage(
        "ephemeral",
        "shm",
        "/run/kata-containers/sandbox/shm",
        &["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
    );
    shm.fstype = "tmpfs".into();
    vec![
        e2e::suite::shared_storage("virtio-fs").expect("virtio-fs storage"),
        e2e::suite::shared_storage("9p").expect("9p storage"),
        shm,
        storage(
            "local",
            "local",
            "/run/kata-containers/sandbox/local/vol1",
            &["mode=0777"],
        ),
        storage(
            "ephemeral",
            "tmpfs",
            "/run/kata-containers/sandbox/ephemeral/vol2",
            &["remount", "size=512M", "fsgid=1000"],
        ),
    ]
}

fn spec() -> protocols::oci::Spec {
    let mut s = test_support::spec::container(
        CID,
        "/run/kata-containers/shared/containers/fuzz-seed/rootfs",
        &["/bin/sh", "-c", "echo hello"],
    );
    test_support::spec::add_mount(
        &mut s,
        "/etc/hostname",
        "bind",
        "/run/kata-containers/shared/containers/fuzz-seed-hostname",
        &["rbind", "ro"],
    );
    s
}

/// One ttRPC request frame (header, then the `ttrpc.Request` envelope).
fn frame(stream_id: u32, service: &str, method: &str, payload: &impl protobuf::Message) -> Vec<u8> {
    let mut req = Request::new();
    req.service = service.into();
    req.method = method.into();
    req.payload = payload.write_to_bytes().expect("encoding a payload");
    req.timeout_nano = 30_000_000_000;
    let body = req.write_to_bytes().expect("encoding a request");
    let mut out: Vec<u8> = MessageHeader::new_request(stream_id, body.len() as u32).into();
    out.extend(body);
    out
}

fn agent(method: &str, payload: &impl protobuf::Message) -> Vec<u8> {
    frame(1, "grpc.AgentService", method, payload)
}

fn frames() -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    m.insert(
        "Check".into(),
        frame(1, "grpc.Health", "Check", &CheckRequest::new()),
    );
    let mut sandbox = CreateSandboxRequest::new();
    sandbox.hostname = "kata-e2e".into();
    sandbox.sandbox_id = "fuzz-sandbox".into();
    sandbox.dns = vec!["nameserver 10.0.2.3".into()];
    sandbox.storages = kata_storages();
    m.insert("CreateSandbox".into(), agent("CreateSandbox", &sandbox));
    let mut create = CreateContainerRequest::new();
    create.container_id = CID.into();
    create.exec_id = CID.into();
    create.OCI = Some(spec()).into();
    create.storages = vec![kata_storages().remove(3)];
    m.insert("CreateContainer".into(), agent("CreateContainer", &create));
    let mut exec = ExecProcessRequest::new();
    exec.container_id = CID.into();
    exec.exec_id = "exec-1".into();
    exec.process = Some(test_support::spec::process(&["/bin/ls", "-l"])).into();
    m.insert("ExecProcess".into(), agent("ExecProcess", &exec));
    let mut copy = CopyFileRequest::new();
    copy.path = "/run/kata-containers/shared/containers/fuzz-seed-hostname".into();
    copy.file_size = 10;
    copy.file_mode = 0o100644;
    copy.dir_mode = 0o755;
    copy.data = b"kata-e2e\n".to_vec();
    m.insert("CopyFile".into(), agent("CopyFile", &copy));
    let mut read = ReadStreamRequest::new();
    read.container_id = CID.into();
    read.exec_id = CID.into();
    read.len = 32768;
    m.insert("ReadStdout".into(), agent("ReadStdout", &read));
    let mut eph = UpdateEphemeralMountsRequest::new();
    eph.storages = vec![kata_storages().remove(4)];
    m.insert(
        "UpdateEphemeralMounts".into(),
        agent("UpdateEphemeralMounts", &eph),
    );
    let mut wait = WaitProcessRequest::new();
    wait.container_id = CID.into();
    wait.exec_id = CID.into();
    m.insert("WaitProcess".into(), agent("WaitProcess", &wait));
    // A connection's worth: several frames back to back, odd stream ids.
    let mut conn = frame(1, "grpc.Health", "Check", &CheckRequest::new());
    conn.extend(frame(3, "grpc.AgentService", "CreateSandbox", &sandbox));
    conn.extend(frame(5, "grpc.AgentService", "CreateContainer", &create));
    m.insert("connection".into(), conn);
    m
}

fn specs() -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    m.insert(
        "container".into(),
        spec().write_to_bytes().expect("encoding"),
    );
    let mut s = spec();
    let mut l = s.Linux.take().expect("linux");
    let mut r = protocols::oci::LinuxResources::new();
    let mut mem = protocols::oci::LinuxMemory::new();
    mem.Limit = 256 << 20;
    r.Memory = Some(mem).into();
    let mut cpu = protocols::oci::LinuxCPU::new();
    cpu.Quota = 50_000;
    cpu.Period = 100_000;
    cpu.Cpus = "0-1".into();
    r.CPU = Some(cpu).into();
    l.Resources = Some(r).into();
    s.Linux = Some(l).into();
    m.insert(
        "with-resources".into(),
        s.write_to_bytes().expect("encoding"),
    );
    m
}

fn storage_texts() -> BTreeMap<String, Vec<u8>> {
    kata_storages()
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let mut text = s.mount_point.clone();
            for o in &s.options {
                text.push('\n');
                text.push_str(o);
            }
            (format!("{i}-{}", s.driver), text.into_bytes())
        })
        .collect()
}

fn paths() -> BTreeMap<String, Vec<u8>> {
    [
        ("file", &b"dir/file"[..]),
        ("dotdot", b"../../dir/./file"),
        ("abs-link", b"abs/passwd"),
        ("climbing-link", b"/rel/dir/file"),
        ("outside-link", b"out/secret"),
        ("loop", b"loop1/x"),
        ("file-then-dotdot", b"dir/file/../sub"),
        ("shaped-link", b"../outside\0fz/secret"),
        ("shaped-absolute", b"/dir/sub\0/fz/../file"),
        (
            "copyfile",
            b"/run/kata-containers/shared/containers/c1/resolv.conf",
        ),
    ]
    .into_iter()
    .map(|(n, p)| (n.to_string(), p.to_vec()))
    .collect()
}
