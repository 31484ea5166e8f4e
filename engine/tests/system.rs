//! System and process collectors, with the counting allocator installed in this test binary.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mmo_metrics::{system, MetricsCollector, MetricsManager};

#[global_allocator]
static ALLOC: system::CountingAllocator = system::CountingAllocator::system();

fn value(m: &MetricsManager, sample: &str) -> f64 {
    let t = mmo_metrics_exporter::encode_text(m);
    t.lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no sample {sample} in\n{t}"))
        .parse()
        .unwrap()
}

#[test]
fn system_and_process_families() {
    let m = MetricsManager::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    system::register_tokio_runtime("game", rt.handle().clone());
    let tasks: Vec<_> = (0..5)
        .map(|_| rt.spawn(async { tokio::time::sleep(Duration::from_secs(60)).await }))
        .collect();
    let mut c = MetricsCollector::new(m.clone(), Duration::from_secs(10));
    c.add_named_collector("process", system::process_collector());
    c.add_named_collector("system", system::system_collector());

    let before = system::alloc_stats().expect("the counting allocator is installed");
    let big = vec![7u8; 16 << 20];
    assert_eq!(c.collect_once(), 0);
    let live = value(&m, "system_memory_alloc_bytes");
    assert!(
        live >= (16 << 20) as f64,
        "live heap {live} must include the 16 MiB vector"
    );
    let total = value(&m, "system_memory_total_alloc_bytes");
    assert!(total >= before.total_allocated_bytes as f64 + (16 << 20) as f64);
    assert!(value(&m, "system_memory_heap_objects") >= 1.0);
    assert!(
        value(&m, "system_memory_sys_bytes") >= (16 << 20) as f64,
        "RSS includes the touched vector"
    );
    assert!(value(&m, "system_cpu_threads") >= 3.0);
    assert!(value(&m, "system_goroutines") >= 5.0, "5 sleeping tasks are alive");
    assert_eq!(value(&m, "tokio_workers{runtime=\"game\"}"), 2.0);
    drop(big);
    c.collect_once();
    assert!(
        value(&m, "system_memory_alloc_bytes") < live - (15 << 20) as f64,
        "freeing 16 MiB shows"
    );
    assert!(
        value(&m, "system_memory_total_alloc_bytes") >= total,
        "cumulative never goes down"
    );

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let start = value(&m, "process_start_time_seconds");
    assert!(start <= now + 1.0 && start > now - 3600.0, "start {start} vs now {now}");
    assert!(value(&m, "process_cpu_seconds_total") >= 0.0);
    assert!(value(&m, "process_resident_memory_bytes") > 0.0);
    assert!(value(&m, "process_virtual_memory_bytes") >= value(&m, "process_resident_memory_bytes"));
    assert!(value(&m, "process_open_fds") >= 3.0);
    assert!(value(&m, "process_threads") >= 3.0);
    let text = mmo_metrics_exporter::encode_text(&m);
    assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");

    for t in tasks {
        t.abort();
    }
}
