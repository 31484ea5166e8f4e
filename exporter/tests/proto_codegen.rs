//! The checked-in protobuf types are what prost-build generates from the `.proto` files under
//! `proto/`, byte for byte:
//!
//! - `src/encode/proto/io.prometheus.client.rs` from `proto/io/prometheus/client/metrics.proto`
//!   (prometheus/client_model's exposition messages);
//! - `src/push/remote_write/proto/prometheus.rs` from `proto/prometheus/remote.proto` (the write
//!   side of prometheus/prometheus' `prompb`).
//!
//! Neither the build nor CI has `protoc`: the test compiles each `.proto` with protox (a protobuf
//! compiler in Rust) into a descriptor set and hands it to prost-build, which formats the code with
//! prettyplease; both are pinned by `Cargo.lock`, so the output is deterministic.
//!
//! After changing a `.proto` or the prost versions, regenerate with
//! `MMO_REGENERATE_PROTO=1 cargo test -p mmo-metrics-exporter --test proto_codegen`.

use std::path::{Path, PathBuf};

/// One `.proto` (relative to `proto/`), the file prost-build names after its package, and where
/// that file is checked in (relative to the crate).
struct Proto {
    source: &'static str,
    generated: &'static str,
    checked_in: &'static str,
}

const PROTOS: [Proto; 2] = [
    Proto {
        source: "io/prometheus/client/metrics.proto",
        generated: "io.prometheus.client.rs",
        checked_in: "src/encode/proto/io.prometheus.client.rs",
    },
    Proto {
        source: "prometheus/remote.proto",
        generated: "prometheus.rs",
        checked_in: "src/push/remote_write/proto/prometheus.rs",
    },
];

fn generate(proto: &Proto, out_dir: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([proto.source], [root.join("proto")])
        .unwrap_or_else(|e| panic!("protox could not compile proto/{}: {e:?}", proto.source));
    prost_build::Config::new()
        .out_dir(out_dir)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("prost-build could not generate code from proto/{}: {e}", proto.source));
    let path = out_dir.join(proto.generated);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("prost-build wrote no {}: {e}", path.display()))
}

#[test]
fn generated_code_is_up_to_date() {
    for (i, proto) in PROTOS.iter().enumerate() {
        let out_dir =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("proto_codegen_{}_{i}", std::process::id()));
        std::fs::create_dir_all(&out_dir).unwrap();
        let generated = generate(proto, &out_dir);
        std::fs::remove_dir_all(&out_dir).unwrap();
        check(proto, &generated);
    }
}

fn check(proto: &Proto, generated: &str) {
    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR")).join(proto.checked_in);
    if std::env::var_os("MMO_REGENERATE_PROTO").is_some() {
        std::fs::write(&checked_in, generated).unwrap_or_else(|e| panic!("writing {}: {e}", checked_in.display()));
        eprintln!("wrote {}", checked_in.display());
        return;
    }
    let current = std::fs::read_to_string(&checked_in).unwrap_or_default();
    if current != generated {
        let line = current
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(generated.lines().count()));
        panic!(
            "{} is not what prost-build generates from proto/{} (first difference at line {}: checked in \
             {:?}, generated {:?}); regenerate it with \
             `MMO_REGENERATE_PROTO=1 cargo test -p mmo-metrics-exporter --test proto_codegen`",
            checked_in.display(),
            proto.source,
            line + 1,
            current.lines().nth(line),
            generated.lines().nth(line),
        );
    }
}
