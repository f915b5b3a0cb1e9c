//! Generates the Rust messages and ttRPC stubs from proto/*.proto at build time
//! (pure Rust parser: no protoc binary needed).

use std::fs;
use std::path::{Path, PathBuf};

const PROTOS: [&str; 5] = ["agent", "csi", "health", "oci", "types"];

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let inputs: Vec<PathBuf> = PROTOS
        .iter()
        .map(|p| Path::new("proto").join(format!("{p}.proto")))
        .collect();
    for input in &inputs {
        println!("cargo:rerun-if-changed={}", input.display());
    }
    ttrpc_codegen::Codegen::new()
        .out_dir(&out)
        .inputs(&inputs)
        .include("proto")
        .rust_protobuf()
        .customize(ttrpc_codegen::Customize {
            async_all: true,
            ..Default::default()
        })
        .rust_protobuf_customize(ttrpc_codegen::ProtobufCustomize::default().gen_mod_rs(false))
        .run()
        .expect("generating Rust code from proto/*.proto");
    // `include!` cannot take a file with inner attributes or inner doc
    // comments: drop them (lib.rs sets the lints for the generated modules).
    for entry in fs::read_dir(&out).expect("reading OUT_DIR") {
        let path = entry.expect("listing OUT_DIR").path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = fs::read_to_string(&path).expect("reading generated code");
            let cleaned: String = text
                .lines()
                .filter(|l| !l.starts_with("#![") && !l.starts_with("//!"))
                .map(|l| format!("{l}\n"))
                .collect();
            fs::write(&path, cleaned).expect("writing generated code");
        }
    }
}
