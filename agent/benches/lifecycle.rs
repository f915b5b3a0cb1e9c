//! Container life-cycle latency through the agent's ttRPC API:
//! `cargo bench -p kata-agent --bench lifecycle` (root; busybox-static).
//!
//! 200 cycles of CreateContainer, StartContainer, ReadStdout until EOF +
//! WaitProcess, RemoveContainer for `true`, without and with a seccomp
//! profile; then 200 of CreateSandbox (own PID namespace, as a pod with
//! `shareProcessNamespace`) + DestroySandbox; prints p50/p99 per step as a
//! markdown table for each.

use std::time::{Duration, Instant};

use test_support::{container as cu, spec, TestAgent};

const CYCLES: usize = 200;

#[derive(Default)]
struct Samples {
    create: Vec<Duration>,
    start: Vec<Duration>,
    eof_wait: Vec<Duration>,
    remove: Vec<Duration>,
    total: Vec<Duration>,
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let r = f.await;
    (r, t.elapsed())
}

/// A change to the spec under test.
type Edit = fn(&mut protocols::oci::Spec);

/// The specs measured: none, and a Docker-default-like seccomp profile.
const PROFILES: &[(&str, Edit)] = &[
    ("no seccomp profile", |_| {}),
    ("Docker-like seccomp profile", spec::docker_like_seccomp),
];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    test_support::setup!(dir, rootfs);
    let agent = TestAgent::start("").await;
    for &(profile, edit) in PROFILES {
        let mut s = cycles(&agent, &rootfs, edit).await;
        report(profile, &mut s);
    }
    sandbox_cycles(&agent).await;
}

/// The pod's own start and end: the pause process in new namespaces, and
/// its reaping.
async fn sandbox_cycles(agent: &TestAgent) {
    let a = &agent.client.agent;
    let (mut create, mut destroy) = (Vec::new(), Vec::new());
    for i in 0..CYCLES + 5 {
        let mut req = protocols::agent::CreateSandboxRequest::new();
        req.sandbox_id = format!("bench-sandbox-{i}");
        req.sandbox_pidns = true;
        let (r, c) = timed(a.create_sandbox(agent_ctl::context(30), &req)).await;
        r.expect("CreateSandbox");
        let req = protocols::agent::DestroySandboxRequest::new();
        let (r, d) = timed(a.destroy_sandbox(agent_ctl::context(30), &req)).await;
        r.expect("DestroySandbox");
        if i >= 5 {
            create.push(c);
            destroy.push(d);
        }
    }
    println!("\nkata-agent sandbox, own PID namespace, {CYCLES} cycles (ms)\n");
    println!("| step | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("CreateSandbox", &mut create),
        ("DestroySandbox", &mut destroy),
    ] {
        row(name, v);
    }
}

async fn cycles(agent: &TestAgent, rootfs: &std::path::Path, edit: Edit) -> Samples {
    let c = &agent.client;
    let mut s = Samples::default();
    for i in 0..CYCLES + 5 {
        let id = format!("{}-{i}", cu::cid("bench"));
        let mut spec = spec::container(&id, rootfs, &["true"]);
        edit(&mut spec);
        let t0 = Instant::now();
        let (r, create) = timed(cu::create(c, &id, spec)).await;
        r.expect("create");
        let (r, start) = timed(cu::start(c, &id)).await;
        r.expect("start");
        let ((out, status), eof_wait) = timed(async {
            let out = cu::read_all(c, &id, "", false).await;
            (out, cu::wait(c, &id, "").await.expect("wait"))
        })
        .await;
        assert_eq!((out.as_str(), status), ("", 0));
        let (r, remove) = timed(cu::remove(c, &id)).await;
        r.expect("remove");
        let total = t0.elapsed();
        if i < 5 {
            continue; // warm-up
        }
        s.create.push(create);
        s.start.push(start);
        s.eof_wait.push(eof_wait);
        s.remove.push(remove);
        s.total.push(total);
    }
    s
}

fn report(profile: &str, s: &mut Samples) {
    println!("\nkata-agent container life cycle, `true`, {profile}, {CYCLES} cycles (ms)\n");
    println!("| step | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("CreateContainer", &mut s.create),
        ("StartContainer", &mut s.start),
        ("ReadStdout to EOF + WaitProcess", &mut s.eof_wait),
        ("RemoveContainer", &mut s.remove),
        ("whole cycle", &mut s.total),
    ] {
        row(name, v);
    }
}

fn row(name: &str, v: &mut [Duration]) {
    let p50 = percentile(v, 0.50);
    let p99 = percentile(v, 0.99);
    let max = percentile(v, 1.0);
    println!("| {name} | {} | {} | {} |", ms(p50), ms(p99), ms(max));
}
