//! `e2e suite ...`: run the end-to-end suite against a booted VM and print
//! the pass/fail table (exit 1 on any failure); `--junit PATH` and `--json
//! PATH` also write the results for CI. `e2e list`: the tests in run order.
//! `e2e health ...`: wait for the first answered Health.Check (the
//! boot-time benchmark's probe).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use e2e::report;
use e2e::suite::{self, SuiteConfig};

#[derive(Parser)]
#[command(
    name = "e2e",
    about = "kata-image end-to-end suite (run by cargo xtask vm test)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the suite and print the table.
    Suite(SuiteArgs),
    /// Print the tests in run order, each with the tests it needs.
    List,
    /// Exit 0 once Health.Check is answered, 1 at the timeout.
    Health(HealthArgs),
    /// Time create+start+wait of busybox `true`; print one JSON object.
    Lifecycle(LifecycleArgs),
}

/// The VM's agent and what the host shares with it (suite and lifecycle).
#[derive(clap::Args)]
struct GuestArgs {
    /// Hybrid vsock socket of the VM (vhost-device-vsock's --uds-path).
    #[arg(long)]
    socket: PathBuf,
    #[arg(long, default_value_t = 1024)]
    port: u32,
    /// Host side of the kataShared directory.
    #[arg(long)]
    shared_dir: PathBuf,
    /// virtio-fs or 9p.
    #[arg(long, default_value = "virtio-fs")]
    share: String,
    /// Busybox rootfs for the target arch.
    #[arg(long)]
    busybox: PathBuf,
}

#[derive(clap::Args)]
struct LifecycleArgs {
    #[command(flatten)]
    guest: GuestArgs,
    #[arg(long, default_value_t = 100)]
    runs: usize,
    #[arg(long, default_value_t = 60)]
    boot_timeout_secs: u64,
    #[arg(long, default_value_t = 20)]
    rpc_timeout_secs: u64,
    #[arg(long)]
    vm_pid: Option<u32>,
}

#[derive(clap::Args)]
struct SuiteArgs {
    #[command(flatten)]
    guest: GuestArgs,
    #[arg(long)]
    serial_log: PathBuf,
    /// Shown in the table title.
    #[arg(long, default_value = "")]
    arch: String,
    #[arg(long, default_value_t = 60)]
    boot_timeout_secs: u64,
    #[arg(long, default_value_t = 20)]
    rpc_timeout_secs: u64,
    /// The agent.* options the VM was booted with (for the record).
    #[arg(long = "agent-param")]
    agent_params: Vec<String>,
    /// Comma-separated substrings of test names to run.
    #[arg(long)]
    only: Option<String>,
    /// QEMU's pid, to stop waiting when the VM has exited.
    #[arg(long)]
    vm_pid: Option<u32>,
    /// QEMU's QMP socket, for the pod scenario's hot-plug.
    #[arg(long)]
    qmp_socket: Option<PathBuf>,
    /// The guest takes a hot-added vCPU.
    #[arg(long)]
    cpu_hotplug: bool,
    /// The machine takes a hot-added pc-dimm.
    #[arg(long)]
    dimm_hotplug: bool,
    /// Also write the results as JUnit XML here (testsuite/testcase/failure/skipped).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct HealthArgs {
    #[arg(long)]
    socket: PathBuf,
    #[arg(long, default_value_t = 1024)]
    port: u32,
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    #[arg(long)]
    vm_pid: Option<u32>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("e2e: cannot start the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Cmd::Suite(a) => rt.block_on(run_suite(a)),
        Cmd::List => {
            for t in suite::TESTS {
                println!("{} (needs: {})", t.name, t.needs.join(", "));
            }
            ExitCode::SUCCESS
        }
        Cmd::Health(a) => rt.block_on(health(a)),
        Cmd::Lifecycle(a) => rt.block_on(lifecycle(a)),
    }
}

async fn run_suite(a: SuiteArgs) -> ExitCode {
    let title = format!(
        "{} (agent params: {})",
        if a.arch.is_empty() { "guest" } else { &a.arch },
        a.agent_params.join(" ")
    );
    let cfg = SuiteConfig {
        socket: a.guest.socket,
        port: a.guest.port,
        shared_dir: a.guest.shared_dir,
        share: a.guest.share,
        busybox: a.guest.busybox,
        serial_log: a.serial_log.clone(),
        boot_timeout: Duration::from_secs(a.boot_timeout_secs),
        rpc_timeout: Duration::from_secs(a.rpc_timeout_secs),
        only: a
            .only
            .map(|o| o.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        vm_pid: a.vm_pid,
        qmp_socket: a.qmp_socket,
        cpu_hotplug: a.cpu_hotplug,
        dimm_hotplug: a.dimm_hotplug,
    };
    let outcomes = suite::run(cfg).await;
    print!("{}", report::render(&title, &outcomes));
    let files = [
        (a.junit.as_deref(), report::junit(&title, &outcomes)),
        (a.json.as_deref(), report::json(&title, &outcomes)),
    ];
    let mut written = true;
    for (path, text) in files {
        if let Some(path) = path {
            if let Err(e) = report::write(path, &text) {
                eprintln!("e2e: {e:#}");
                written = false;
            }
        }
    }
    let (_, failed, _) = report::counts(&outcomes);
    if failed == 0 && !outcomes.is_empty() && written {
        ExitCode::SUCCESS
    } else {
        eprintln!("serial log: {}", a.serial_log.display());
        ExitCode::FAILURE
    }
}

async fn health(a: HealthArgs) -> ExitCode {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.timeout_secs);
    match e2e::client::connect_until(&a.socket, a.port, deadline, a.vm_pid).await {
        Ok(_) => {
            println!("health answered after {} ms", started.elapsed().as_millis());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("e2e health: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn lifecycle(a: LifecycleArgs) -> ExitCode {
    let cfg = e2e::lifecycle::LifecycleConfig {
        socket: a.guest.socket,
        port: a.guest.port,
        shared_dir: a.guest.shared_dir,
        share: a.guest.share,
        busybox: a.guest.busybox,
        runs: a.runs,
        boot_timeout: Duration::from_secs(a.boot_timeout_secs),
        rpc_timeout: Duration::from_secs(a.rpc_timeout_secs),
        vm_pid: a.vm_pid,
    };
    match e2e::lifecycle::run(cfg).await {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("e2e lifecycle: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("e2e lifecycle: {e:#}");
            ExitCode::FAILURE
        }
    }
}
