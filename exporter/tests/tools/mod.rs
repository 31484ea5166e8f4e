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

/// [`python`] when it can import `module` (e.g. `prometheus_client.openmetrics.parser`);
/// otherwise `None`, after [`tool_missing`] (which fails under `MMO_REQUIRE_TOOLS`).
pub fn python_with(module: &str) -> Option<String> {
    let py = python();
    match Command::new(&py).args(["-c", &format!("import {module}")]).output() {
        Ok(o) if o.status.success() => Some(py),
        Ok(o) => {
            tool_missing(&format!(
                "{py} with {module} ({})",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tool_missing(&py);
            None
        }
        Err(e) => panic!("cannot run {py}: {e}"),
    }
}

/// How a parsed value is compared with the recorded one.
#[derive(Clone, Copy, Debug)]
pub enum Tol {
    /// Equal (NaN equals NaN), up to float summation order (relative 1e-9).
    Exact,
    /// Within the summary sketch's relative error.
    Quantile,
}

/// Whether `got` equals `want` within `tol`.
pub fn within(got: f64, want: f64, tol: Tol) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return want == got;
    }
    let rel = match tol {
        Tol::Exact => 1e-9,
        Tol::Quantile => mmo_metrics::SUMMARY_RELATIVE_ERROR * 1.001,
    };
    (got - want).abs() <= want.abs() * rel
}

/// Runs the Python `script` with `exposition` on stdin and returns its stdout, failing the test
/// with Python's error and the exposition when the script fails (a parser rejected it).
pub fn run_python(py: &str, script: &str, exposition: &str) -> Vec<u8> {
    let out = run_with_stdin(
        Command::new(py).args(["-c", script]).env("PYTHONIOENCODING", "utf-8"),
        exposition,
    )
    .expect("run the Python parser");
    assert!(
        out.status.success(),
        "prometheus_client's parser rejected the exposition:\n{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
