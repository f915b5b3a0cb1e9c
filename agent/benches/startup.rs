//! Agent start-up benchmark: time from spawning a stand-alone agent to its
//! first answered Health.Check, idle RSS, and binary size. Prints a table.
//! `cargo bench -p kata-agent --bench startup` (release profile).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 30;

/// A Health.Check request frame, built by hand (service 1, method 2).
fn check_frame() -> Vec<u8> {
    let field = |n: u8, s: &[u8]| [vec![(n << 3) | 2, s.len() as u8], s.to_vec()].concat();
    let req = [field(1, b"grpc.Health"), field(2, b"Check")].concat();
    let mut f = (req.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&1u32.to_be_bytes());
    f.extend_from_slice(&[1, 0]);
    f.extend_from_slice(&req);
    f
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let bin = env!("CARGO_BIN_EXE_kata-agent");
    let dir = tempfile::tempdir().expect("temp dir");
    let cmdline = dir.path().join("cmdline");
    std::fs::write(&cmdline, "").expect("writing cmdline");
    let frame = check_frame();
    let (mut times, mut rss) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let sock = dir.path().join(format!("a{i}.sock"));
        let start = Instant::now();
        let mut child = Command::new(bin)
            .arg("--cmdline")
            .arg(&cmdline)
            .env(
                "KATA_AGENT_SERVER_ADDR",
                format!("unix://{}", sock.display()),
            )
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning the agent");
        let mut s = loop {
            match UnixStream::connect(&sock) {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(Duration::from_micros(200)),
            }
        };
        s.write_all(&frame).expect("sending Check");
        let mut header = [0u8; 10];
        s.read_exact(&mut header).expect("reading the answer");
        let mut body =
            vec![0u8; u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize];
        s.read_exact(&mut body).expect("reading the answer");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        drop(s);
        std::thread::sleep(Duration::from_millis(300));
        rss.push(rss_kib(child.id()) as f64);
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort_by(f64::total_cmp);
    rss.sort_by(f64::total_cmp);
    let size = std::fs::metadata(bin).map(|m| m.len()).unwrap_or(0);
    println!("| metric ({RUNS} runs) | p50 | p99 | max |\n|---|---|---|---|");
    println!(
        "| spawn to first Health.Check (ms) | {:.1} | {:.1} | {:.1} |",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[times.len() - 1]
    );
    println!(
        "| idle RSS (KiB) | {:.0} | {:.0} | {:.0} |",
        percentile(&rss, 0.5),
        percentile(&rss, 0.99),
        rss[rss.len() - 1]
    );
    println!("\nbinary: {bin} ({size} bytes)");
}
