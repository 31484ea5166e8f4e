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

/// An expected sample: name, labels, value, and how closely the parsed value must match.
pub type ExpectedSample = (String, std::collections::BTreeMap<String, String>, f64, Tol);

/// The samples a classic histogram of `observed` exposes, with the series' `labels`: a bucket per
/// bound and `+Inf` (`le` as `{b:?}`), then `_sum` and `_count`.
pub fn histogram_samples(
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
    bounds: &[f64],
    observed: &[f64],
) -> Vec<ExpectedSample> {
    let mut out = Vec::new();
    for &b in bounds.iter().chain([f64::INFINITY].iter()) {
        let mut ls = labels.clone();
        ls.insert("le".into(), format!("{b:?}"));
        let n = observed.iter().filter(|&&v| v <= b).count();
        out.push((format!("{name}_bucket"), ls, n as f64, Tol::Exact));
    }
    out.push((format!("{name}_sum"), labels.clone(), observed.iter().sum(), Tol::Exact));
    out.push((
        format!("{name}_count"),
        labels.clone(),
        observed.len() as f64,
        Tol::Exact,
    ));
    out
}

/// The samples a summary of `observed` exposes, with the series' `labels`: each quantile (the
/// value at rank `ceil(q · n)`, `observed` chosen so that no quantile is ambiguous), then `_sum`
/// and `_count`.
pub fn summary_samples(
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
    quantiles: &[f64],
    observed: &[f64],
) -> Vec<ExpectedSample> {
    let mut sorted = observed.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut out = Vec::new();
    for &q in quantiles {
        let mut ls = labels.clone();
        ls.insert("quantile".into(), format!("{q:?}"));
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        out.push((name.to_owned(), ls, sorted[rank - 1], Tol::Quantile));
    }
    out.push((format!("{name}_sum"), labels.clone(), observed.iter().sum(), Tol::Exact));
    out.push((
        format!("{name}_count"),
        labels.clone(),
        observed.len() as f64,
        Tol::Exact,
    ));
    out
}
