//! `kata-agent`: the guest agent (ttRPC server), or `kata-agent init`, the
//! container init the agent re-executes itself as.
//!
//! Arguments are parsed by hand: there are three, and the binary ships in
//! every guest image, where size counts.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use kata_agent::config::AgentConfig;
use kata_agent::sandbox::AgentContext;
use kata_agent::{logging, server, version};

const USAGE: &str = "usage: kata-agent [--cmdline FILE] | --version | init

Options come from the kernel command line (agent.*), or FILE for tests;
KATA_AGENT_SERVER_ADDR, KATA_AGENT_LOG_LEVEL and KATA_AGENT_TRACING override
them for stand-alone runs.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("{}", version::version_line());
            Ok(())
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("--cmdline") => match args.get(1) {
            Some(path) => run_agent(PathBuf::from(path)),
            None => Err(anyhow::anyhow!("--cmdline needs a file\n{USAGE}")),
        },
        Some("init") => return kata_agent::container::init::main(),
        None => run_agent(PathBuf::from("/proc/cmdline")),
        Some(other) => Err(anyhow::anyhow!("unknown argument {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kata-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_agent(cmdline: PathBuf) -> Result<()> {
    let init_daemon = std::process::id() == 1;
    if init_daemon {
        // /proc/cmdline and everything after need the kernel filesystems.
        kata_agent::pid1::early_setup().context("setting up the guest as PID 1")?;
    }
    let env: HashMap<String, String> = std::env::vars().collect();
    let (config, warnings) = AgentConfig::load(&cmdline, &env)
        .with_context(|| format!("reading the agent configuration from {}", cmdline.display()))?;

    let sink = logging::LogSink::default();
    let logger = logging::create_logger(config.log_level.to_slog(), sink.clone());
    if config.log_vport != 0 {
        logging::serve_log_port(config.log_vport, sink, logger.clone());
    }
    let config_json = serde_json::to_string(&config).context("serialising the configuration")?;
    slog::info!(logger, "announce";
        "agent-version" => version::AGENT_VERSION,
        "api-version" => protocols::API_VERSION,
        "agent-pid" => std::process::id(),
        "init-daemon" => init_daemon,
        "config" => config_json);
    for w in warnings {
        slog::warn!(logger, "configuration"; "warning" => w);
    }
    if !init_daemon {
        prepare_for_requests(&logger);
    }
    if config.debug_console {
        kata_agent::debug_console::start(config.debug_console_vport, logger.clone());
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let unified = config.unified_cgroup_hierarchy;
    let ctx = AgentContext::new(config, logger.clone(), init_daemon);
    let served = runtime.block_on(async {
        // Reap from the start: as PID 1, orphans arrive before any container.
        kata_agent::reaper::start()?;
        if init_daemon {
            // lo and the cgroup hierarchies after the listener is up (Kata's
            // agent does them before): mounting the v1 controllers took
            // 150 ms under TCG, lo 40 ms beside them, and only AgentService
            // RPCs need them (they wait, see start_up_in_background).
            // So do the kernel filesystems but /proc, the open-file limit and
            // the record of what the agent makes: only requests need them,
            // and a fresh guest's /run has no dead agent's record to undo.
            let log = logger.clone();
            let runtime = tokio::runtime::Handle::current();
            ctx.start_up_in_background(move || {
                kata_agent::pid1::mount_for_requests()?;
                prepare_for_requests(&log);
                runtime.block_on(async {
                    let h = kata_agent::network::connect()?;
                    kata_agent::network::link::bring_up_loopback(&h).await
                })?;
                mount_cgroups(unified, &log);
                Ok(())
            });
        }
        server::serve(ctx).await
    });
    kata_agent::owned::close_if_empty();
    if init_daemon {
        // As Kata's agent: the guest's init ends by powering off, served or
        // failed (exiting would panic the kernel).
        if let Err(e) = &served {
            slog::error!(logger, "the agent failed"; "error" => format!("{e:#}"));
        }
        slog::info!(logger, "powering off");
        kata_agent::pid1::power_off()?;
    }
    served
}

/// What must be done before the first request, logging what failed: raise
/// the open-file limit (a guest's init gets 1024), and undo what a crashed
/// agent provably left (`owned`).
fn prepare_for_requests(logger: &slog::Logger) {
    match kata_agent::process::fd_limit::raise() {
        Ok((old, new)) => slog::info!(logger, "open-file limit"; "was" => old, "now" => new),
        Err(e) => slog::warn!(logger, "open-file limit not raised"; "error" => format!("{e:#}")),
    }
    match kata_agent::owned::open() {
        Ok(undone) if undone.is_empty() => {}
        Ok(undone) => {
            slog::info!(logger, "undid a dead agent's leftovers"; "undone" => undone.join(", "))
        }
        Err(e) => {
            slog::warn!(logger, "no record of what this agent makes"; "error" => format!("{e:#}"))
        }
    }
}

/// Mount the cgroup hierarchies (unified or v1, as the configuration's
/// systemd.unified_cgroup_hierarchy says), logging what failed.
fn mount_cgroups(unified: bool, logger: &slog::Logger) {
    match kata_agent::cgroups::mounts::mount_cgroup_hierarchies_reporting(unified) {
        Ok(busy) if busy.is_empty() => slog::debug!(logger, "cgroup hierarchies mounted"),
        Ok(busy) => {
            slog::warn!(logger, "cgroup controllers not mounted"; "controllers" => busy.join(","))
        }
        Err(e) => slog::error!(logger, "mounting cgroup hierarchies"; "error" => format!("{e:#}")),
    }
}
