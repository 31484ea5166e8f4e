//! The Pushgateway client against a real Pushgateway (Debian's `prometheus-pushgateway` 1.5):
//! the group is replaced at every push (a removed series leaves it), carries the grouping labels
//! and the global labels, is deleted when the exporter stops, and basic auth is sent and checked.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mmo_metrics::MetricsManager;
use mmo_metrics_exporter::{ExporterBuilder, PushEndpoint, Pushgateway, PUSHGATEWAY_PUSHES_METRIC};
use support::{free_port, get, tempdir, tool, wait_until, Proc};

/// bcrypt (cost 4) of `push-secret`, made with Python's `bcrypt.hashpw(b"push-secret",
/// bcrypt.gensalt(4))`: the Pushgateway checks it, the client sends the password.
const PASSWORD_HASH: &str = "$2b$04$V2s5LOm4FLDnozbxOwZGj.Q8iszv4Wn192aL85AiXgQi7Yv85JZY2";

struct Gateway {
    addr: SocketAddr,
    _proc: Proc,
    dir: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_gateway(binary: &Path, web_config: Option<&str>) -> Gateway {
    let dir = tempdir();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--web.listen-address={addr}"));
    if let Some(config) = web_config {
        let path = dir.join("web.yml");
        std::fs::write(&path, config).unwrap();
        cmd.arg(format!("--web.config.file={}", path.display()));
    }
    let log = std::fs::File::create(dir.join("pushgateway.log")).unwrap();
    let proc = Proc(
        cmd.stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus-pushgateway"),
    );
    // /-/ready answers 401 behind basic auth, which is ready enough.
    wait_until("Pushgateway ready", Duration::from_secs(30), || {
        matches!(get(&format!("http://{addr}/-/ready")).0, 200 | 401)
    });
    Gateway { addr, _proc: proc, dir }
}

/// The Pushgateway's own exposition, with basic auth when given.
fn gateway_metrics(addr: SocketAddr, auth: Option<(&str, &str)>) -> String {
    let mut request = support::agent().get(&format!("http://{addr}/metrics"));
    if let Some((user, password)) = auth {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header("Authorization", &format!("Basic {token}"));
    }
    let mut response = request.call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.body_mut().read_to_string().unwrap()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn the_group_is_replaced_at_every_push_and_deleted_at_shutdown() {
    let Some(binary) = tool("prometheus-pushgateway") else {
        return;
    };
    let gateway = start_gateway(&binary, None);
    let manager = MetricsManager::new();
    manager.register_counter("logins", "Logins.", &["zone"]).unwrap();
    manager.register_gauge("players", "Players online.", &["zone"]).unwrap();
    manager
        .register_histogram("tick_seconds", "Tick time.", &[], &[0.01, 0.1])
        .unwrap();
    manager.increment_counter("logins", 3, &["north"]).unwrap();
    manager.set_gauge("players", 12.0, &["north"]).unwrap();
    manager.set_gauge("players", 4.0, &["south"]).unwrap();
    manager.observe_histogram("tick_seconds", 0.05, &[]).unwrap();

    let push = Pushgateway::new(
        PushEndpoint::new(&format!("http://{}", gateway.addr)).unwrap(),
        "mmo_server",
    )
    .unwrap()
    .grouping_label("instance", "zone-1")
    .unwrap()
    .interval(Duration::from_millis(200));
    let exporter = ExporterBuilder::new(manager.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .global_label("cluster", "eu")
        .pushgateway(push)
        .serve()
        .unwrap();

    let group = r#"instance="zone-1",job="mmo_server""#;
    let counter = format!(r#"logins_total{{cluster="eu",{group},zone="north"}} 3"#);
    let south = format!(r#"players{{cluster="eu",{group},zone="south"}} 4"#);
    let bucket = format!(r#"tick_seconds_bucket{{cluster="eu",{group},le="0.1"}} 1"#);
    wait_until("the first push", Duration::from_secs(20), || {
        let text = gateway_metrics(gateway.addr, None);
        has_line(&text, &counter) && has_line(&text, &south) && has_line(&text, &bucket)
    });

    // PUT replaces the group: a new value arrives, a removed series leaves. (This thread's by-name
    // cache holds the removed series until its next by-name call, the increment.)
    assert!(manager.remove_series("players", &["south"]).unwrap());
    manager.increment_counter("logins", 2, &["north"]).unwrap();
    let counter = format!(r#"logins_total{{cluster="eu",{group},zone="north"}} 5"#);
    let mut last = String::new();
    let replaced = support::poll_until(Duration::from_secs(20), || {
        last = gateway_metrics(gateway.addr, None);
        has_line(&last, &counter) && !last.contains(r#"zone="south""#)
    });
    assert!(
        replaced,
        "the second push did not replace the group; the Pushgateway has:\n{last}\nthe exporter:\n{}",
        mmo_metrics_exporter::encode_text(&manager)
    );
    let own = mmo_metrics_exporter::encode_text(&manager);
    assert!(
        own.contains(&format!(
            r#"{PUSHGATEWAY_PUSHES_METRIC}{{url="http://{}/",result="ok"}}"#,
            gateway.addr
        )),
        "{own}"
    );

    // Stopping the exporter deletes the group.
    exporter.stop();
    let text = gateway_metrics(gateway.addr, None);
    assert!(
        !text.contains("zone-1"),
        "the group is still there after the exporter stopped:\n{text}"
    );
}

#[test]
fn basic_auth_is_sent_and_a_refusal_is_counted() {
    let Some(binary) = tool("prometheus-pushgateway") else {
        return;
    };
    let gateway = start_gateway(
        &binary,
        Some(&format!("basic_auth_users:\n  pusher: {PASSWORD_HASH}\n")),
    );
    let manager = MetricsManager::new();
    manager.register_counter("logins", "Logins.", &[]).unwrap();
    manager.increment_counter("logins", 7, &[]).unwrap();
    let url = format!("http://{}", gateway.addr);
    let push = |password: &str, instance: &str| {
        Pushgateway::new(
            PushEndpoint::new(&url).unwrap().basic_auth("pusher", password),
            "mmo_server",
        )
        .unwrap()
        .grouping_label("instance", instance)
        .unwrap()
        .interval(Duration::from_millis(200))
    };
    let exporter = ExporterBuilder::new(manager.clone())
        .address("127.0.0.1:0".parse().unwrap())
        .pushgateway(push("push-secret", "good"))
        .pushgateway(push("wrong", "bad"))
        .serve()
        .unwrap();
    let auth = Some(("pusher", "push-secret"));
    wait_until("the authenticated push", Duration::from_secs(20), || {
        has_line(
            &gateway_metrics(gateway.addr, auth),
            r#"logins_total{instance="good",job="mmo_server"} 7"#,
        )
    });
    let refused = format!(r#"{PUSHGATEWAY_PUSHES_METRIC}{{url="{url}/",result="error"}}"#);
    wait_until("the refused push counted", Duration::from_secs(20), || {
        mmo_metrics_exporter::encode_text(&manager).contains(&refused)
    });
    assert!(!gateway_metrics(gateway.addr, auth).contains(r#"instance="bad""#));
    drop(exporter);
}

#[test]
fn the_service_pushes_the_demo_and_deletes_its_group_on_sigterm() {
    let Some(binary) = tool("prometheus-pushgateway") else {
        return;
    };
    let gateway = start_gateway(&binary, None);
    let url = format!("http://{}", gateway.addr);
    let (mut service, _) = support::start(&[
        "--demo",
        "--demo-players",
        "5",
        "--pushgateway-url",
        &url,
        "--job",
        "game",
        "--instance",
        "zone-9",
    ]);
    wait_until(
        "the demo's messages in the Pushgateway",
        Duration::from_secs(30),
        || {
            gateway_metrics(gateway.addr, None)
                .lines()
                .any(|l| l.starts_with("messages_total{") && l.contains(r#"instance="zone-9",job="game""#))
        },
    );
    support::stop_with(&mut service.0, "-TERM", Duration::from_secs(15));
    let text = gateway_metrics(gateway.addr, None);
    assert!(!text.contains("zone-9"), "the group outlived the service:\n{text}");
}

#[test]
fn bad_push_flags_exit_2_naming_the_problem() {
    for (args, expected) in [
        (&["--pushgateway-url", "ftp://host"][..], "found the scheme `ftp`"),
        (
            &[
                "--pushgateway-url",
                "http://127.0.0.1:1",
                "--push-user",
                "u",
                "--push-password-file",
                "/nonexistent/pw",
            ][..],
            "--push-password-file /nonexistent/pw: cannot read it",
        ),
        (&["--push-header", "X Bad=1"][..], "X Bad"),
        (&["--job="][..], "expected a job name"),
    ] {
        let out = Command::new(support::BIN).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
