//! Every RPC by name, callable with its request as JSON (protobuf's JSON
//! mapping: field names in lowerCamelCase or as in the proto). The answer
//! comes back as JSON too.

use anyhow::{bail, Context, Result};
use protobuf::MessageFull;
use protocols::agent::*;
use protocols::health::CheckRequest;

use crate::{context, describe, AgentClient};

fn parse<M: MessageFull>(rpc: &str, json: &str) -> Result<M> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    protobuf_json_mapping::parse_from_str::<M>(json).with_context(|| {
        format!(
            "{rpc}: request is not a valid {} in JSON",
            M::descriptor().name()
        )
    })
}

fn print<M: MessageFull>(m: &M) -> Result<String> {
    protobuf_json_mapping::print_to_string(m).context("printing the response as JSON")
}

macro_rules! rpc_table {
    ($($name:ident => $service:ident . $method:ident($req:ty);)*) => {
        /// Names of every RPC this table can call.
        pub const RPC_NAMES: &[&str] = &[$(stringify!($name)),*];

        /// The request of one RPC, parsed and checked before any connection
        /// is made (bad JSON fails at once, not after a connect timeout).
        #[allow(clippy::large_enum_variant, clippy::upper_case_acronyms)]
        #[derive(Debug)]
        pub enum Request {
            $($name($req),)*
        }

        impl Request {
            /// `rpc` (case-insensitive) with `json` as its request (empty:
            /// the default request).
            pub fn parse(rpc: &str, json: &str) -> Result<Request> {
                $(
                    if rpc.eq_ignore_ascii_case(stringify!($name)) {
                        return Ok(Request::$name(parse(stringify!($name), json)?));
                    }
                )*
                bail!("unknown RPC {rpc:?}; known: {}", RPC_NAMES.join(", "))
            }

            /// The RPC's name as in [`RPC_NAMES`].
            pub fn name(&self) -> &'static str {
                match self {
                    $(Request::$name(_) => stringify!($name),)*
                }
            }

            /// Call it with a deadline of `timeout_secs` (0: none); the
            /// response as JSON.
            pub async fn call(&self, client: &AgentClient, timeout_secs: u64) -> Result<String> {
                match self {
                    $(Request::$name(req) => {
                        let resp = client.$service.$method(context(timeout_secs), req).await
                            .map_err(|e| anyhow::anyhow!("{}: {}", stringify!($name), describe(&e)))?;
                        print(&resp)
                    })*
                }
            }
        }
    };
}

rpc_table! {
    Check => health.check(CheckRequest);
    Version => health.version(CheckRequest);
    CreateContainer => agent.create_container(CreateContainerRequest);
    StartContainer => agent.start_container(StartContainerRequest);
    RemoveContainer => agent.remove_container(RemoveContainerRequest);
    ExecProcess => agent.exec_process(ExecProcessRequest);
    SignalProcess => agent.signal_process(SignalProcessRequest);
    WaitProcess => agent.wait_process(WaitProcessRequest);
    UpdateContainer => agent.update_container(UpdateContainerRequest);
    UpdateEphemeralMounts => agent.update_ephemeral_mounts(UpdateEphemeralMountsRequest);
    StatsContainer => agent.stats_container(StatsContainerRequest);
    PauseContainer => agent.pause_container(PauseContainerRequest);
    ResumeContainer => agent.resume_container(ResumeContainerRequest);
    RemoveStaleVirtiofsShareMounts => agent.remove_stale_virtiofs_share_mounts(RemoveStaleVirtiofsShareMountsRequest);
    WriteStdin => agent.write_stdin(WriteStreamRequest);
    ReadStdout => agent.read_stdout(ReadStreamRequest);
    ReadStderr => agent.read_stderr(ReadStreamRequest);
    CloseStdin => agent.close_stdin(CloseStdinRequest);
    TtyWinResize => agent.tty_win_resize(TtyWinResizeRequest);
    UpdateInterface => agent.update_interface(UpdateInterfaceRequest);
    UpdateRoutes => agent.update_routes(UpdateRoutesRequest);
    ListInterfaces => agent.list_interfaces(ListInterfacesRequest);
    ListRoutes => agent.list_routes(ListRoutesRequest);
    AddARPNeighbors => agent.add_arp_neighbors(AddARPNeighborsRequest);
    GetIPTables => agent.get_ip_tables(GetIPTablesRequest);
    SetIPTables => agent.set_ip_tables(SetIPTablesRequest);
    GetMetrics => agent.get_metrics(GetMetricsRequest);
    CreateSandbox => agent.create_sandbox(CreateSandboxRequest);
    DestroySandbox => agent.destroy_sandbox(DestroySandboxRequest);
    OnlineCPUMem => agent.online_cpu_mem(OnlineCPUMemRequest);
    ReseedRandomDev => agent.reseed_random_dev(ReseedRandomDevRequest);
    GetGuestDetails => agent.get_guest_details(GuestDetailsRequest);
    MemHotplugByProbe => agent.mem_hotplug_by_probe(MemHotplugByProbeRequest);
    SetGuestDateTime => agent.set_guest_date_time(SetGuestDateTimeRequest);
    CopyFile => agent.copy_file(CopyFileRequest);
    GetOOMEvent => agent.get_oom_event(GetOOMEventRequest);
    AddSwap => agent.add_swap(AddSwapRequest);
    GetVolumeStats => agent.get_volume_stats(VolumeStatsRequest);
    ResizeVolume => agent.resize_volume(ResizeVolumeRequest);
    SetPolicy => agent.set_policy(SetPolicyRequest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_name_before_any_connection() {
        let r = Request::parse("getguestdetails", r#"{"memBlockSize": true}"#).unwrap();
        assert_eq!(r.name(), "GetGuestDetails");
        match r {
            Request::GetGuestDetails(req) => assert!(req.mem_block_size),
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(Request::parse("Check", "").unwrap().name(), "Check");
        let bad = Request::parse("Check", "{not json").unwrap_err();
        assert!(
            format!("{bad:#}").contains("not a valid CheckRequest"),
            "{bad:#}"
        );
        let unknown = Request::parse("Nope", "").unwrap_err();
        assert!(
            format!("{unknown:#}").contains("unknown RPC \"Nope\""),
            "{unknown:#}"
        );
    }

    #[test]
    fn every_name_parses() {
        for name in RPC_NAMES {
            assert_eq!(Request::parse(name, "").unwrap().name(), *name);
        }
    }
}
