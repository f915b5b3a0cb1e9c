//! The agent as a ttRPC server, stand-alone on a unix socket: health round
//! trips, UNIMPLEMENTED answers, malformed and oversized frames, concurrency.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use agent_ctl::context;
use protobuf::Message;
use protocols::agent::SetPolicyRequest;
use protocols::health::{health_check_response::ServingStatus, CheckRequest, HealthCheckResponse};
use test_support::TestAgent;

/// A ttRPC frame: 10-byte header (length, stream id, type, flags) + payload.
fn frame(stream_id: u32, msg_type: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(10 + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(&stream_id.to_be_bytes());
    f.push(msg_type);
    f.push(0);
    f.extend_from_slice(payload);
    f
}

const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;

fn raw_request(service: &str, method: &str, payload: Vec<u8>) -> Vec<u8> {
    let mut req = ttrpc::Request::new();
    req.service = service.into();
    req.method = method.into();
    req.payload = payload;
    req.write_to_bytes().expect("encoding a ttrpc request")
}

/// Read one frame; None on EOF.
fn read_frame(s: &mut UnixStream) -> Option<(u32, u8, Vec<u8>)> {
    let mut header = [0u8; 10];
    s.read_exact(&mut header).ok()?;
    let len = u32::from_be_bytes(header[0..4].try_into().ok()?) as usize;
    let id = u32::from_be_bytes(header[4..8].try_into().ok()?);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((id, header[8], payload))
}

async fn assert_serving(agent: &TestAgent) {
    let client = agent.connect().await;
    let resp = client
        .health
        .check(context(5), &CheckRequest::new())
        .await
        .expect("Health.Check after the bad input");
    assert_eq!(resp.status.enum_value(), Ok(ServingStatus::SERVING));
}

#[tokio::test]
async fn check_and_version_round_trip() {
    let agent = TestAgent::start("agent.log=debug").await;
    let resp = agent
        .client
        .health
        .check(context(5), &CheckRequest::new())
        .await
        .unwrap();
    assert_eq!(resp.status.enum_value(), Ok(ServingStatus::SERVING));
    let v = agent
        .client
        .health
        .version(context(5), &CheckRequest::new())
        .await
        .unwrap();
    assert_eq!(v.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.grpc_version, protocols::API_VERSION);
}

#[tokio::test]
async fn startup_record_announces_version_and_config() {
    let agent = TestAgent::start("agent.log=debug").await;
    let log = agent.log_text();
    let announce = log
        .lines()
        .find(|l| l.contains("\"msg\":\"announce\""))
        .unwrap_or_else(|| panic!("no announce record in:\n{log}"));
    let record: serde_json::Value = serde_json::from_str(announce).expect("log records are JSON");
    assert_eq!(record["agent-version"], env!("CARGO_PKG_VERSION"));
    assert!(
        record["config"]
            .as_str()
            .unwrap_or("")
            .contains(&agent.addr),
        "{announce}"
    );
}

#[tokio::test]
async fn unimplemented_rpc_names_itself() {
    let agent = TestAgent::start("").await;
    let err = agent
        .client
        .agent
        .set_policy(context(5), &SetPolicyRequest::new())
        .await
        .expect_err("SetPolicy is not implemented");
    let (code, message) = test_support::rpc::status(&err);
    assert_eq!(code, ttrpc::Code::UNIMPLEMENTED);
    assert!(message.contains("SetPolicy"), "{message}");
    assert_serving(&agent).await;
}

/// A hand-built frame with Kata's service and method names reaches the
/// Health service: the names on the wire are right.
#[tokio::test]
async fn hand_built_frame_uses_kata_names() {
    let agent = TestAgent::start("").await;
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let payload = CheckRequest::new().write_to_bytes().unwrap();
    s.write_all(&frame(
        1,
        REQUEST,
        &raw_request("grpc.Health", "Check", payload),
    ))
    .unwrap();
    let (id, ty, body) = read_frame(&mut s).expect("a response frame");
    assert_eq!((id, ty), (1, RESPONSE));
    let resp = ttrpc::Response::parse_from_bytes(&body).unwrap();
    let check = HealthCheckResponse::parse_from_bytes(&resp.payload).unwrap();
    assert_eq!(check.status.enum_value(), Ok(ServingStatus::SERVING));
}

#[tokio::test]
async fn malformed_frames_do_not_kill_the_server() {
    let mut agent = TestAgent::start("").await;
    // 1. Garbage that is not a ttrpc request, in a well-formed frame.
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&frame(1, REQUEST, &[0xff, 0xff, 0xff, 0x07, 0x01]))
        .unwrap();
    let _ = read_frame(&mut s); // an error response or a closed connection: both fine
                                // 2. A request for a method that does not exist.
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&frame(
        3,
        REQUEST,
        &raw_request("grpc.AgentService", "NoSuchRpc", vec![]),
    ))
    .unwrap();
    let (_, ty, body) = read_frame(&mut s).expect("an error response");
    assert_eq!(ty, RESPONSE);
    let resp = ttrpc::Response::parse_from_bytes(&body).unwrap();
    assert_ne!(resp.status.code(), ttrpc::Code::OK);
    // 3. A valid request whose payload does not decode as the request message.
    s.write_all(&frame(
        5,
        REQUEST,
        &raw_request("grpc.Health", "Check", vec![0x0a, 0xff]),
    ))
    .unwrap();
    if let Some((_, ty, body)) = read_frame(&mut s) {
        assert_eq!(ty, RESPONSE);
        let resp = ttrpc::Response::parse_from_bytes(&body).unwrap();
        assert_ne!(resp.status.code(), ttrpc::Code::OK);
    }
    // 4. A truncated header, then hang up.
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    s.write_all(&[0, 0, 0]).unwrap();
    drop(s);
    assert!(agent.is_running(), "agent died:\n{}", agent.log_text());
    assert_serving(&agent).await;
}

#[tokio::test]
async fn oversized_messages_are_rejected() {
    let mut agent = TestAgent::start("").await;
    // A header announcing more than ttrpc's 4 MiB limit.
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut header = Vec::new();
    header.extend_from_slice(&(64u32 << 20).to_be_bytes());
    header.extend_from_slice(&1u32.to_be_bytes());
    header.extend_from_slice(&[REQUEST, 0]);
    s.write_all(&header).unwrap();
    let _ = s.write_all(&vec![0u8; 1 << 20]);
    let _ = read_frame(&mut s);
    drop(s);
    // A real request over the limit, through the client.
    let mut big = protocols::agent::WriteStreamRequest::new();
    big.container_id = "c".into();
    big.exec_id = "c".into();
    big.data = vec![b'x'; 5 << 20];
    let res = agent.client.agent.write_stdin(context(10), &big).await;
    assert!(res.is_err(), "a 5 MiB request must be refused");
    assert!(agent.is_running(), "agent died:\n{}", agent.log_text());
    assert_serving(&agent).await;
}

#[tokio::test]
async fn two_concurrent_clients() {
    let agent = TestAgent::start("").await;
    let (a, b) = (agent.connect().await, agent.connect().await);
    let run = |c: agent_ctl::AgentClient| async move {
        for _ in 0..200 {
            let r = c
                .health
                .check(context(5), &CheckRequest::new())
                .await
                .unwrap();
            assert_eq!(r.status.enum_value(), Ok(ServingStatus::SERVING));
        }
    };
    let (ra, rb) = tokio::join!(tokio::spawn(run(a)), tokio::spawn(run(b)));
    ra.unwrap();
    rb.unwrap();
}

#[test]
fn version_flag_reports_arch() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kata-agent"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("arch {}", std::env::consts::ARCH)),
        "{text}"
    );
    assert!(text.starts_with("kata-agent version "), "{text}");
}

#[test]
fn bad_server_address_exits_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let cmdline = dir.path().join("cmdline");
    std::fs::write(&cmdline, "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kata-agent"))
        .arg("--cmdline")
        .arg(&cmdline)
        .env("KATA_AGENT_SERVER_ADDR", "tcp://1.2.3.4:5")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcp://1.2.3.4:5"), "{err}");
}

/// A hybrid-vsock backend in front of the agent's unix socket, like
/// vhost-device-vsock's `--uds-path`: reads `CONNECT <port>\n`, answers
/// `OK <port>\n`, then relays bytes both ways.
fn hybrid_vsock_proxy(
    dir: &std::path::Path,
    agent_socket: std::path::PathBuf,
) -> std::path::PathBuf {
    let uds = dir.join("vm.vsock");
    let listener = std::os::unix::net::UnixListener::bind(&uds).expect("binding the proxy");
    std::thread::spawn(move || {
        for host in listener.incoming().flatten() {
            let agent_socket = agent_socket.clone();
            std::thread::spawn(move || {
                let mut host = host;
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while host.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
                    line.push(b[0]);
                }
                let Some(port) = line.strip_prefix(b"CONNECT ") else {
                    return;
                };
                let mut answer = b"OK ".to_vec();
                answer.extend_from_slice(port);
                answer.push(b'\n');
                let Ok(guest) = UnixStream::connect(&agent_socket) else {
                    return;
                };
                if host.write_all(&answer).is_err() {
                    return;
                }
                let (mut h2, mut g2) = match (host.try_clone(), guest.try_clone()) {
                    (Ok(h), Ok(g)) => (h, g),
                    _ => return,
                };
                std::thread::spawn(move || std::io::copy(&mut g2, &mut h2));
                let (mut host, mut guest) = (host, guest);
                let _ = std::io::copy(&mut host, &mut guest);
            });
        }
    });
    uds
}

/// agent-ctl's client over an `hvsock://` address (the path the e2e suite
/// and `vm run` use) reaches the agent through the handshake, and the first
/// bytes after `OK` are not lost.
#[tokio::test]
async fn hybrid_vsock_address_reaches_the_agent() {
    let agent = TestAgent::start("").await;
    let uds = hybrid_vsock_proxy(agent.dir.path(), agent.socket.clone());
    let addr = agent_ctl::Address::HybridVsock { uds, port: 1024 }.to_string();
    let client = agent_ctl::connect(&addr, Duration::from_secs(10))
        .await
        .expect("connecting through the hybrid vsock proxy");
    for _ in 0..3 {
        let resp = client
            .health
            .check(context(5), &CheckRequest::new())
            .await
            .expect("Health.Check over hybrid vsock");
        assert_eq!(resp.status.enum_value(), Ok(ServingStatus::SERVING));
    }
}
