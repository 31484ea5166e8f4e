#!/usr/bin/env python3
"""Writes config/grafana/{system,service,database}_dashboard.json (Grafana schema 39).

Every panel queries through the `datasource` variable and the `job` / `instance` variables;
counters are shown with rate(), histograms with histogram_quantile() at p50/p95/p99.
Run from the repository root after changing a panel: python3 scripts/gen_dashboards.py
"""
import json
import os

SEL = 'job=~"$job",instance=~"$instance"'
RATE = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}


def q(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def quantiles(metric, by, legend, extra=""):
    sel = SEL + ("," + extra if extra else "")
    return [
        q(f'histogram_quantile({p}, sum by (le{", " + by if by else ""}) (rate({metric}_bucket{{{sel}}}[{RATE}])))',
          f"p{int(p * 100)}" + (f" {legend}" if legend else ""))
        for p in (0.5, 0.95, 0.99)
    ]


def dashboard(uid, title, rows):
    panels, y, pid = [], 0, 1
    for row_title, row in rows:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        for i, (title, unit, targets) in enumerate(row):
            panels.append({
                "id": pid,
                "type": "timeseries",
                "title": title,
                "datasource": DS,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit, "custom": {"lineWidth": 1, "fillOpacity": 10}},
                                "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                            "tooltip": {"mode": "multi", "sort": "desc"}},
                "targets": [dict(t, refId=chr(65 + k), datasource=DS) for k, t in enumerate(targets)],
            })
            pid += 1
        y += 8 * ((len(row) + 1) // 2)
    var = lambda name, query, **kw: dict({
        "name": name, "label": name, "type": "query", "datasource": DS,
        "definition": query, "query": {"query": query, "refId": name}, "refresh": 2,
        "sort": 1, "hide": 0}, **kw)
    return {
        "annotations": {"list": []},
        "description": f"mmo-metrics: {title}",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "uid": uid,
        "title": title,
        "tags": ["mmo", "mmo-metrics"],
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "10s",
        "schemaVersion": 39,
        "version": 1,
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            var("job", "label_values(up, job)", current={"text": "mmo_server", "value": "mmo_server"},
                includeAll=False, multi=False),
            var("instance", 'label_values(up{job=~"$job"}, instance)', includeAll=True, multi=True,
                allValue=".*", current={"text": "All", "value": "$__all"}),
        ]},
        "panels": panels,
    }


system = dashboard("mmo-system", "MMO / System", [
    ("Memory", [
        ("Live heap", "bytes", [q(f"system_memory_alloc_bytes{{{SEL}}}", "{{instance}}")]),
        ("Heap allocation rate", "Bps", [q(f"rate(system_memory_total_alloc_bytes{{{SEL}}}[{RATE}])", "{{instance}}")]),
        ("Resident memory", "bytes", [q(f"system_memory_sys_bytes{{{SEL}}}", "system {{instance}}"),
                                      q(f"process_virtual_memory_bytes{{{SEL}}}", "virtual {{instance}}")]),
        ("Live heap objects", "short", [q(f"system_memory_heap_objects{{{SEL}}}", "{{instance}}")]),
    ]),
    ("Threads and CPU", [
        ("CPU", "percentunit", [q(f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}])", "{{instance}}")]),
        ("OS threads", "short", [q(f"system_cpu_threads{{{SEL}}}", "{{instance}}")]),
        ("Tokio tasks (goroutines)", "short", [q(f"system_goroutines{{{SEL}}}", "{{instance}}")]),
        ("Open file descriptors", "short", [q(f"process_open_fds{{{SEL}}}", "open {{instance}}"),
                                            q(f"process_max_fds{{{SEL}}}", "max {{instance}}")]),
    ]),
    ("Metrics service", [
        ("Scrape duration", "s", quantiles("mmo_metrics_scrape_duration_seconds", "", "")),
        ("Series", "short", [q(f"sum by (type) (mmo_metrics_series{{{SEL}}})", "{{type}}")]),
        ("Collector duration p99", "s", [q(
            f"histogram_quantile(0.99, sum by (le, collector) (rate(mmo_metrics_collector_duration_seconds_bucket{{{SEL}}}[{RATE}])))",
            "{{collector}}")]),
        ("Scrapes", "reqps", [q(f"sum by (code) (rate(mmo_metrics_scrapes_total{{{SEL}}}[{RATE}]))", "{{code}}")]),
    ]),
])

service = dashboard("mmo-service", "MMO / Service", [
    ("Connections", [
        ("Open connections", "short", [q(f"sum(connection_count{{{SEL}}})", "open")]),
        ("New connections per second", "cps", [q(f"sum(connection_rate{{{SEL}}})", "new/s")]),
        ("Connection errors", "cps", [q(f"sum by (error_type) (rate(connection_errors_total{{{SEL}}}[{RATE}]))", "{{error_type}}")]),
    ]),
    ("Messages", [
        ("Messages in", "mps", [q(f'sum by (msg_type) (rate(messages_total{{{SEL},direction="in"}}[{RATE}]))', "{{msg_type}}")]),
        ("Messages out", "mps", [q(f'sum by (msg_type) (rate(messages_total{{{SEL},direction="out"}}[{RATE}]))', "{{msg_type}}")]),
        ("Message size", "bytes", quantiles("message_size_bytes", "direction", "{{direction}}")),
        ("Message processing time", "s", quantiles("message_process_time", "", "")),
        ("Processing time p99 by type", "s", [q(
            f"histogram_quantile(0.99, sum by (le, msg_type) (rate(message_process_time_bucket{{{SEL}}}[{RATE}])))",
            "{{msg_type}}")]),
        # The native part of message_process_time: only a Prometheus with
        # --enable-feature=native-histograms stores it (and then not the classic buckets).
        ("Processing time p99 by type (native histogram)", "s", [q(
            f"histogram_quantile(0.99, sum by (msg_type) (rate(message_process_time{{{SEL}}}[{RATE}])))",
            "{{msg_type}}")]),
    ]),
    ("Redis", [
        ("Redis operations", "ops", [q(f"sum by (command) (rate(redis_operations_total{{{SEL}}}[{RATE}]))", "{{command}}")]),
        ("Redis errors", "ops", [q(f"sum by (command) (rate(redis_errors_total{{{SEL}}}[{RATE}]))", "{{command}}")]),
        ("Redis connection pool", "short", [q(f"sum by (state) (redis_connection_pool{{{SEL}}})", "{{state}}")]),
    ]),
])

database = dashboard("mmo-database", "MMO / Database", [
    ("Database", [
        ("Operations", "ops", [q(f"sum by (operation, table) (rate(database_operations_total{{{SEL}}}[{RATE}]))", "{{operation}} {{table}}")]),
        ("Errors", "ops", [q(f"sum by (operation) (rate(database_errors_total{{{SEL}}}[{RATE}]))", "{{operation}}")]),
        ("Query time", "s", quantiles("database_query_time", "", "")),
        ("Query time p95 by operation and table", "s", [q(
            f"histogram_quantile(0.95, sum by (le, operation, table) (rate(database_query_time_bucket{{{SEL}}}[{RATE}])))",
            "{{operation}} {{table}}")]),
        ("Error ratio", "percentunit", [q(
            f"sum(rate(database_errors_total{{{SEL}}}[{RATE}])) / sum(rate(database_operations_total{{{SEL}}}[{RATE}]))",
            "errors / operations")]),
    ]),
])

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "config", "grafana")
for name, d in [("system", system), ("service", service), ("database", database)]:
    with open(os.path.join(out, f"{name}_dashboard.json"), "w") as f:
        json.dump(d, f, indent=2, ensure_ascii=False)
        f.write("\n")
print("wrote", out)
