use std::collections::HashMap;
use std::time::Duration;

use super::*;

fn parse(cmdline: &str) -> (AgentConfig, Vec<String>) {
    AgentConfig::from_cmdline(cmdline).unwrap_or_else(|e| panic!("{cmdline:?}: {e:#}"))
}

fn parse_err(cmdline: &str) -> String {
    match AgentConfig::from_cmdline(cmdline) {
        Ok((cfg, _)) => panic!("{cmdline:?} accepted: {cfg:?}"),
        Err(e) => format!("{e:#}"),
    }
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write_temp(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

#[test]
fn defaults_match_kata() {
    let c = AgentConfig::default();
    assert!(!c.debug_console);
    assert!(!c.dev_mode);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.log_level.to_slog(), slog::Level::Info);
    assert_eq!(c.hotplug_timeout, Duration::from_secs(3));
    assert_eq!(c.cdh_api_timeout, Duration::from_secs(50));
    assert_eq!(c.cdi_timeout, Duration::from_secs(100));
    assert_eq!(c.image_pull_timeout, Duration::from_secs(1200));
    assert_eq!(c.debug_console_vport, 0);
    assert_eq!(c.log_vport, 0);
    assert_eq!(c.passfd_listener_port, 0);
    assert_eq!(c.container_pipe_size, 0);
    assert_eq!(c.server_addr, "vsock://-1:1024");
    assert_eq!(c.cgroup_no_v1, "");
    assert!(!c.unified_cgroup_hierarchy);
    assert!(!c.tracing);
    assert_eq!(c.https_proxy, "");
    assert_eq!(c.no_proxy, "");
    assert_eq!(
        c.guest_components_rest_api,
        GuestComponentsRestApi::Resource
    );
    assert_eq!(
        c.guest_components_procs,
        GuestComponentsProcs::ApiServerRest
    );
    assert_eq!(c.image_registry_auth, "");
    assert!(!c.secure_storage_integrity);
    assert!(!c.enable_signature_verification);
    assert_eq!(c.image_policy_file, "");
    assert_eq!(c.policy_file, "");
}

#[test]
fn empty_and_foreign_cmdlines_give_defaults_without_warnings() {
    for line in [
        "",
        "   \n",
        "foo bar",
        "foo agent bar",
        "debug_console devmode trace",
        "console=hvc0 root=/dev/vda1 rootflags=data=ordered,errors=remount-ro ro quiet",
        "agentx.log=debug .trace",
    ] {
        let (cfg, warnings) = parse(line);
        assert_eq!(cfg, AgentConfig::default(), "{line:?}");
        assert!(warnings.is_empty(), "{line:?}: {warnings:?}");
    }
}

/// One good value per option, checked on the field it sets.
#[test]
fn every_option_parses_a_good_value() {
    type Check = fn(&AgentConfig) -> bool;
    let cases: &[(&str, Check)] = &[
        ("agent.debug_console", |c| c.debug_console),
        ("agent.debug_console=1", |c| c.debug_console),
        ("agent.devmode", |c| c.dev_mode),
        ("agent.devmode=true", |c| c.dev_mode),
        ("agent.trace", |c| c.tracing),
        ("agent.trace=true", |c| c.tracing),
        ("agent.log=debug", |c| c.log_level == LogLevel::Debug),
        ("agent.log=fatal", |c| {
            c.log_level.to_slog() == slog::Level::Critical
        }),
        ("agent.log=warn", |c| {
            c.log_level.to_slog() == slog::Level::Warning
        }),
        ("agent.hotplug_timeout=100", |c| {
            c.hotplug_timeout == Duration::from_secs(100)
        }),
        ("agent.cdh_api_timeout=7", |c| {
            c.cdh_api_timeout == Duration::from_secs(7)
        }),
        ("agent.cdi_timeout=9", |c| {
            c.cdi_timeout == Duration::from_secs(9)
        }),
        ("agent.image_pull_timeout=3600", |c| {
            c.image_pull_timeout == Duration::from_secs(3600)
        }),
        ("agent.debug_console_vport=1026", |c| {
            c.debug_console_vport == 1026
        }),
        ("agent.log_vport=1025", |c| c.log_vport == 1025),
        ("agent.passfd_listener_port=1027", |c| {
            c.passfd_listener_port == 1027
        }),
        ("agent.container_pipe_size=2097152", |c| {
            c.container_pipe_size == 2_097_152
        }),
        ("agent.server_addr=unix:///tmp/a.sock", |c| {
            c.server_addr == "unix:///tmp/a.sock"
        }),
        ("agent.https_proxy=http://192.168.1.100:81/", |c| {
            c.https_proxy == "http://192.168.1.100:81/"
        }),
        ("agent.no_proxy=192.168.1.0/24,172.16.0.0/12", |c| {
            c.no_proxy == "192.168.1.0/24,172.16.0.0/12"
        }),
        ("agent.guest_components_rest_api=all", |c| {
            c.guest_components_rest_api == GuestComponentsRestApi::All
        }),
        ("agent.guest_components_rest_api=attestation", |c| {
            c.guest_components_rest_api == GuestComponentsRestApi::Attestation
        }),
        ("agent.guest_components_procs=none", |c| {
            c.guest_components_procs == GuestComponentsProcs::None
        }),
        ("agent.guest_components_procs=attestation-agent", |c| {
            c.guest_components_procs == GuestComponentsProcs::AttestationAgent
        }),
        ("agent.guest_components_procs=confidential-data-hub", |c| {
            c.guest_components_procs == GuestComponentsProcs::ConfidentialDataHub
        }),
        (
            "agent.image_registry_auth=kbs:///default/credentials/test",
            |c| c.image_registry_auth == "kbs:///default/credentials/test",
        ),
        ("agent.enable_signature_verification=true", |c| {
            c.enable_signature_verification
        }),
        (
            "agent.image_policy_file=file:///etc/image-policy.json",
            |c| c.image_policy_file == "file:///etc/image-policy.json",
        ),
        ("agent.secure_storage_integrity=1", |c| {
            c.secure_storage_integrity
        }),
        ("agent.secure_image_storage_integrity=true", |c| {
            c.secure_storage_integrity
        }),
        ("systemd.unified_cgroup_hierarchy=1", |c| {
            c.unified_cgroup_hierarchy
        }),
        ("systemd.unified_cgroup_hierarchy=yes", |c| {
            c.unified_cgroup_hierarchy
        }),
        ("cgroup_no_v1=all", |c| c.cgroup_no_v1 == "all"),
    ];
    for (line, check) in cases {
        let (cfg, warnings) = parse(line);
        assert!(check(&cfg), "{line}: {cfg:?}");
        assert!(warnings.is_empty(), "{line}: {warnings:?}");
    }
}

/// One bad value per option: an error naming the option and the value.
#[test]
fn every_option_rejects_a_bad_value() {
    let cases = [
        ("agent.debug_console=yes", "invalid boolean"),
        ("agent.devmode=on", "invalid boolean"),
        ("agent.trace=foo", "invalid boolean"),
        (
            "agent.enable_signature_verification=maybe",
            "invalid boolean",
        ),
        ("agent.secure_storage_integrity=-1", "invalid boolean"),
        ("agent.secure_image_storage_integrity=2x", "invalid boolean"),
        ("systemd.unified_cgroup_hierarchy=a", "invalid boolean"),
        ("agent.log=debugging", "invalid log level"),
        ("agent.hotplug_timeout=abc", "invalid duration"),
        ("agent.cdh_api_timeout=-5", "invalid duration"),
        ("agent.cdi_timeout=1.5", "invalid duration"),
        ("agent.image_pull_timeout=20m", "invalid duration"),
        ("agent.debug_console_vport=-1", "invalid port"),
        ("agent.log_vport=abc", "invalid port"),
        ("agent.passfd_listener_port=99999999999", "invalid port"),
        ("agent.container_pipe_size=-1", "must not be negative"),
        ("agent.container_pipe_size=5.0", "expected an integer"),
        ("agent.server_addr=", "missing value"),
        ("agent.https_proxy=proxy.example:81", "invalid URL"),
        ("agent.no_proxy=", "missing value"),
        (
            "agent.guest_components_rest_api=everything",
            "REST API feature",
        ),
        (
            "agent.guest_components_procs=api_server_rest",
            "guest components process",
        ),
        ("agent.image_registry_auth=", "missing value"),
        ("agent.image_policy_file=", "missing value"),
        ("agent.config_file=", "missing value"),
    ];
    for (line, reason) in cases {
        let err = parse_err(line);
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        assert!(
            err.contains(&format!("{name}=\"{value}\"")),
            "{line}: error does not name option and value: {err}"
        );
        assert!(err.contains(reason), "{line}: expected {reason:?} in {err}");
    }
}

#[test]
fn value_options_without_a_value_are_errors() {
    for name in [
        "agent.log",
        "agent.hotplug_timeout",
        "agent.server_addr",
        "agent.config_file",
    ] {
        let err = parse_err(&format!("quiet {name}"));
        assert!(
            err.contains(&format!("{name}: missing value")),
            "{name}: {err}"
        );
    }
}

#[test]
fn bare_booleans_are_true_and_explicit_false_resets() {
    let (cfg, _) =
        parse("agent.debug_console agent.devmode agent.trace agent.secure_storage_integrity");
    assert!(cfg.debug_console && cfg.dev_mode && cfg.tracing && cfg.secure_storage_integrity);
    let (cfg, _) = parse("agent.trace agent.trace=0 agent.debug_console agent.debug_console=false");
    assert!(!cfg.tracing);
    assert!(!cfg.debug_console);
}

#[test]
fn near_miss_names_do_not_set_options() {
    let (cfg, warnings) = parse("agent.debug_consolex agent.devmode agent.tracer agent.logx=debug");
    assert!(!cfg.debug_console);
    assert!(cfg.dev_mode);
    assert!(!cfg.tracing);
    assert_eq!(cfg.log_level, LogLevel::Info);
    assert_eq!(
        warnings,
        vec![
            "unknown agent option agent.debug_consolex ignored",
            "unknown agent option agent.tracer ignored",
            "unknown agent option agent.logx ignored",
        ]
    );
}

#[test]
fn unknown_agent_option_is_a_warning_not_an_error() {
    let (cfg, warnings) = parse("agent.log=debug agent.no_such_thing=1 agent.mem_agent_enable=1");
    assert_eq!(cfg.log_level, LogLevel::Debug);
    assert_eq!(
        warnings,
        vec![
            "unknown agent option agent.no_such_thing ignored",
            "unknown agent option agent.mem_agent_enable ignored",
        ]
    );
}

#[test]
fn zero_timeout_keeps_the_default_with_a_warning() {
    let (cfg, warnings) = parse("agent.hotplug_timeout=0 agent.cdh_api_timeout=0");
    assert_eq!(cfg.hotplug_timeout, DEFAULT_HOTPLUG_TIMEOUT);
    assert_eq!(cfg.cdh_api_timeout, DEFAULT_CDH_API_TIMEOUT);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("agent.hotplug_timeout=0 ignored"),
        "{warnings:?}"
    );
}

#[test]
fn cgroup_no_v1_other_values_are_left_to_the_kernel() {
    let (cfg, warnings) = parse("cgroup_no_v1=memory cgroup_no_v1=1");
    assert_eq!(cfg.cgroup_no_v1, "");
    assert!(warnings.is_empty());
}

#[test]
fn last_repeated_option_wins() {
    let (cfg, _) = parse("agent.log=debug agent.log=error agent.log_vport=1 agent.log_vport=2");
    assert_eq!(cfg.log_level, LogLevel::Error);
    assert_eq!(cfg.log_vport, 2);
}

#[test]
fn quoted_values_are_unquoted() {
    let (cfg, _) =
        parse(r#"agent.no_proxy="a.example, b.example" "agent.server_addr=unix:///tmp/x y""#);
    assert_eq!(cfg.no_proxy, "a.example, b.example");
    assert_eq!(cfg.server_addr, "unix:///tmp/x y");
    let (cfg, _) = parse(r#"agent.log="debug""#);
    assert_eq!(cfg.log_level, LogLevel::Debug);
}

#[test]
fn config_file_replaces_the_command_line() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write_temp(
        &dir,
        "agent.toml",
        "dev_mode = true\nserver_addr = 'unix:///tmp/f.sock'\n",
    );
    let line = format!(
        "agent.log=debug agent.config_file={} agent.trace",
        path.display()
    );
    let (cfg, warnings) = AgentConfig::from_cmdline(&line)?;
    assert!(cfg.dev_mode);
    assert_eq!(cfg.server_addr, "unix:///tmp/f.sock");
    assert_eq!(
        cfg.log_level,
        LogLevel::Info,
        "cmdline agent.log must be ignored"
    );
    assert!(!cfg.tracing, "cmdline agent.trace must be ignored");
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].starts_with("agent.log ignored"), "{warnings:?}");
    Ok(())
}

#[test]
fn config_file_sets_every_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write_temp(
        &dir,
        "all.toml",
        r#"
debug_console = true
dev_mode = true
log_level = "trace"
hotplug_timeout = { secs = 10, nanos = 0 }
cdh_api_timeout = 20
cdi_timeout = { secs = 30 }
image_pull_timeout = 40
debug_console_vport = 1026
log_vport = 1025
passfd_listener_port = 1027
container_pipe_size = 4096
server_addr = "vsock://-1:2048"
unified_cgroup_hierarchy = true
tracing = true
https_proxy = "http://proxy:3128"
no_proxy = "localhost"
guest_components_rest_api = "all"
guest_components_procs = "none"
image_registry_auth = "file:///root/.docker/config.json"
secure_image_storage_integrity = true
enable_signature_verification = true
image_policy_file = "kbs:///default/image-policy/test"
policy_file = "/etc/policy.rego"
"#,
    );
    let (c, warnings) = AgentConfig::from_toml_file(&path)?;
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(c.debug_console && c.dev_mode && c.unified_cgroup_hierarchy && c.tracing);
    assert!(c.secure_storage_integrity && c.enable_signature_verification);
    assert_eq!(c.log_level, LogLevel::Trace);
    assert_eq!(c.hotplug_timeout, Duration::from_secs(10));
    assert_eq!(c.cdh_api_timeout, Duration::from_secs(20));
    assert_eq!(c.cdi_timeout, Duration::from_secs(30));
    assert_eq!(c.image_pull_timeout, Duration::from_secs(40));
    assert_eq!(
        (c.debug_console_vport, c.log_vport, c.passfd_listener_port),
        (1026, 1025, 1027)
    );
    assert_eq!(c.container_pipe_size, 4096);
    assert_eq!(c.server_addr, "vsock://-1:2048");
    assert_eq!(c.https_proxy, "http://proxy:3128");
    assert_eq!(c.no_proxy, "localhost");
    assert_eq!(c.guest_components_rest_api, GuestComponentsRestApi::All);
    assert_eq!(c.guest_components_procs, GuestComponentsProcs::None);
    assert_eq!(c.image_registry_auth, "file:///root/.docker/config.json");
    assert_eq!(c.image_policy_file, "kbs:///default/image-policy/test");
    assert_eq!(c.policy_file, "/etc/policy.rego");
    Ok(())
}

#[test]
fn config_file_unknown_key_is_a_warning() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write_temp(&dir, "a.toml", "log_level = 'error'\nmystery = 3\n");
    let (cfg, warnings) = AgentConfig::from_toml_file(&path)?;
    assert_eq!(cfg.log_level, LogLevel::Error);
    assert_eq!(
        warnings,
        vec!["unknown agent config file key mystery ignored"]
    );
    Ok(())
}

#[test]
fn config_file_bad_values_are_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [
        (
            "log_level = 'loud'",
            "log_level = \"loud\": invalid log level",
        ),
        (
            "container_pipe_size = -1",
            "container_pipe_size = \"-1\": invalid pipe size",
        ),
        (
            "https_proxy = 'nope'",
            "https_proxy = \"nope\": invalid URL",
        ),
        ("server_addr = ''", "server_addr = \"\": missing value"),
        (
            "guest_components_procs = 'all'",
            "parsing agent config file",
        ),
        ("debug_console = 'yes'", "parsing agent config file"),
        ("hotplug_timeout = 'abc'", "parsing agent config file"),
        ("this is not toml", "parsing agent config file"),
    ];
    for (text, want) in cases {
        let path = write_temp(&dir, "bad.toml", text);
        let err = match AgentConfig::from_toml_file(&path) {
            Ok((cfg, _)) => panic!("{text:?} accepted: {cfg:?}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(want), "{text:?}: expected {want:?} in {err}");
        assert!(
            err.contains(&path.display().to_string()),
            "{text:?}: no path in {err}"
        );
    }
    Ok(())
}

#[test]
fn missing_config_file_is_an_error_naming_it() {
    let err = parse_err("agent.config_file=/nonexistent/agent.toml");
    assert!(
        err.contains("reading agent config file /nonexistent/agent.toml"),
        "{err}"
    );
}

#[test]
fn load_reads_the_cmdline_file_and_env_wins() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cmdline = write_temp(
        &dir,
        "cmdline",
        "agent.server_addr=unix:///tmp/ignored.sock agent.log=debug agent.trace=0\n",
    );
    let vars = env(&[
        ("KATA_AGENT_SERVER_ADDR", "unix:///tmp/env.sock"),
        ("KATA_AGENT_LOG_LEVEL", "trace"),
        ("KATA_AGENT_TRACING", "1"),
        ("KATA_AGENT_POLICY_FILE", "/tmp/policy.rego"),
        ("PATH", "/bin"),
    ]);
    let (cfg, warnings) = AgentConfig::load(&cmdline, &vars)?;
    assert_eq!(cfg.server_addr, "unix:///tmp/env.sock");
    assert_eq!(cfg.log_level, LogLevel::Trace);
    assert!(cfg.tracing);
    assert_eq!(cfg.policy_file, "/tmp/policy.rego");
    assert!(warnings.is_empty(), "{warnings:?}");

    let (cfg, _) = AgentConfig::load(&cmdline, &HashMap::new())?;
    assert_eq!(cfg.server_addr, "unix:///tmp/ignored.sock");
    assert_eq!(cfg.log_level, LogLevel::Debug);
    Ok(())
}

#[test]
fn env_wins_over_config_file_too() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = write_temp(
        &dir,
        "agent.toml",
        "server_addr = 'unix:///tmp/file.sock'\n",
    );
    let cmdline = write_temp(
        &dir,
        "cmdline",
        &format!("agent.config_file={}", file.display()),
    );
    let vars = env(&[("KATA_AGENT_SERVER_ADDR", "unix:///tmp/env.sock")]);
    let (cfg, _) = AgentConfig::load(&cmdline, &vars)?;
    assert_eq!(cfg.server_addr, "unix:///tmp/env.sock");
    Ok(())
}

#[test]
fn bad_env_values_are_warnings_and_change_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cmdline = write_temp(&dir, "cmdline", "agent.trace agent.log=error");
    let vars = env(&[
        ("KATA_AGENT_SERVER_ADDR", ""),
        ("KATA_AGENT_LOG_LEVEL", "debugger"),
        ("KATA_AGENT_TRACING", "foo"),
    ]);
    let (cfg, warnings) = AgentConfig::load(&cmdline, &vars)?;
    assert_eq!(cfg.server_addr, DEFAULT_SERVER_ADDR);
    assert_eq!(cfg.log_level, LogLevel::Error);
    assert!(cfg.tracing);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    Ok(())
}

#[test]
fn missing_cmdline_file_is_an_error() {
    let err = match AgentConfig::load(Path::new("/nonexistent/cmdline"), &HashMap::new()) {
        Ok((cfg, _)) => panic!("accepted: {cfg:?}"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("reading kernel command line /nonexistent/cmdline"),
        "{err}"
    );
}

#[test]
fn effective_config_serializes_to_json() -> anyhow::Result<()> {
    let (cfg, _) = parse("agent.log=warn agent.guest_components_procs=confidential-data-hub");
    let json: serde_json::Value = serde_json::to_value(&cfg)?;
    assert_eq!(json["log_level"], "warning");
    assert_eq!(json["guest_components_procs"], "confidential-data-hub");
    assert_eq!(json["server_addr"], "vsock://-1:1024");
    assert_eq!(json["hotplug_timeout"]["secs"], 3);
    Ok(())
}
