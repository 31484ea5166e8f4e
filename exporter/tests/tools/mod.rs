//! Running the external checkers (promtool, Python's `prometheus_client`) from exporter tests.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Whether a missing tool fails the test (`MMO_REQUIRE_TOOLS` set, as `scripts/test.sh` does) or
/// skips the check with a notice.
pub fn tool_missing(what: &str) {
    if std::env::var_os("MMO_REQUIRE_TOOLS").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("{what} is required (MMO_REQUIRE_TOOLS is set); scripts/test.sh installs it");
    }
    eprintln!("NOTICE: {what} not available; check skipped (run scripts/test.sh to install it)");
}

/// Runs `cmd` with `input` on stdin.
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> std::io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    writer.join().expect("stdin writer").expect("write to child stdin");
    Ok(out)
}

/// The Python interpreter with `prometheus_client` (`MMO_PYTHON`, default `python3`).
pub fn python() -> String {
    std::env::var("MMO_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}
