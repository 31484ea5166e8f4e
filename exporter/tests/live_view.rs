//! The live view at `GET /`: self-contained, and in headless Chromium it polls `/metrics` of
//! `metrics --demo` and draws non-empty charts. The screenshot is kept at
//! `$CARGO_TARGET_TMPDIR/live_view.png` (and written to `docs/live_view.png` with
//! `MMO_UPDATE_SCREENSHOT=1`).

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

const CHARTS: [&str; 8] = [
    "connections",
    "messages",
    "latency",
    "redis",
    "database",
    "memory",
    "threads",
    "cpu",
];

/// The palette of the chart lines (`COLORS` in live.html).
const LINE_COLORS: [[u8; 3]; 4] = [
    [0x88, 0xc0, 0xd0],
    [0xa3, 0xbe, 0x8c],
    [0xeb, 0xcb, 0x8b],
    [0xbf, 0x61, 0x6a],
];

fn chromium(url: &str, extra: &[String]) -> String {
    let browser = tool("chromium").expect("chromium (scripts/test.sh installs it)");
    let profile = tempdir();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,1000",
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn live_view_is_self_contained_and_draws_charts() {
    let (_service, addr) = start(&["--demo", "--demo-players", "30", "--interval", "1s"]);
    let url = format!("http://{addr}/");
    let mut r = agent().get(&url).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let html = r.body_mut().read_to_string().unwrap();
    assert!(
        html.contains("<canvas") && html.contains("fetch(\"metrics\""),
        "the page polls /metrics"
    );
    for external in ["src=\"http", "href=\"http", "@import", "url(http", "//cdn"] {
        assert!(
            !html.contains(external),
            "the page loads nothing from outside: found {external}"
        );
    }
    if tool("chromium").is_none() {
        return;
    }

    // The page after a few polls: every chart has drawn line segments.
    let dom = chromium(&url, &["--dump-dom".into()]);
    let polls: u32 = dom
        .split("data-polls=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the page never polled:\n{dom}"));
    assert!(polls >= 3, "{polls} polls");
    for c in CHARTS {
        let section = dom
            .split(&format!("id=\"chart-{c}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no chart {c}"));
        let tag = section.split('>').next().unwrap();
        let segments: u32 = tag
            .split("data-segments=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(segments > 0, "chart {c} drew nothing: {tag}");
    }

    // And what a person sees: line colours across the page.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("live_view.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&url, &[format!("--screenshot={}", shot.display())]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let near = |p: &[u8], c: &[u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(*b) < 24);
    let coloured = buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| LINE_COLORS.iter().any(|c| near(&p[..3], c)))
        .count();
    assert!(
        coloured > 2_000,
        "only {coloured} pixels of chart lines in {}",
        shot.display()
    );
    if std::env::var_os("MMO_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(&shot, docs.join("live_view.png")).unwrap();
    }
}
