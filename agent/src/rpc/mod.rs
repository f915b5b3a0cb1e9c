//! The ttRPC services: `grpc.AgentService` and `grpc.Health`.
//!
//! This module only dispatches: each RPC goes to a function in its family's
//! module (container life cycle, process I/O, network, sandbox, guest),
//! which maps the request to a call into the layer below and the result to
//! a response; errors become ttRPC statuses here, once (`status`). An RPC
//! this agent does not implement answers UNIMPLEMENTED naming it, so a
//! runtime gets a clear status instead of a hang.

pub mod container;
pub mod guest;
pub mod health;
pub mod io;
pub mod network;
pub mod resources;
pub mod sandbox;
pub mod status;

use std::sync::Arc;

use async_trait::async_trait;
use protocols::agent::*;
use protocols::empty::Empty;
use protocols::{agent_ttrpc, csi, types};
use ttrpc::r#async::TtrpcContext;

use crate::sandbox::AgentContext;

/// The `grpc.AgentService` implementation.
#[derive(Clone)]
pub struct AgentService {
    ctx: Arc<AgentContext>,
}

impl AgentService {
    pub fn new(ctx: Arc<AgentContext>) -> Self {
        AgentService { ctx }
    }
}

/// Writes the trait impl: one line per RPC, `method(Request) -> Response => family::function`.
/// Every call is logged at debug level, a failure at info level with its
/// error; the error becomes a ttRPC status here, and only here. Every call
/// first waits for the agent's background start-up (`AgentContext::started`).
macro_rules! dispatch {
    ($($method:ident($req:ty) -> $resp:ty => $(@$mode:ident)? $($handler:ident)::+;)*) => {
        #[async_trait]
        impl agent_ttrpc::AgentService for AgentService {
            $(
                async fn $method(&self, _ttrpc: &TtrpcContext, req: $req) -> ttrpc::Result<$resp> {
                    let rpc = stringify!($method);
                    slog::debug!(self.ctx.logger, "rpc request"; "rpc" => rpc);
                    // Start-up work moved behind the listener (lo, the
                    // cgroup mounts) finishes first; Health does not wait.
                    let result = match self.ctx.started().await {
                        Ok(()) => run!($($mode)?; &self.ctx, req, $($handler)::+),
                        Err(e) => Err(e),
                    };
                    result.map_err(|e| {
                        slog::info!(self.ctx.logger, "rpc failed"; "rpc" => rpc, "error" => format!("{e:#}"));
                        status::to_status(&e)
                    })
                }
            )*
        }
    };
}

/// How `dispatch!` runs a handler. Plain: inside the request's future, which
/// ttrpc drops at the client's deadline or when the connection goes.
/// `@detached`: in a task of its own, awaited; the task runs to completion
/// (or its own rollback) whatever happens to the call. For every RPC that
/// changes state, so a cut call never leaves half of a change.
macro_rules! run {
    (; $ctx:expr, $req:expr, $($handler:ident)::+) => {
        $($handler)::+($ctx, $req).await
    };
    (detached; $ctx:expr, $req:expr, $($handler:ident)::+) => {{
        let ctx = Arc::clone($ctx);
        let req = $req;
        match tokio::spawn(async move { $($handler)::+(&ctx, req).await }).await {
            Ok(result) => result,
            Err(e) => Err(crate::error::Error::internal(format!("the request's task failed: {e}"))),
        }
    }};
}

dispatch! {
    create_container(CreateContainerRequest) -> Empty => @detached container::create_container;
    start_container(StartContainerRequest) -> Empty => @detached container::start_container;
    remove_container(RemoveContainerRequest) -> Empty => @detached container::remove_container;
    exec_process(ExecProcessRequest) -> Empty => @detached container::exec_process;
    signal_process(SignalProcessRequest) -> Empty => container::signal_process;
    wait_process(WaitProcessRequest) -> WaitProcessResponse => container::wait_process;
    update_container(UpdateContainerRequest) -> Empty => @detached resources::update_container;
    update_ephemeral_mounts(UpdateEphemeralMountsRequest) -> Empty => @detached sandbox::update_ephemeral_mounts;
    stats_container(StatsContainerRequest) -> StatsContainerResponse => resources::stats_container;
    pause_container(PauseContainerRequest) -> Empty => @detached resources::pause_container;
    resume_container(ResumeContainerRequest) -> Empty => @detached resources::resume_container;
    remove_stale_virtiofs_share_mounts(RemoveStaleVirtiofsShareMountsRequest) -> Empty => sandbox::remove_stale_virtiofs_share_mounts;

    write_stdin(WriteStreamRequest) -> WriteStreamResponse => io::write_stdin;
    read_stdout(ReadStreamRequest) -> ReadStreamResponse => io::read_stdout;
    read_stderr(ReadStreamRequest) -> ReadStreamResponse => io::read_stderr;
    close_stdin(CloseStdinRequest) -> Empty => io::close_stdin;
    tty_win_resize(TtyWinResizeRequest) -> Empty => io::tty_win_resize;

    update_interface(UpdateInterfaceRequest) -> types::Interface => @detached network::update_interface;
    update_routes(UpdateRoutesRequest) -> Routes => @detached network::update_routes;
    list_interfaces(ListInterfacesRequest) -> Interfaces => network::list_interfaces;
    list_routes(ListRoutesRequest) -> Routes => network::list_routes;
    add_arp_neighbors(AddARPNeighborsRequest) -> Empty => @detached network::add_arp_neighbors;
    get_ip_tables(GetIPTablesRequest) -> GetIPTablesResponse => network::get_ip_tables;
    set_ip_tables(SetIPTablesRequest) -> SetIPTablesResponse => @detached network::set_ip_tables;

    get_metrics(GetMetricsRequest) -> Metrics => guest::get_metrics;

    create_sandbox(CreateSandboxRequest) -> Empty => @detached sandbox::create_sandbox;
    destroy_sandbox(DestroySandboxRequest) -> Empty => @detached sandbox::destroy_sandbox;
    online_cpu_mem(OnlineCPUMemRequest) -> Empty => @detached guest::online_cpu_mem;
    reseed_random_dev(ReseedRandomDevRequest) -> Empty => guest::reseed_random_dev;
    get_guest_details(GuestDetailsRequest) -> GuestDetailsResponse => guest::get_guest_details;
    mem_hotplug_by_probe(MemHotplugByProbeRequest) -> Empty => guest::mem_hotplug_by_probe;
    set_guest_date_time(SetGuestDateTimeRequest) -> Empty => guest::set_guest_date_time;
    copy_file(CopyFileRequest) -> Empty => @detached guest::copy_file;
    get_oom_event(GetOOMEventRequest) -> OOMEvent => resources::get_oom_event;
    add_swap(AddSwapRequest) -> Empty => guest::add_swap;
    get_volume_stats(VolumeStatsRequest) -> csi::VolumeStatsResponse => guest::get_volume_stats;
    resize_volume(ResizeVolumeRequest) -> Empty => guest::resize_volume;
    set_policy(SetPolicyRequest) -> Empty => guest::set_policy;
    add_swap_path(AddSwapPathRequest) -> Empty => guest::add_swap_path;
    get_diagnostic_data(GetDiagnosticDataRequest) -> GetDiagnosticDataResponse => guest::get_diagnostic_data;
    mem_agent_memcg_set(MemAgentMemcgConfig) -> Empty => guest::mem_agent_memcg_set;
    mem_agent_compact_set(MemAgentCompactConfig) -> Empty => guest::mem_agent_compact_set;
}
