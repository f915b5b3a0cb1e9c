//! Wire compatibility with Kata's agent API: messages encoded from known
//! values must produce known bytes, and field numbers/names must match Kata's.

use protobuf::{Message, MessageFull};
use protocols::agent::*;
use protocols::health::*;
use protocols::{oci, types};

/// Protobuf tag byte for a field number and wire type (fields < 16).
fn tag(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}
const VARINT: u8 = 0;
const LEN: u8 = 2;

#[test]
fn create_container_request_bytes() {
    let mut req = CreateContainerRequest::new();
    req.container_id = "abc".into();
    req.exec_id = "e".into();
    req.sandbox_pidns = true;
    let mut spec = oci::Spec::new();
    spec.Hostname = "h".into();
    req.OCI = protobuf::MessageField::some(spec);
    let bytes = req.write_to_bytes().unwrap();
    assert_eq!(
        bytes,
        vec![
            tag(1, LEN),
            3,
            b'a',
            b'b',
            b'c', // container_id = 1
            tag(2, LEN),
            1,
            b'e', // exec_id = 2
            tag(6, LEN),
            3,
            tag(4, LEN),
            1,
            b'h', // OCI = 6 { Hostname = 4 }
            tag(7, VARINT),
            1, // sandbox_pidns = 7
        ]
    );
    // And back: Kata's runtime reads what we write.
    let back = CreateContainerRequest::parse_from_bytes(&bytes).unwrap();
    assert_eq!(back, req);
}

#[test]
fn stream_and_wait_messages_bytes() {
    let mut w = WriteStreamRequest::new();
    w.container_id = "c".into();
    w.exec_id = "x".into();
    w.data = b"hi".to_vec();
    assert_eq!(
        w.write_to_bytes().unwrap(),
        vec![
            tag(1, LEN),
            1,
            b'c',
            tag(2, LEN),
            1,
            b'x',
            tag(3, LEN),
            2,
            b'h',
            b'i'
        ]
    );
    let mut r = ReadStreamRequest::new();
    r.len = 300;
    assert_eq!(
        r.write_to_bytes().unwrap(),
        vec![tag(3, VARINT), 0xac, 0x02]
    );
    let mut s = WaitProcessResponse::new();
    s.status = 137;
    assert_eq!(
        s.write_to_bytes().unwrap(),
        vec![tag(1, VARINT), 0x89, 0x01]
    );
    let mut sig = SignalProcessRequest::new();
    sig.signal = 9;
    assert_eq!(sig.write_to_bytes().unwrap(), vec![tag(3, VARINT), 9]);
}

#[test]
fn health_bytes() {
    let mut resp = HealthCheckResponse::new();
    resp.status = health_check_response::ServingStatus::SERVING.into();
    assert_eq!(resp.write_to_bytes().unwrap(), vec![tag(1, VARINT), 1]);
    let mut v = VersionCheckResponse::new();
    v.grpc_version = "1".into();
    v.agent_version = "2".into();
    assert_eq!(
        v.write_to_bytes().unwrap(),
        vec![tag(1, LEN), 1, b'1', tag(2, LEN), 1, b'2']
    );
}

/// (message, field name, field number) as in Kata's protos. Covers the
/// fields whose numbers are not simply 1..n in order, and every message family.
#[test]
fn field_numbers_match_kata() {
    fn number<M: MessageFull>(field: &str) -> i32 {
        let d = M::descriptor();
        d.field_by_name(field)
            .unwrap_or_else(|| panic!("{} has no field {field}", d.name()))
            .number()
    }
    let cases: &[(&str, &str, i32, i32)] = &[
        (
            "CreateContainerRequest",
            "OCI",
            number::<CreateContainerRequest>("OCI"),
            6,
        ),
        (
            "CreateContainerRequest",
            "shared_mounts",
            number::<CreateContainerRequest>("shared_mounts"),
            8,
        ),
        (
            "ExecProcessRequest",
            "process",
            number::<ExecProcessRequest>("process"),
            4,
        ),
        (
            "RemoveContainerRequest",
            "timeout",
            number::<RemoveContainerRequest>("timeout"),
            2,
        ),
        (
            "ReseedRandomDevRequest",
            "data",
            number::<ReseedRandomDevRequest>("data"),
            2,
        ),
        ("FSGroup", "group_id", number::<FSGroup>("group_id"), 2),
        (
            "FSGroup",
            "group_change_policy",
            number::<FSGroup>("group_change_policy"),
            3,
        ),
        (
            "Storage",
            "mount_point",
            number::<Storage>("mount_point"),
            6,
        ),
        ("Storage", "fs_group", number::<Storage>("fs_group"), 7),
        (
            "CreateSandboxRequest",
            "sandbox_id",
            number::<CreateSandboxRequest>("sandbox_id"),
            5,
        ),
        (
            "CopyFileRequest",
            "data",
            number::<CopyFileRequest>("data"),
            8,
        ),
        (
            "SetGuestDateTimeRequest",
            "Usec",
            number::<SetGuestDateTimeRequest>("Usec"),
            2,
        ),
        (
            "GuestDetailsResponse",
            "support_mem_hotplug_probe",
            number::<GuestDetailsResponse>("support_mem_hotplug_probe"),
            3,
        ),
        (
            "StatsContainerResponse",
            "network_stats",
            number::<StatsContainerResponse>("network_stats"),
            2,
        ),
        ("MemoryStats", "stats", number::<MemoryStats>("stats"), 6),
        (
            "CgroupStats",
            "hugetlb_stats",
            number::<CgroupStats>("hugetlb_stats"),
            5,
        ),
        (
            "TtyWinResizeRequest",
            "column",
            number::<TtyWinResizeRequest>("column"),
            4,
        ),
        ("Spec", "Linux", number::<oci::Spec>("Linux"), 8),
        ("Spec", "Windows", number::<oci::Spec>("Windows"), 10),
        (
            "Process",
            "SelinuxLabel",
            number::<oci::Process>("SelinuxLabel"),
            12,
        ),
        ("Linux", "IntelRdt", number::<oci::Linux>("IntelRdt"), 13),
        (
            "LinuxResources",
            "Network",
            number::<oci::LinuxResources>("Network"),
            7,
        ),
        (
            "LinuxSyscall",
            "errnoret",
            number::<oci::LinuxSyscall>("errnoret"),
            3,
        ),
        (
            "Interface",
            "raw_flags",
            number::<types::Interface>("raw_flags"),
            8,
        ),
        ("Route", "flags", number::<types::Route>("flags"), 7),
        (
            "ARPNeighbor",
            "flags",
            number::<types::ARPNeighbor>("flags"),
            5,
        ),
    ];
    for (msg, field, got, want) in cases {
        assert_eq!(got, want, "{msg}.{field}");
    }
}

#[test]
fn package_and_full_names_match_kata() {
    assert_eq!(
        CreateContainerRequest::descriptor().full_name(),
        "grpc.CreateContainerRequest"
    );
    assert_eq!(oci::Spec::descriptor().full_name(), "grpc.Spec");
    assert_eq!(
        types::Interface::descriptor().full_name(),
        "types.Interface"
    );
    assert_eq!(CheckRequest::descriptor().full_name(), "grpc.CheckRequest");
    assert_eq!(
        protocols::csi::VolumeStatsResponse::descriptor().full_name(),
        "grpc.VolumeStatsResponse"
    );
}

/// Every message field and enum value of our protos against the list taken
/// from Kata's protos (kata_fields.txt): same full names, same numbers, and
/// nothing on one side only (Kata's src/libs/protocols/protos/*.proto).
#[test]
fn every_field_matches_kata() {
    use protobuf::reflect::{FileDescriptor, MessageDescriptor};
    use std::collections::BTreeSet;

    fn walk(m: &MessageDescriptor, out: &mut BTreeSet<String>) {
        if m.is_map_entry() {
            return;
        }
        for f in m.fields() {
            out.insert(format!("{} {} {}", m.full_name(), f.name(), f.number()));
        }
        for e in m.nested_enums() {
            for v in e.values() {
                out.insert(format!("{} {} {}", e.full_name(), v.name(), v.value()));
            }
        }
        for n in m.nested_messages() {
            walk(&n, out);
        }
    }
    let files: [FileDescriptor; 5] = [
        protocols::agent::file_descriptor().clone(),
        protocols::types::file_descriptor().clone(),
        protocols::oci::file_descriptor().clone(),
        protocols::csi::file_descriptor().clone(),
        protocols::health::file_descriptor().clone(),
    ];
    let mut ours = BTreeSet::new();
    for file in &files {
        for m in file.messages() {
            walk(&m, &mut ours);
        }
        for e in file.enums() {
            for v in e.values() {
                ours.insert(format!("{} {} {}", e.full_name(), v.name(), v.value()));
            }
        }
    }
    let kata: BTreeSet<String> = include_str!("kata_fields.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let only_ours: Vec<_> = ours.difference(&kata).collect();
    let only_kata: Vec<_> = kata.difference(&ours).collect();
    assert!(
        only_ours.is_empty() && only_kata.is_empty(),
        "not in Kata's protos: {only_ours:#?}\nmissing from ours: {only_kata:#?}"
    );
}
