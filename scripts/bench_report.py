"""BENCHMARKS.md from one scripts/bench run: context, settings, one table per scenario with a
column per system × profile, and the issue's targets checked where both systems ran."""
import os
import platform
import subprocess

SCENARIO_TITLES = {
    "lag": "1. Lag: isolated 4 KiB write (idle gap 0.3–1.3 s) → readable on the secondary",
    "live": "2. Live catch-up: random 4 KiB writes at queue depth 32, replicator running",
    "drain": "3. Backlog drain: random 4 KiB writes made while the replicator was stopped",
    "seq": "4. Large sequential: 4 MiB writes made while the replicator was stopped, then drained",
    "idle": "5. Idle cost (and 6. start-up on the lab): mirrored idle images",
    "ceiling": "Physical ceiling: `rbd bench` on a plain (unjournaled) image of the secondary",
    "sync": "7. Image sync: image 50% allocated, mirroring enabled after it was written",
}
HOW = {
    "lag": "Write + flush through one primary handle, then reads of that block through one "
           "secondary handle opened once (rbd_cache=false), every 1 ms, until it returns the new "
           "bytes; time from the write call. Samples: `lag-*.csv`.",
    "live": "`rbd bench --io-type write --io-pattern rand --io-size 4K --io-threads 32`, then a "
            "marker write + flush; catch-up = end of the bench → marker readable on the secondary "
            "(the flush is a barrier: every earlier write is applied by then).",
    "drain": "Replicator stopped; `rbd bench` random 4 KiB writes (qd 32), then a flushed marker; "
             "replicator started; drain time = start → marker readable (includes the daemon's "
             "start-up). CPU = the daemon's user+system seconds from /proc; peak RSS = VmHWM.",
    "seq": "As the drain, with `rbd bench --io-pattern seq --io-size 4M`.",
    "idle": "Each image journaled, mirrored, one 4 KiB write. Start-up = daemon start → all images "
            "`up+replaying` in site-b's mirror status. Then 30 s settle (start-up work over) and a "
            "window over which the OSD's `op_r`/`op_w` perf counters (admin socket `perf dump`, "
            "both sites) and the daemon's CPU are sampled. Every watch costs its OSD one `op_r` "
            "per 5 s: librados' keep-alive ping (measured on this lab: 100 watches of an idle "
            "client, 20.0 op_r/s), the price of being notified; the watches (OSD `dump_watchers`) "
            "are counted and their pings taken off in the `beyond keep-alives` rows (±1 ping per "
            "watch over the window: a ping tick may fall either side of its edges). rbd-relay also "
            "counts the ops it sent to site-a in its own op trace (`RUST_LOG="
            "rbd_relay::rados::ops=trace`, which names each op's cluster): exact, pings excluded. "
            "Its one idle read is a look at each journal per `replay.probe_idle` (5 min) while the "
            "watch is alive, outside this window (the follower's doc explains why it is kept).",
    "ceiling": "No journal, no replayer: what the secondary's OSD takes from one librbd client.",
    "sync": "Image written without journaling (every other 4 MiB object), then journaling and "
            "mirroring enabled with the replicator running; time until site-b's status is "
            "`up+replaying` (sync finished).",
}


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, shell=True).stdout.strip()
    except OSError:
        return ""


def machine():
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo")
    return f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), {mem} RAM, {platform.system()} {platform.release()}"


def value(results, scenario, system, profile, metric):
    for sc, sy, pr, me, v, unit in results:
        if (sc, sy, pr, me) == (scenario, system, profile, metric):
            return v, unit
    return None, ""


def columns(results, scenario):
    seen = []
    for sc, sy, pr, *_ in results:
        if sc == scenario and (sy, pr) not in seen:
            seen.append((sy, pr))
    return seen


def targets(bench):
    """The bench issue's targets, rbd-relay against upstream in this run."""
    r = bench.results
    rows = []

    def num(scenario, system, profile, metric):
        v, _ = value(r, scenario, system, profile, metric)
        return v if isinstance(v, (int, float)) else None

    def row(what, target, got, ok):
        state = "not measured" if ok is None else ("met" if ok else "**MISSED**")
        rows.append(f"| {what} | {target} | {got} | {state} |")

    p99 = num("lag", "rbd-relay", "latency", "p99")
    row("lag p99, primary commit age 10 ms", "≤ 30 ms", f"{p99} ms" if p99 is not None else "–",
        None if p99 is None else p99 <= 30)
    for profile in ("defaults", "latency"):
        up, ours = num("drain", "upstream", profile, "drain rate"), num("drain", "rbd-relay", profile, "drain rate")
        ratio = ours / up if up and ours else None
        row(f"backlog drain rate vs upstream ({profile})", "≥ 3.5×",
            f"{ratio:.2f}×" if ratio else "–", None if ratio is None else ratio >= 3.5)
        ceiling = num("ceiling", "lab", "-", "4 KiB random writes, qd 32, plain image on site-b")
        share = ours / ceiling if ours and ceiling else None
        row(f"backlog drain vs plain-image ceiling ({profile})", "≥ 70%",
            f"{share:.0%}" if share else "–", None if share is None else share >= 0.7)
        up, ours = (num("drain", "upstream", profile, "CPU per 1,000 writes"),
                    num("drain", "rbd-relay", profile, "CPU per 1,000 writes"))
        ratio = ours / up if up and ours is not None else None
        row(f"CPU per 1,000 replayed writes vs upstream ({profile})", "≤ 1/3",
            f"{ratio:.2f}" if ratio is not None else "–", None if ratio is None else ratio <= 1 / 3)
        up, ours = num("drain", "upstream", profile, "peak RSS"), num("drain", "rbd-relay", profile, "peak RSS")
        ratio = ours / up if up and ours else None
        row(f"peak RSS vs upstream ({profile})", "≤ 1/4",
            f"{ratio:.2f}" if ratio else "–", None if ratio is None else ratio <= 0.25)
    for profile in ("defaults", "latency"):
        sent = num("idle", "rbd-relay", profile, "ops sent to site-a per image (op trace)")
        osd = num("idle", "rbd-relay", profile, "site-a reads/s per image beyond keep-alives")
        row(f"idle RADOS reads per image on the primary, watch keep-alives aside ({profile})",
            "0 /s", f"{sent} /s sent (OSD: {osd} /s beyond keep-alives)" if sent is not None else "–",
            None if sent is None else sent == 0)
    up, ours = num("sync", "upstream", "defaults", "sync throughput"), num("sync", "rbd-relay", "defaults", "sync throughput")
    ratio = ours / up if up and ours else None
    row("image sync MB/s vs upstream", "≥ 2×", f"{ratio:.2f}×" if ratio else "–",
        None if ratio is None else ratio >= 2)
    return rows


def write_report(path, bench, started, finished):
    args, r = bench.args, bench.results
    ceph = sh("ceph --version")
    lines = [
        "# Benchmarks: rbd-relay and upstream rbd-mirror, same lab, same run",
        "",
        "Generated by `scripts/bench" + (" --quick" if args.quick else "") + "` (do not edit by hand; "
        "rerun it). Raw samples: `" + os.path.relpath(args.results, os.path.dirname(os.path.abspath(path))) + "/`.",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} – {finished:%H:%M} UTC",
        f"- Machine: {machine()}",
        f"- Ceph: {ceph} (Debian packages); lab: two single-host clusters on loopback "
        "(scripts/ceph-lab: 1 mon, 1 mgr, 1 BlueStore OSD on a sparse file each), pool `rbd`, "
        "journal-based mirroring site-a → site-b, image mode, peer rx-only",
        "- Replicators: upstream `rbd-mirror` 16.2.15 and `target/release/rbd-relay run`, "
        "each started by `scripts/replicator` with `CEPH_CONF='<lab>/$cluster.conf' --cluster "
        "site-b --id admin`",
        "- Shared machine: other jobs ran alongside (compiles, other labs), so absolute figures "
        "drift between runs; both systems ran back to back in the same run.",
        "",
        "Settings profiles:",
        "",
    ]
    for name, text in bench.profile_text.items():
        lines.append(f"- `{name}`: {text}")
    lines.append("")
    for system, why in bench.unavailable.items():
        lines += [f"**{system}: not available** ({why}); its columns are absent.", ""]
    for scenario in args.scenarios:
        cols = columns(r, scenario)
        if not cols:
            continue
        lines += [f"## {SCENARIO_TITLES[scenario]}", "", HOW[scenario], ""]
        metrics = []
        for sc, _, _, me, *_ in r:
            if sc == scenario and me not in metrics:
                metrics.append(me)
        lines.append("| | " + " | ".join(f"{sy} ({pr})" if pr != "-" else sy for sy, pr in cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for me in metrics:
            cells = []
            for sy, pr in cols:
                v, unit = value(r, scenario, sy, pr, me)
                cells.append("–" if v is None else f"{v:,} {unit}".strip() if isinstance(v, (int, float)) else f"{v} {unit}".strip())
            lines.append(f"| {me} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Targets (bench issue), rbd-relay against upstream in this run", "",
              "| target | wanted | measured | state |", "|---|---|---|---|", *targets(bench), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
