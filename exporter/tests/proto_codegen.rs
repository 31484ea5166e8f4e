//! The checked-in protobuf types (`src/encode/proto/io.prometheus.client.rs`) are what prost-build
//! generates from `proto/io/prometheus/client/metrics.proto` (prometheus/client_model's), byte for
//! byte. Neither the build nor CI has `protoc`: the test compiles the `.proto` with protox (a
//! protobuf compiler in Rust) into a descriptor set and hands it to prost-build, which formats the
//! code with prettyplease; both are pinned by `Cargo.lock`, so the output is deterministic.
//!
//! After changing the `.proto` or the prost versions, regenerate with
//! `MMO_REGENERATE_PROTO=1 cargo test -p mmo-metrics-exporter --test proto_codegen`.

use std::path::{Path, PathBuf};

const GENERATED: &str = "io.prometheus.client.rs";

fn generate(out_dir: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(["io/prometheus/client/metrics.proto"], [root.join("proto")])
        .unwrap_or_else(|e| panic!("protox could not compile proto/io/prometheus/client/metrics.proto: {e:?}"));
    prost_build::Config::new()
        .out_dir(out_dir)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("prost-build could not generate code from metrics.proto: {e}"));
    let path = out_dir.join(GENERATED);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("prost-build wrote no {}: {e}", path.display()))
}

#[test]
fn generated_code_is_up_to_date() {
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("proto_codegen_{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let generated = generate(&out_dir);
    std::fs::remove_dir_all(&out_dir).unwrap();

    let checked_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/encode/proto")
        .join(GENERATED);
    if std::env::var_os("MMO_REGENERATE_PROTO").is_some() {
        std::fs::write(&checked_in, &generated).unwrap_or_else(|e| panic!("writing {}: {e}", checked_in.display()));
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
            "{} is not what prost-build generates from proto/io/prometheus/client/metrics.proto \
             (first difference at line {}: checked in {:?}, generated {:?}); regenerate it with \
             `MMO_REGENERATE_PROTO=1 cargo test -p mmo-metrics-exporter --test proto_codegen`",
            checked_in.display(),
            line + 1,
            current.lines().nth(line),
            generated.lines().nth(line),
        );
    }
}
