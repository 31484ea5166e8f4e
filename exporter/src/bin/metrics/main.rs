//! `metrics`: the collection service. Collects process and system metrics every interval and
//! serves them to Prometheus on `/metrics`.
//!
//! Flags in the single-dash form of the original service (`-addr=:9200 -interval=5s`) or in the
//! usual forms (`--addr 127.0.0.1:9200`, `--interval=5s`). A bad value exits 2 naming the flag
//! and the accepted form.

mod demo;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mmo_metrics::{system, MetricsCollector, MetricsManager, MIN_COLLECT_INTERVAL};
use mmo_metrics_exporter::{
    ExporterBuilder, ExporterError, PushEndpoint, Pushgateway, ReceiveConfig, RemoteWrite, WebConfig,
};

#[global_allocator]
static ALLOC: system::CountingAllocator = system::CountingAllocator::system();

/// The mmo-metrics collection service: system metrics for Prometheus on /metrics.
#[derive(Parser, Debug)]
#[command(
    name = "metrics",
    version,
    about = "The mmo-metrics collection service: process and system metrics for Prometheus on /metrics.",
    after_help = "Single-dash forms work too: metrics -addr=:9200 -interval=5s"
)]
struct Args {
    /// Address to listen on: HOST:PORT, or :PORT for all interfaces.
    #[arg(long, default_value = ":9100", value_parser = parse_addr)]
    addr: SocketAddr,
    /// How often to collect system metrics, e.g. 500ms, 5s, 1m (at least 100ms).
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    interval: Duration,
    /// A label added to every sample, KEY=VALUE (repeatable), e.g. --label service=gateway.
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Log level: off, error, warn, info, debug or trace, or tracing directives such as
    /// info,mmo_metrics=debug.
    #[arg(long, default_value = "info", value_parser = parse_log_level)]
    log_level: String,
    /// Also run a simulated MMO server (players over loopback TCP, Redis and database calls), so
    /// every metric family has live data.
    #[arg(long)]
    demo: bool,
    /// Simulated players with --demo.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..))]
    demo_players: u16,
    /// Add a `_created` sample (creation time) after each counter, histogram and summary series
    /// in OpenMetrics scrapes. Off by default: Prometheus 2.x stores each as a series of its own.
    #[arg(long)]
    openmetrics_created: bool,
    /// Accept Prometheus remote write 1.0 at POST /api/v1/write from the host's processes, and
    /// expose the latest point of every received series on /metrics (and forward them with the
    /// service's own remote-write pushes).
    #[arg(long)]
    receive: bool,
    /// With --receive: a sender's series leave this long after its last push (a sender is the
    /// job and instance labels of its series). 5m is Prometheus' staleness lookback: a process
    /// killed without notice leaves the service no later than Prometheus would forget a target.
    #[arg(long, default_value = "5m", value_parser = parse_ttl, requires = "receive")]
    receive_ttl: Duration,
    /// With --receive: a series stays this long, with its last point, after its sender's stale
    /// marker (a sender that stops sends its last values and its stale markers at once); at least
    /// the scrape interval of the Prometheus that scrapes this service and this service's own
    /// --interval, so that the last values reach the store.
    #[arg(long, default_value = "15s", value_parser = parse_grace, requires = "receive")]
    receive_stale_grace: Duration,
    /// With --receive: series kept from all senders together; past it new series are refused
    /// (counted in mmo_metrics_receive_series_refused_total) and the rest kept.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..), requires = "receive")]
    receive_max_series: u64,
    /// With --receive: series kept per sender; past it the sender's new series are refused.
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..), requires = "receive")]
    receive_max_series_per_sender: u64,
    /// Push everything the service exposes, and every series it received with --receive, to this
    /// Prometheus remote write 1.0 receiver every --interval (repeatable), with the labels
    /// job=--job and instance=--instance on every series that has none: e.g.
    /// http://127.0.0.1:9100/api/v1/write (the host's collection service) or
    /// http://prometheus:9090/api/v1/write. At SIGTERM: a last push, then stale markers.
    #[arg(long = "remote-write-url", value_name = "URL", value_parser = parse_push_url)]
    remote_write_urls: Vec<PushEndpoint>,
    /// Push everything the service exposes to this Pushgateway every --interval, as the group
    /// job=--job, instance=--instance (repeatable); the group is deleted when the service stops.
    #[arg(long = "pushgateway-url", value_name = "URL", value_parser = parse_push_url)]
    pushgateway_urls: Vec<PushEndpoint>,
    /// The job name of the pushes: the Pushgateway group's `job`, the `job` label of remote
    /// writes.
    #[arg(long, default_value = "mmo_server", value_parser = parse_job)]
    job: String,
    /// The instance name of the pushes: the Pushgateway group's `instance`, the `instance` label
    /// of remote writes (default: HOST:PORT, the host name and the --addr port, as Prometheus
    /// names a scraped target; unique per process on a host).
    #[arg(long)]
    instance: Option<String>,
    /// Trust the certificate authorities in this PEM file (instead of the system's) for https://
    /// push URLs.
    #[arg(long, value_name = "PATH")]
    push_ca_file: Option<PathBuf>,
    /// User name for basic auth on pushes; the password is read from --push-password-file.
    #[arg(long, value_name = "NAME", requires = "push_password_file")]
    push_user: Option<String>,
    /// File holding the basic-auth password of pushes (one line; kept off the command line, which
    /// every local user can read).
    #[arg(long, value_name = "PATH", requires = "push_user")]
    push_password_file: Option<PathBuf>,
    /// File holding a bearer token sent on pushes (`Authorization: Bearer ...`).
    #[arg(long, value_name = "PATH", conflicts_with = "push_user")]
    push_bearer_token_file: Option<PathBuf>,
    /// A header sent on every push, NAME=VALUE (repeatable), e.g. X-Scope-OrgID=studio for Mimir.
    #[arg(long = "push-header", value_name = "NAME=VALUE", value_parser = parse_header)]
    push_headers: Vec<(String, String)>,
    /// Web configuration file of Prometheus' exporters (exporter-toolkit format): TLS
    /// (tls_server_config), client certificates, basic auth (basic_auth_users, bcrypt hashes),
    /// response headers. Every endpoint but /health needs the credentials. The certificate and
    /// key files are read again when they change.
    #[arg(long = "web.config.file", value_name = "PATH")]
    web_config_file: Option<PathBuf>,
}

const LONG_FLAGS: [&str; 22] = [
    "web.config.file",
    "receive-stale-grace",
    "remote-write-url",
    "receive",
    "receive-ttl",
    "receive-max-series",
    "receive-max-series-per-sender",
    "addr",
    "interval",
    "label",
    "log-level",
    "demo",
    "demo-players",
    "pushgateway-url",
    "job",
    "instance",
    "push-ca-file",
    "push-user",
    "push-password-file",
    "push-bearer-token-file",
    "push-header",
    "openmetrics-created",
];

/// Accepts single-dash long flags (`-addr=:9200`) by adding the second dash.
fn normalise(args: impl Iterator<Item = String>) -> Vec<String> {
    args.map(|a| match a.strip_prefix('-') {
        Some(rest) if !rest.starts_with('-') && LONG_FLAGS.contains(&rest.split('=').next().unwrap_or("")) => {
            format!("--{rest}")
        }
        _ => a,
    })
    .collect()
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let expected = "expected HOST:PORT or :PORT, e.g. :9100 or 127.0.0.1:9100";
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_owned()
    };
    full.to_socket_addrs()
        .map_err(|e| format!("{expected} ({e})"))?
        .next()
        .ok_or_else(|| format!("{expected} (`{s}` resolves to no address)"))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let min = humantime::format_duration(MIN_COLLECT_INTERVAL);
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("expected a duration of at least {min}, such as 500ms, 5s or 1m ({e})"))?;
    if d < MIN_COLLECT_INTERVAL {
        return Err(format!(
            "expected a duration of at least {min}, such as 500ms, 5s or 1m (got {})",
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE, e.g. service=gateway")?;
    mmo_metrics_exporter::validate_global_labels([k])
        .map_err(|e| format!("expected KEY=VALUE, e.g. service=gateway: {e}"))?;
    Ok((k.to_owned(), v.to_owned()))
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("expected a duration such as 30s or 5m ({e})"))?;
    if d < Duration::from_secs(1) {
        return Err(format!(
            "expected a duration of at least 1s, such as 30s or 5m (got {})",
            humantime::format_duration(d)
        ));
    }
    Ok(d)
}

fn parse_grace(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("expected a duration such as 15s or 0s ({e})"))
}

fn parse_push_url(s: &str) -> Result<PushEndpoint, String> {
    PushEndpoint::new(s).map_err(|e| e.to_string())
}

fn parse_job(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("expected a job name, e.g. mmo_server".into());
    }
    Ok(s.to_owned())
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or("expected NAME=VALUE, e.g. X-Scope-OrgID=studio")?;
    PushEndpoint::new("http://localhost/")
        .and_then(|e| e.header(k, v))
        .map_err(|e| format!("expected NAME=VALUE, e.g. X-Scope-OrgID=studio: {e}"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// The host name, for the default `instance` of pushes.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A file's first line, for secrets passed by file.
fn read_secret(flag: &str, path: &std::path::Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--{flag} {}: cannot read it: {e}", path.display()))?;
    let secret = text.lines().next().unwrap_or("").trim_end_matches('\r').to_owned();
    if secret.is_empty() {
        return Err(format!(
            "--{flag} {}: expected the secret on its first line, found none",
            path.display()
        ));
    }
    Ok(secret)
}

/// The push endpoints' settings from the --push-* flags.
fn push_settings(args: &Args) -> Result<impl Fn(PushEndpoint) -> PushEndpoint, String> {
    let password = match &args.push_password_file {
        Some(path) => Some(read_secret("push-password-file", path)?),
        None => None,
    };
    let token = match &args.push_bearer_token_file {
        Some(path) => Some(read_secret("push-bearer-token-file", path)?),
        None => None,
    };
    if let Some(path) = &args.push_ca_file {
        // Read now, so a bad file stops the start with a message naming it.
        std::fs::metadata(path).map_err(|e| format!("--push-ca-file {}: cannot read it: {e}", path.display()))?;
    }
    let user = args.push_user.clone();
    let ca_file = args.push_ca_file.clone();
    let headers = args.push_headers.clone();
    Ok(move |mut endpoint: PushEndpoint| {
        if let Some(path) = &ca_file {
            endpoint = endpoint.ca_file(path);
        }
        if let (Some(user), Some(password)) = (&user, &password) {
            endpoint = endpoint.basic_auth(user, password);
        }
        if let Some(token) = &token {
            endpoint = endpoint.bearer_token(token);
        }
        for (k, v) in &headers {
            endpoint = endpoint.header(k, v).expect("checked by parse_header");
        }
        endpoint
    })
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A level name, or tracing directives (`info,mmo_metrics=debug`) in which every directive names
/// a level; a bare word that is not a level (`loud`) would be read by tracing as a target with
/// no level and silence every log, so it is refused.
fn parse_log_level(s: &str) -> Result<String, String> {
    let expected = "expected off, error, warn, info, debug or trace, or directives such as info,mmo_metrics=debug";
    for directive in s.split(',') {
        let level = directive.rsplit_once('=').map_or(directive, |(_, level)| level).trim();
        if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            return Err(format!("{expected} (`{directive}` names no level)"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(s).map_err(|e| format!("{expected} ({e})"))?;
    Ok(s.to_owned())
}

fn main() -> ExitCode {
    let args = Args::parse_from(normalise(std::env::args()));
    let filter = tracing_subscriber::EnvFilter::new(&args.log_level);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .init();

    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install the SIGINT/SIGTERM handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let manager = MetricsManager::new();
    if let Err(e) = manager.install() {
        tracing::warn!("{e}");
    }
    let web_config = match args.web_config_file.as_deref().map(WebConfig::from_file).transpose() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --web.config.file: {e}");
            return ExitCode::from(2);
        }
    };
    let scheme = if web_config.as_ref().is_some_and(WebConfig::tls) {
        "https"
    } else {
        "http"
    };
    let mut builder = ExporterBuilder::new(manager.clone())
        .address(args.addr)
        .openmetrics_created(args.openmetrics_created);
    for (k, v) in &args.labels {
        builder = builder.global_label(k, v);
    }
    if let Some(config) = web_config {
        builder = builder.web_config(config);
    }
    let settings = match push_settings(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.receive {
        builder = builder.receive(
            ReceiveConfig::new()
                .ttl(args.receive_ttl)
                .stale_grace(args.receive_stale_grace)
                .max_series(usize::try_from(args.receive_max_series).unwrap_or(usize::MAX))
                .max_series_per_sender(usize::try_from(args.receive_max_series_per_sender).unwrap_or(usize::MAX)),
        );
    }
    let instance = args
        .instance
        .clone()
        .unwrap_or_else(|| format!("{}:{}", host_name(), args.addr.port()));
    for url in &args.remote_write_urls {
        builder = builder.remote_write(
            RemoteWrite::new(settings(url.clone()))
                .interval(args.interval)
                .external_label("job", &args.job)
                .external_label("instance", &instance),
        );
    }
    for url in &args.pushgateway_urls {
        let gateway = Pushgateway::new(settings(url.clone()), &args.job)
            .and_then(|g| g.grouping_label("instance", instance.clone()))
            .map(|g| g.interval(args.interval));
        match gateway {
            Ok(g) => builder = builder.pushgateway(g),
            Err(e) => {
                eprintln!("error: --pushgateway-url {}: {e}", url.url());
                return ExitCode::from(2);
            }
        }
    }
    let exporter = match builder.serve() {
        Ok(e) => e,
        Err(ExporterError::Bind { addr, source }) if source.kind() == std::io::ErrorKind::AddrInUse => {
            let port = addr.port();
            tracing::error!(
                "address {addr} is already in use: another process listens on port {port}; find it with \
                 `ss -ltnp | grep {port}` or `netstat -tuln | grep {port}`, stop it, or start with another \
                 address, e.g. -addr=:{}",
                port.wrapping_add(100)
            );
            return ExitCode::from(1);
        }
        Err(e @ (ExporterError::Push(_) | ExporterError::WebConfig(_))) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(1);
        }
    };
    system::register_tokio_runtime("exporter", exporter.runtime());
    let mut collector = MetricsCollector::new(manager.clone(), args.interval);
    collector.add_named_collector("process", system::process_collector());
    collector.add_named_collector("system", system::system_collector());
    let demo = if args.demo {
        match demo::start(&manager, usize::from(args.demo_players)) {
            Ok((demo, conns)) => {
                collector.add_named_collector("connections", move |_: &MetricsManager| {
                    conns.update_rate();
                });
                tracing::info!(
                    "demo: {} simulated players on the game server at {}",
                    args.demo_players,
                    demo.addr()
                );
                Some(demo)
            }
            Err(e) => {
                tracing::error!("demo: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        None
    };
    let running = collector.start();
    let addr = exporter.local_addr();
    let shown = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    tracing::info!(
        "metrics service listening on {addr}: {scheme}://{shown}/metrics (collecting every {})",
        humantime::format_duration(args.interval)
    );
    if args.receive {
        tracing::info!(
            "receiving remote write at {scheme}://{shown}/api/v1/write (a silent sender's series leave after {})",
            humantime::format_duration(args.receive_ttl)
        );
    }

    let signal = signals.wait();
    tracing::info!("{signal} received, stopping");
    if let Some(demo) = demo {
        drop(demo);
        // The players have stopped: these are the totals the last push carries.
        tracing::info!("demo stopped: messages_total {}", demo_messages_total(&manager));
    }
    drop(running);
    exporter.stop();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The sum of every `messages_total` series (both directions, every type): the demo's traffic so
/// far.
fn demo_messages_total(manager: &MetricsManager) -> u64 {
    let mut total = 0u64;
    manager.visit(|family| {
        // Counter families are named without `_total` (their samples carry it).
        if family.name() == "messages" {
            family.for_each_series(|_, value| {
                if let mmo_metrics::SeriesValue::Counter(n) = value {
                    total = total.saturating_add(n);
                }
            });
        }
    });
    total
}

/// SIGINT and SIGTERM handlers, installed before the service starts so that a signal sent as soon
/// as it answers is never lost.
struct Signals {
    rt: tokio::runtime::Runtime,
    #[cfg(unix)]
    streams: (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        #[cfg(unix)]
        let streams = {
            use tokio::signal::unix::{signal, SignalKind};
            let _guard = rt.enter();
            (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?)
        };
        Ok(Self {
            rt,
            #[cfg(unix)]
            streams,
        })
    }

    /// Blocks until SIGINT or SIGTERM; returns its name.
    fn wait(mut self) -> &'static str {
        #[cfg(unix)]
        {
            let (int, term) = &mut self.streams;
            self.rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                }
            })
        }
        #[cfg(not(unix))]
        {
            let _ = self.rt.block_on(tokio::signal::ctrl_c());
            "Ctrl-C"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_flags() {
        let a = normalise(
            ["metrics", "-addr=:9200", "-interval=5s", "--label", "a=b", "-h"]
                .map(String::from)
                .into_iter(),
        );
        assert_eq!(a, ["metrics", "--addr=:9200", "--interval=5s", "--label", "a=b", "-h"]);
        let args = Args::parse_from(a[..5].to_vec());
        assert_eq!(args.addr, "0.0.0.0:9200".parse().unwrap());
        assert_eq!(args.interval, Duration::from_secs(5));
        assert_eq!(args.labels, vec![("a".to_owned(), "b".to_owned())]);
        let a = normalise(
            ["metrics", "-web.config.file=/etc/web.yml"]
                .map(String::from)
                .into_iter(),
        );
        assert_eq!(a, ["metrics", "--web.config.file=/etc/web.yml"]);
        let args = Args::parse_from(a);
        assert_eq!(args.web_config_file, Some(PathBuf::from("/etc/web.yml")));
    }

    #[test]
    fn bad_values_name_the_form() {
        assert!(parse_addr("nonsense").unwrap_err().contains("HOST:PORT"));
        assert!(parse_interval("5 parsecs").unwrap_err().contains("500ms"));
        assert!(parse_interval("0s").is_err());
        assert!(
            parse_interval("1ns").unwrap_err().contains("at least 100ms"),
            "below the minimum"
        );
        assert!(parse_interval("99ms").is_err());
        assert_eq!(parse_interval("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_label("novalue").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_label("__x=1").is_err());
        assert!(parse_label("le=x").unwrap_err().contains("reserved"));
        assert!(parse_label("quantile=x").unwrap_err().contains("reserved"));
        assert!(parse_log_level("loud").unwrap_err().contains("`loud` names no level"));
        assert!(parse_log_level("info,hyper=loud").is_err());
        assert_eq!(parse_log_level("WARN").unwrap(), "WARN");
        assert!(parse_log_level("info,mmo_metrics=debug").is_ok());
    }
}
