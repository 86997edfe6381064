#!/usr/bin/env python3
"""Writes grafana/*.json, the three rbd-relay dashboards (Grafana 9+, a `datasource`
variable of type prometheus). The JSON is generated so every panel has the same shape;
edit the panel lists here and rerun: scripts/grafana_dashboards.py

tests/observability.rs evaluates every `expr` below against a real Prometheus scraping
the demo, so a query naming a metric rbd-relay does not export fails the tests.
"""
import json
import pathlib

DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'pool=~"$pool", namespace=~"$namespace", image=~"$image"'
RATE = "$__rate_interval"


def panel(title, exprs, kind="timeseries", unit="short", legend="", width=12, height=8,
          description=""):
    """One panel; `exprs` is a list of (expr, legend) or a single expr string."""
    if isinstance(exprs, str):
        exprs = [(exprs, legend)]
    targets = []
    for ref, (expr, leg) in zip("ABCDEFGH", exprs):
        t = {"refId": ref, "datasource": DS, "expr": expr, "legendFormat": leg or "__auto"}
        if kind == "heatmap":
            t["format"] = "heatmap"
        targets.append(t)
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "gridPos": {"w": width, "h": height},
    }
    if kind == "heatmap":
        p["options"] = {"calculate": False, "yAxis": {"unit": "s"},
                        "cellGap": 1, "color": {"scheme": "Spectral", "mode": "scheme"}}
    return p


def layout(panels):
    x = y = row_h = 0
    for i, p in enumerate(panels, 1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["id"] = i
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        row_h = max(row_h, h)
    return panels


def datasource_var():
    return {"name": "datasource", "label": "Data source", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0, "refresh": 1, "regex": "",
            "options": []}


def query_var(name, query):
    return {"name": name, "label": name, "type": "query", "datasource": DS,
            "definition": query, "query": {"query": query, "refId": "StandardVariableQuery"},
            "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "sort": 1, "hide": 0}


def rpo_var():
    return {"name": "rpo_seconds", "label": "RPO budget (s)", "type": "textbox",
            "query": "30", "current": {"text": "30", "value": "30"}, "hide": 0,
            "options": [{"selected": True, "text": "30", "value": "30"}]}


def dashboard(uid, title, description, variables, panels):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["rbd-relay", "ceph"],
        "schemaVersion": 37,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": [datasource_var()] + variables},
        "panels": layout(panels),
    }


FLEET = dashboard(
    "rbd-relay-fleet", "rbd-relay: fleet overview",
    "Every mirrored image at a glance: states, worst lag against the RPO budget.",
    [rpo_var()],
    [
        panel("Daemons up", "count by (version) (rbd_relay_build_info)", "stat",
              width=4, height=5, legend="{{version}}"),
        panel("Images by state", "sum by (state) (rbd_relay_images)", "stat", width=8,
              height=5, legend="{{state}}"),
        panel("Worst replication lag", "max(rbd_relay_image_replay_lag_seconds)", "stat",
              "s", width=4, height=5),
        panel("Images over RPO budget",
              "count(rbd_relay_image_replay_lag_seconds > $rpo_seconds) or vector(0)",
              "stat", width=4, height=5,
              description="Images whose lag exceeds the rpo_seconds variable."),
        panel("Images split-brain or in error",
              '(sum(rbd_relay_image_split_brain) or vector(0))'
              ' + (sum(rbd_relay_image_state{state="error"}) or vector(0))',
              "stat", width=4, height=5),
        panel("Replication lag, worst 10 images",
              "topk(10, rbd_relay_image_replay_lag_seconds)", unit="s",
              legend="{{pool}}/{{image}}"),
        panel("RPO budget used (worst image)",
              "max(rbd_relay_image_replay_lag_seconds) / $rpo_seconds", "gauge",
              "percentunit",
              description="Worst lag as a fraction of the RPO budget variable."),
        panel("Replayed bytes per second",
              f"sum by (pool) (rate(rbd_relay_image_replayed_bytes_total[{RATE}]))",
              unit="Bps", legend="{{pool}}"),
        panel("Image errors by reason (1 h)",
              "sum by (reason) (increase(rbd_relay_image_errors_total[1h])) or vector(0)",
              "bargauge", legend="{{reason}}"),
    ],
)

IMAGE = dashboard(
    "rbd-relay-image", "rbd-relay: image drill-down",
    "One image (or a few): lag, backlog, throughput, replay latency, sync progress.",
    [query_var("pool", "label_values(rbd_relay_image_state, pool)"),
     query_var("namespace", 'label_values(rbd_relay_image_state{pool=~"$pool"}, namespace)'),
     query_var("image", 'label_values(rbd_relay_image_state{pool=~"$pool"}, image)')],
    [
        panel("State", f"rbd_relay_image_state{{{SEL}}} == 1", "state-timeline",
              legend="{{image}} {{state}}", width=24, height=5),
        panel("Replication lag", f"rbd_relay_image_replay_lag_seconds{{{SEL}}}", unit="s",
              legend="{{image}}"),
        panel("Entries behind the primary", f"rbd_relay_image_entries_behind{{{SEL}}}",
              legend="{{image}}"),
        panel("Bytes behind the primary", f"rbd_relay_image_bytes_behind{{{SEL}}}",
              unit="bytes", legend="{{image}}",
              description="Journal bytes fetched and not applied, plus closed journal "
                          "objects not read yet (a lower bound: the active object set "
                          "counts only once read)."),
        panel("Replay throughput", [
            (f"rate(rbd_relay_image_replayed_bytes_total{{{SEL}}}[{RATE}])",
             "{{image}} bytes/s")], unit="Bps"),
        panel("Replayed entries per second",
              f"rate(rbd_relay_image_replayed_entries_total{{{SEL}}}[{RATE}])",
              legend="{{image}}"),
        panel("Replay latency (notification to applied)",
              f"sum by (le) (rate(rbd_relay_replay_latency_seconds_bucket{{{SEL}}}[{RATE}]))",
              "heatmap", legend="{{le}}"),
        panel("Replay latency quantiles", [
            (f"histogram_quantile(0.5, sum by (le) (rate(rbd_relay_replay_latency_seconds_bucket{{{SEL}}}[{RATE}])))", "p50"),
            (f"histogram_quantile(0.99, sum by (le) (rate(rbd_relay_replay_latency_seconds_bucket{{{SEL}}}[{RATE}])))", "p99"),
        ], unit="s"),
        panel("Image sync progress", f"rbd_relay_image_sync_progress_ratio{{{SEL}}}",
              unit="percentunit", legend="{{image}}"),
        panel("Image sync bytes copied per second",
              f"rate(rbd_relay_image_sync_copied_bytes_total{{{SEL}}}[{RATE}])", unit="Bps",
              legend="{{image}}"),
        panel("Errors by reason (1 h)",
              f"sum by (image, reason) (increase(rbd_relay_image_errors_total{{{SEL}}}[1h])) or vector(0)",
              "bargauge", legend="{{image}} {{reason}}", width=16, height=6),
        panel("Last error",
              f"rbd_relay_image_last_error_timestamp_seconds{{{SEL}}} * 1000 > 0 or vector(0)",
              "stat", "dateTimeFromNow", legend="{{image}}", width=8, height=6,
              description="When the image last failed (0: not since the daemon started)."),
    ],
)

DAEMON = dashboard(
    "rbd-relay-daemon", "rbd-relay: daemon health",
    "Watches, probes, RADOS ops and errors, queues, commits and prefetch memory of each daemon.",
    [],
    [
        panel("Scrape target up", 'up{job="rbd-relay"}', "stat", width=6, height=5,
              legend="{{instance}}"),
        panel("Build", "rbd_relay_build_info", "stat", width=6, height=5,
              legend="{{version}}"),
        panel("Prefetch buffers (journal bytes in memory)", "rbd_relay_prefetch_bytes",
              "stat", "bytes", width=12, height=5, legend="{{instance}}"),
        panel("Notifications per second",
              f"sum by (source) (rate(rbd_relay_notifications_total[{RATE}]))",
              legend="{{source}}"),
        panel("Tail probes per second (safety net)",
              f"sum(rate(rbd_relay_tail_probes_total[{RATE}]))", legend="probes"),
        panel("Watch errors and re-watches per second", [
            (f"sum by (source) (rate(rbd_relay_watch_errors_total[{RATE}]))", "errors {{source}}"),
            (f"sum by (source) (rate(rbd_relay_rewatches_total[{RATE}]))", "re-watches {{source}}"),
        ]),
        panel("RADOS ops per second",
              f"sum by (op) (rate(rbd_relay_rados_ops_total[{RATE}]))",
              legend="{{op}}"),
        panel("RADOS errors per second",
              f"sum by (op, errno) (rate(rbd_relay_rados_errors_total[{RATE}]))",
              legend="{{op}} {{errno}}"),
        panel("Queued items", "sum by (queue) (rbd_relay_queue_depth)",
              legend="{{queue}}",
              description="Items waiting in the bounded queues, sampled every second: "
                          "watch (every watch's notification queue together) and "
                          "pool_events (the cluster watcher's)."),
        panel("Queue fill",
              "sum by (queue) (rbd_relay_queue_depth) / sum by (queue) (rbd_relay_queue_capacity)",
              unit="percentunit", legend="{{queue}}",
              description="Queued items over slots, per kind of queue. A full watch queue "
                          "makes notifications late (re-read after Lagged), never lost."),
        panel("Commit position updates per second",
              f"sum(rate(rbd_relay_commit_position_updates_total[{RATE}]))", legend="commits"),
        panel("Prefetch buffers over time", "rbd_relay_prefetch_bytes", unit="bytes",
              legend="{{instance}}"),
    ],
)

if __name__ == "__main__":
    out = pathlib.Path(__file__).resolve().parent.parent / "grafana"
    for name, board in [("fleet-overview", FLEET), ("image-drilldown", IMAGE),
                        ("daemon-health", DAEMON)]:
        (out / f"{name}.json").write_text(json.dumps(board, indent=2) + "\n")
