#!/usr/bin/python3
"""Side-by-side benchmarks of the lab's replicators: upstream rbd-mirror, then rbd-relay.

Run through scripts/bench (it brings the lab up and builds rbd-relay). Each scenario runs for
each system and settings profile on the same lab, with fresh images; the replicator is
started and stopped through scripts/replicator, so both systems are driven identically.
Writes raw samples as CSV, a summary CSV and the Markdown report (BENCHMARKS.md).

Scenarios (the bench issue's numbering):
  lag      1. isolated 4 KiB write after a random 0.3-1.3 s idle gap, write + flush on the
              primary, then polling the secondary through ONE image handle (rbd_cache off)
              until the block appears
  live     2. 20,000 random 4 KiB writes at queue depth 32 with the replicator running
  drain    3. replicator stopped, 50,000 random 4 KiB writes, replicator started
  seq      4. replicator stopped, 1 GiB of 4 MiB sequential writes, replicator started
  idle     5. N mirrored idle images: OSD op_r/op_w per second on both sites, CPU, RSS;
              also the start-up time until all N are replaying (the lab part of 6)
  ceiling     `rbd bench` 4 KiB random writes (qd 32) and 4 MiB sequential on a plain
              image of the secondary: what any replayer can reach on this lab
  sync     7. a 1 GiB image, 50% allocated, mirrored after it was written: full sync time
"""
import argparse
import csv
import datetime
import json
import os
import platform
import random
import re
import subprocess
import sys
import time

import rados
import rbd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
SYSTEMS = ["upstream", "rbd-relay"]

# Settings per profile: the primary writer's librbd settings and each daemon's arguments.
PROFILES = {
    "defaults": {"writer": {}, "upstream": [], "rbd-relay": []},
    "latency": {"writer": {"rbd_journal_commit_age": "0.01"},
                "upstream": ["--rbd-mirror-journal-poll-age", "0.05"], "rbd-relay": []},
}
PROFILE_TEXT = {
    "defaults": "primary writer and daemon at their defaults (librbd rbd_journal_commit_age 5 s; "
                "rbd-mirror rbd_mirror_journal_poll_age 5 s)",
    "latency": "primary writer rbd_journal_commit_age=0.01; upstream "
               "--rbd-mirror-journal-poll-age 0.05; rbd-relay unchanged (event driven)",
}

# Full and --quick sizes. catch_up_limit (s) bounds each wait for a replicator to catch up: a
# stalled replicator fails its own scenario and the run goes on (CI once waited an hour on one).
# The latency profile's lag gets more samples: its p99 is a target, and of 50 samples the
# p99 is the maximum, a single event; of 200 it is the second highest.
SIZES = {
    False: dict(lag_samples=50, lag_samples_latency=200, live_writes=20000, drain_writes=50000, seq_bytes=GIB,
                idle_images=100, idle_seconds=60, idle_settle=30, sync_size=GIB, ceiling_writes=50000,
                image_size=GIB, catch_up_limit=1800),
    True: dict(lag_samples=5, lag_samples_latency=5, live_writes=1000, drain_writes=2000, seq_bytes=64 * MIB,
               idle_images=3, idle_seconds=5, idle_settle=5, sync_size=64 * MIB, ceiling_writes=2000,
               image_size=256 * MIB, catch_up_limit=180),
}


class Unavailable(Exception):
    """The replicator variant cannot run here (not built, or exits at start)."""


class Timeout(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, env=None, check=True):
    full_env = dict(os.environ, **(env or {}))
    out = subprocess.run(cmd, env=full_env, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-600:]}")
    return out


# librados pings each watch once per objecter_tick_interval (5 s); the OSD counts each ping
# as an op_r (measured on the lab: 100 watches of an otherwise idle client, 20.0 op_r/s).
PING_PERIOD = 5.0


def traced_ops(log, start, end, fsid):
    """Ops rbd-relay's op trace (RUST_LOG=rbd_relay::rados::ops=trace) shows sent to the cluster
    FSID between START and END; watch checks are local calls, not ops on the OSD. A window
    with no traced op at all (the daemon talks to site-b every second) means the trace was
    not read: an error, never a zero."""
    n = traced = 0
    with open(log, errors="replace") as f:
        for line in f:
            m = re.match(r'(\S+Z) TRACE rbd_relay::rados::ops: fsid="?([^"\s]*)"? op=(\w+)', line)
            if not m:
                continue
            at = datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
            if not start <= at < end:
                continue
            traced += 1
            n += m.group(2) == fsid and m.group(3) != "WatchCheck"
    if traced == 0:
        raise RuntimeError(f"{log}: no op trace between {start} and {end}")
    return n


def percentile(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


class Replicator:
    """scripts/replicator for one system and profile."""

    def __init__(self, system, profile, env=None):
        self.system, self.args, self.env = system, PROFILES[profile][system], env

    def start(self):
        out = run([os.path.join(HERE, "replicator"), "start", self.system, *self.args], env=self.env,
                  check=False)
        if out.returncode == 3:
            raise Unavailable(out.stdout.strip() or out.stderr.strip())
        if out.returncode != 0:
            raise RuntimeError(f"replicator start {self.system}: {out.stderr.strip()}")

    def stop(self):
        run([os.path.join(HERE, "replicator"), "stop"])

    def stats(self):
        """(CPU seconds, RSS KiB, peak RSS KiB) of the running daemon."""
        cpu, rss, hwm = run([os.path.join(HERE, "replicator"), "stats"]).stdout.split()
        return float(cpu), int(rss), int(hwm)


class Lab:
    def __init__(self, labdir, pool, seed):
        self.dir, self.pool = labdir, pool
        self.conf = {s: os.path.join(labdir, s, "ceph.conf") for s in ("site-a", "site-b")}
        self.rng = random.Random(seed)
        self.run_id = datetime.datetime.utcnow().strftime("%H%M%S")
        self.conns = {}
        # Reads on the secondary see the OSDs, never a cache.
        self.ioctx_b = self.connect("site-b", {"rbd_cache": "false"})
        self.ioctx_a = self.connect("site-a", {"rbd_cache": "false"})

    def connect(self, site, settings):
        key = (site, tuple(sorted(settings.items())))
        if key not in self.conns:
            cluster = rados.Rados(conffile=self.conf[site], conf=dict(settings, admin_socket=""))
            cluster.connect()
            self.conns[key] = (cluster, cluster.open_ioctx(self.pool))
        return self.conns[key][1]

    def close(self):
        for cluster, ioctx in self.conns.values():
            ioctx.close()
            cluster.shutdown()

    def name(self, scenario, system, profile):
        return f"b{self.run_id}-{scenario}-{system}-{profile}"

    def rbd(self, site, *args, env=None):
        return run(["rbd", "-c", self.conf[site], "--admin-socket=", *args], env=env)

    def create(self, name, size, journaled=True, mirrored=True, site="site-a"):
        features = rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
        if journaled:
            features |= rbd.RBD_FEATURE_JOURNALING
        ioctx = self.ioctx_a if site == "site-a" else self.ioctx_b
        rbd.RBD().create(ioctx, name, size, old_format=False, features=features)
        if mirrored:
            with rbd.Image(ioctx, name) as image:
                image.mirror_image_enable()

    def remove(self, name):
        """Mirroring off and the image gone on the primary; the replicator removes its copy."""
        try:
            with rbd.Image(self.ioctx_a, name) as image:
                if image.features() & rbd.RBD_FEATURE_JOURNALING:
                    try:
                        image.mirror_image_disable(True)
                    except rbd.Error:
                        pass
            self.rbd("site-a", "snap", "purge", f"{self.pool}/{name}")
            self.rbd("site-a", "rm", "--no-progress", f"{self.pool}/{name}")
        except (rbd.Error, RuntimeError) as e:
            log(f"note: removing {name}: {e}")

    def writer(self, name, profile):
        return rbd.Image(self.connect("site-a", dict(PROFILES[profile]["writer"], rbd_cache="false")), name)

    def reader(self, name, timeout):
        """The secondary's copy, opened once, read-only; waits for the replicator to create it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return rbd.Image(self.ioctx_b, name, read_only=True)
            except rbd.ImageNotFound:
                if time.monotonic() > deadline:
                    raise Timeout(f"{name} not created on site-b within {timeout} s")
                time.sleep(0.1)

    def bench(self, name, io_size, pattern, total, threads, profile, site="site-a"):
        """`rbd bench --io-type write`; returns (seconds, ops/s, bytes/s) as rbd bench reports."""
        settings = PROFILES[profile]["writer"] if site == "site-a" else {}
        extra = "".join(f" --{k.replace('_', '-')} {v}" for k, v in settings.items())
        out = run(["rbd", "-c", self.conf[site], "bench", "--io-type", "write", "--io-size", str(io_size),
                   "--io-pattern", pattern, "--io-total", str(total), "--io-threads", str(threads),
                   f"{self.pool}/{name}"], env={"CEPH_ARGS": "--admin-socket=" + extra}).stdout
        m = re.search(r"elapsed:\s*([\d.]+)\s+ops:\s*(\d+)\s+ops/sec:\s*([\d.]+)\s+bytes/sec:\s*([\d.]+)\s*(\S*)", out)
        if not m:
            raise RuntimeError(f"unexpected rbd bench output: {out[-300:]}")
        unit = {"KiB/s": KIB, "MiB/s": MIB, "GiB/s": GIB}.get(m.group(5), 1)
        return float(m.group(1)), float(m.group(3)), float(m.group(4)) * unit

    def osd_ops(self, site):
        """(op_r, op_w) of the site's OSD: the same counters whichever system runs."""
        sock = os.path.join(self.dir, site, "run", "osd.0.asok")
        perf = json.loads(run(["ceph", "--admin-daemon", sock, "perf", "dump"]).stdout)["osd"]
        return perf["op_r"], perf["op_w"]

    def fsid(self, site):
        return self.conns[next(k for k in self.conns if k[0] == site)][0].get_fsid()

    def watchers(self, site):
        """The watches on the site's OSD, as {client global id: count}."""
        sock = os.path.join(self.dir, site, "run", "osd.0.asok")
        counts = {}
        for w in json.loads(run(["ceph", "--admin-daemon", sock, "dump_watchers"]).stdout):
            counts[w["entity_name"]["num"]] = counts.get(w["entity_name"]["num"], 0) + 1
        return counts

    def replaying(self, prefix):
        """Names (with PREFIX) that site-b's mirror status shows replaying."""
        return {s["name"] for s in rbd.RBD().mirror_image_status_list(self.ioctx_b)
                if s["name"].startswith(prefix) and s["up"]
                and s["state"] == rbd.MIRROR_IMAGE_STATUS_STATE_REPLAYING}


def block(tag):
    """A 4 KiB block nobody wrote before."""
    head = f"{tag} {time.time_ns()} ".encode()
    return (head + os.urandom(4096))[:4096]


def wait_visible(reader, offset, data, timeout, interval=0.001):
    """Monotonic time at which the secondary returns DATA at OFFSET."""
    deadline = time.monotonic() + timeout
    while True:
        if reader.read(offset, len(data)) == data:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise Timeout(f"block at {offset} not visible on site-b within {timeout} s")
        time.sleep(interval)


def mark(writer, offset, tag):
    data = block(tag)
    writer.write(data, offset)
    writer.flush()
    return data


class Bench:
    def __init__(self, lab, args):
        self.lab, self.args, self.q = lab, args, SIZES[args.quick]
        self.results = []      # (scenario, system, profile, metric, value, unit)
        self.unavailable = {}  # system → reason
        self.profile_text = PROFILE_TEXT
        os.makedirs(args.results, exist_ok=True)

    def record(self, scenario, system, profile, metric, value, unit=""):
        self.results.append((scenario, system, profile, metric, value, unit))
        log(f"{scenario} {system} {profile}: {metric} = {value} {unit}")

    def samples_csv(self, name, header, rows):
        with open(os.path.join(self.args.results, name), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    def finish(self, rep, names):
        """Images removed on the primary while the replicator still runs (it deletes its
        copies: checked, not waited on forever), then the replicator stopped."""
        lab = self.lab
        try:
            for name in names:
                lab.remove(name)
            deadline = time.monotonic() + (10 if self.args.quick else 60)
            left = set(names)
            while left and time.monotonic() < deadline:
                left &= set(rbd.RBD().list(lab.ioctx_b))
                time.sleep(0.5)
            if left:
                log(f"note: {len(left)} secondary copies not deleted by {rep.system} in time")
        finally:
            rep.stop()

    def ready(self, name, profile, timeout=180):
        """Writer and reader handles once the replicator demonstrably replays the image."""
        w = self.lab.writer(name, profile)
        r = self.lab.reader(name, timeout)
        wait_visible(r, 0, mark(w, 0, "warm-up"), timeout, 0.01)
        return w, r

    # ---- scenarios -------------------------------------------------------------------------

    def lag(self, system, profile):
        lab, n = self.lab, self.q["lag_samples_latency" if profile == "latency" else "lag_samples"]
        if self.args.quick and profile == "defaults":
            n = 2
        name = lab.name("lag", system, profile)
        lab.create(name, 256 * MIB)
        rep = Replicator(system, profile)
        rep.start()
        try:
            w, r = self.ready(name, profile)
            rng = random.Random(self.args.seed)
            rows = []
            for i, blk in enumerate(rng.sample(range(1, 256 * MIB // 4096), n)):
                gap = rng.uniform(0.3, 1.3)
                time.sleep(gap)
                data = block(f"lag {i}")
                t0 = time.monotonic()
                w.write(data, blk * 4096)
                w.flush()
                t1 = time.monotonic()
                seen = wait_visible(r, blk * 4096, data, 60)
                rows.append((i, round(gap, 3), round((t1 - t0) * 1e3, 3), round((seen - t0) * 1e3, 3)))
            w.close()
            r.close()
        finally:
            self.finish(rep, [name])
        self.samples_csv(f"lag-{system}-{profile}.csv",
                         ["sample", "idle_gap_s", "primary_write_flush_ms", "visible_on_secondary_ms"], rows)
        lags = [row[3] for row in rows]
        for p in (50, 90, 99):
            self.record("lag", system, profile, f"p{p}", round(percentile(lags, p), 1), "ms")
        self.record("lag", system, profile, "max", round(max(lags), 1), "ms")
        self.record("lag", system, profile, "samples", len(lags))
        writes = [row[2] for row in rows]
        self.record("lag", system, profile, "primary write+flush p50", round(percentile(writes, 50), 1), "ms")
        # A lag outlier is often the primary's own write: this tells them apart.
        self.record("lag", system, profile, "primary write+flush max", round(max(writes), 1), "ms")

    def backlog(self, scenario, system, profile, io_size, pattern, total, threads):
        """Replicator stopped, TOTAL bytes written, replicator started: drain figures."""
        lab = self.lab
        name = lab.name(scenario, system, profile)
        lab.create(name, max(self.q["image_size"], total + 4 * MIB))
        rep = Replicator(system, profile)
        rep.start()
        try:
            w, r = self.ready(name, profile)
            rep.stop()
            w.close()
            secs, ops, bps = lab.bench(name, io_size, pattern, total, threads, profile)
            w = lab.writer(name, profile)
            # After the writes and a flush (a barrier in the journal): visible ⇒ all applied.
            marker_at = 4096
            data = mark(w, marker_at, scenario)
            # From the start command on: a daemon that replays while it starts up is not
            # credited with a shorter drain.
            t0 = time.monotonic()
            rep.start()
            seen = wait_visible(r, marker_at, data, self.q["catch_up_limit"], 0.005)
            cpu, rss, hwm = rep.stats()
            w.close()
            r.close()
            if self.args.quick:
                self.compare(name)
        finally:
            self.finish(rep, [name])
        drain = seen - t0
        writes = total // io_size
        self.record(scenario, system, profile, "primary write rate", round(ops), "IOPS")
        self.record(scenario, system, profile, "drain time", round(drain, 2), "s")
        self.record(scenario, system, profile, "drain rate", round(writes / drain), "writes/s")
        self.record(scenario, system, profile, "drain throughput", round(total / drain / MIB, 1), "MiB/s")
        self.record(scenario, system, profile, "CPU", round(cpu, 2), "s")
        self.record(scenario, system, profile, "CPU per 1,000 writes", round(cpu / writes * 1000, 3), "s")
        self.record(scenario, system, profile, "peak RSS", round(hwm / 1024, 1), "MiB")
        self.samples_csv(f"{scenario}-{system}-{profile}.csv",
                         ["writes", "io_size", "primary_seconds", "primary_iops", "drain_seconds",
                          "cpu_seconds", "rss_kib", "peak_rss_kib"],
                         [(writes, io_size, secs, ops, round(drain, 3), cpu, rss, hwm)])

    def drain(self, system, profile):
        n = self.q["drain_writes"]
        self.backlog("drain", system, profile, 4096, "rand", n * 4096, 32)

    def seq(self, system, profile):
        self.backlog("seq", system, profile, 4 * MIB, "seq", self.q["seq_bytes"], 16)

    def live(self, system, profile):
        lab, n = self.lab, self.q["live_writes"]
        name = lab.name("live", system, profile)
        lab.create(name, self.q["image_size"])
        rep = Replicator(system, profile)
        rep.start()
        try:
            w, r = self.ready(name, profile)
            w.close()
            cpu0 = rep.stats()[0]
            secs, ops, _ = lab.bench(name, 4096, "rand", n * 4096, 32, profile)
            t_end = time.monotonic()
            w = lab.writer(name, profile)
            data = mark(w, 4096, "live")
            seen = wait_visible(r, 4096, data, self.q["catch_up_limit"], 0.005)
            cpu1, rss, hwm = rep.stats()
            w.close()
            r.close()
        finally:
            self.finish(rep, [name])
        self.record("live", system, profile, "primary write rate", round(ops), "IOPS")
        self.record("live", system, profile, "last write → on secondary", round(seen - t_end, 2), "s")
        self.record("live", system, profile, "CPU", round(cpu1 - cpu0, 2), "s")
        self.record("live", system, profile, "peak RSS", round(hwm / 1024, 1), "MiB")
        self.samples_csv(f"live-{system}-{profile}.csv",
                         ["writes", "primary_seconds", "primary_iops", "catch_up_seconds", "cpu_seconds"],
                         [(n, secs, ops, round(seen - t_end, 3), round(cpu1 - cpu0, 2))])

    def idle_images(self):
        """The idle scenario's images, created once per run and shared by every system."""
        if not hasattr(self, "_idle"):
            prefix = f"b{self.lab.run_id}-idle-"
            names = [f"{prefix}{i:04d}" for i in range(self.q["idle_images"])]
            log(f"creating {len(names)} mirrored images for the idle scenario")
            for name in names:
                self.lab.create(name, 64 * MIB)
                with self.lab.writer(name, "defaults") as w:
                    w.write(block(name), 0)
            self._idle = (prefix, names)
        return self._idle

    def idle(self, system, profile):
        lab = self.lab
        prefix, names = self.idle_images()
        # rbd-relay traces every op it sends, naming the client: its own count per cluster.
        rep = Replicator(system, profile, {"RUST_LOG": "info,rbd_relay::rados::ops=trace"}
                         if system == "rbd-relay" else None)
        rep.start()
        try:
            t0 = time.monotonic()
            deadline = t0 + (120 if self.args.quick else 900)
            up = set()
            while len(up) < len(names) and time.monotonic() < deadline:
                time.sleep(0.5)
                up = lab.replaying(prefix)
            startup = time.monotonic() - t0 if len(up) == len(names) else None
            time.sleep(self.q["idle_settle"])
            watchers = {site: lab.watchers(site) for site in ("site-a", "site-b")}
            a0, b0, c0 = lab.osd_ops("site-a"), lab.osd_ops("site-b"), rep.stats()
            t1, w1 = time.monotonic(), datetime.datetime.now(datetime.timezone.utc)
            time.sleep(self.q["idle_seconds"])
            a1, b1, c1 = lab.osd_ops("site-a"), lab.osd_ops("site-b"), rep.stats()
            dt, w2 = time.monotonic() - t1, datetime.datetime.now(datetime.timezone.utc)
        finally:
            rep.stop()
        n = len(names)
        rates = {"site-a reads": (a1[0] - a0[0]) / dt, "site-a writes": (a1[1] - a0[1]) / dt,
                 "site-b reads": (b1[0] - b0[0]) / dt, "site-b writes": (b1[1] - b0[1]) / dt}
        self.record("idle", system, profile, "images", n)
        self.record("idle", system, profile, "replaying", len(up))
        self.record("idle", system, profile, "start-up until all replaying",
                    round(startup, 1) if startup is not None else "not reached", "s")
        for k, v in rates.items():
            self.record("idle", system, profile, f"{k}/s", round(v, 1), "ops/s")
            self.record("idle", system, profile, f"{k}/s per image", round(v / n, 2), "ops/s")
        for site in ("site-a", "site-b"):
            w = sum(watchers[site].values())
            self.record("idle", system, profile, f"{site} watches", w)
            self.record("idle", system, profile, f"{site} reads/s per image beyond keep-alives",
                        round((rates[f"{site} reads"] - w / PING_PERIOD) / n, 3), "ops/s")
        sent = None
        if system == "rbd-relay":
            sent = traced_ops(os.path.join(lab.dir, "replicator", "rbd-relay.log"), w1, w2,
                              lab.fsid("site-a"))
            self.record("idle", system, profile, "ops sent to site-a per image (op trace)",
                        round(sent / dt / n, 3), "ops/s")
        self.record("idle", system, profile, "CPU", round((c1[0] - c0[0]) / dt * 100, 1), "% of a core")
        self.record("idle", system, profile, "RSS", round(c1[1] / 1024, 1), "MiB")
        self.record("idle", system, profile, "RSS per image", round(c1[1] / n, 1), "KiB")
        self.samples_csv(f"idle-{system}-{profile}.csv",
                         ["images", "replaying", "startup_s", "seconds", "site_a_op_r", "site_a_op_w",
                          "site_b_op_r", "site_b_op_w", "site_a_watches", "site_b_watches",
                          "site_a_ops_traced", "cpu_seconds", "rss_kib"],
                         [(n, len(up), startup, round(dt, 2), a1[0] - a0[0], a1[1] - a0[1],
                           b1[0] - b0[0], b1[1] - b0[1], sum(watchers["site-a"].values()),
                           sum(watchers["site-b"].values()), sent, round(c1[0] - c0[0], 2), c1[1])])

    def sync(self, system, profile):
        lab, size = self.lab, self.q["sync_size"]
        name = lab.name("sync", system, profile)
        lab.create(name, size, journaled=False, mirrored=False)
        chunk = os.urandom(4 * MIB)
        with lab.writer(name, "defaults") as w:
            for ofs in range(0, size, 8 * MIB):   # every other 4 MiB object: 50% allocated
                w.write(chunk, ofs)
        allocated = size // 2
        rep = Replicator(system, profile)
        rep.start()
        try:
            lab.rbd("site-a", "feature", "enable", f"{lab.pool}/{name}", "journaling")
            with rbd.Image(lab.ioctx_a, name) as image:
                image.mirror_image_enable()
            t0 = time.monotonic()
            limit = self.q["catch_up_limit"]
            while name not in lab.replaying(name):
                if time.monotonic() > t0 + limit:
                    raise Timeout(f"{name} not replaying within {limit} s")
                time.sleep(0.2)
            took = time.monotonic() - t0
            cpu, rss, hwm = rep.stats()
            if self.args.quick:
                self.compare(name)
        finally:
            self.finish(rep, [name])
        self.record("sync", system, profile, "allocated", allocated // MIB, "MiB")
        self.record("sync", system, profile, "sync time (enable → replaying)", round(took, 2), "s")
        self.record("sync", system, profile, "sync throughput", round(allocated / took / MIB, 1), "MiB/s")
        self.record("sync", system, profile, "CPU", round(cpu, 2), "s")
        self.record("sync", system, profile, "peak RSS", round(hwm / 1024, 1), "MiB")
        self.samples_csv(f"sync-{system}-{profile}.csv",
                         ["image_bytes", "allocated_bytes", "seconds", "cpu_seconds", "peak_rss_kib"],
                         [(size, allocated, round(took, 3), cpu, hwm)])

    def ceiling(self):
        lab = self.lab
        name = f"b{lab.run_id}-ceiling"
        n = self.q["ceiling_writes"]
        lab.create(name, self.q["image_size"], journaled=False, mirrored=False, site="site-b")
        secs, ops, _ = lab.bench(name, 4096, "rand", n * 4096, 32, "defaults", site="site-b")
        self.record("ceiling", "lab", "-", "4 KiB random writes, qd 32, plain image on site-b", round(ops), "IOPS")
        secs2, _, bps = lab.bench(name, 4 * MIB, "seq", self.q["seq_bytes"], 16, "defaults", site="site-b")
        self.record("ceiling", "lab", "-", "4 MiB sequential writes, plain image on site-b",
                    round(bps / MIB, 1), "MiB/s")
        self.samples_csv("ceiling.csv", ["test", "seconds", "ops_per_s", "bytes_per_s"],
                         [("4k-rand-qd32", secs, ops, ""), ("4m-seq", secs2, "", bps)])
        lab.rbd("site-b", "rm", "--no-progress", f"{lab.pool}/{name}")

    def compare(self, name):
        """--quick proves the replicated copy right, not just present."""
        out = run([os.path.join(HERE, "compare-images"), "--wait", "60", name],
                  env={"RBD_RELAY_SITE_A_CONF": self.lab.conf["site-a"],
                       "RBD_RELAY_SITE_B_CONF": self.lab.conf["site-b"]}, check=False)
        log(out.stdout.strip())
        if out.returncode != 0:
            raise RuntimeError(f"{name}: sites differ after replication")

    # ---- driver ----------------------------------------------------------------------------

    def run(self):
        plan = {
            "lag": ["defaults", "latency"], "drain": ["defaults", "latency"],
            "live": ["defaults", "latency"], "idle": ["defaults", "latency"],
            "ceiling": [None], "seq": ["defaults"], "sync": ["defaults"],
        }
        for system in self.args.systems:
            out = run([os.path.join(HERE, "replicator"), "available", system], check=False)
            if out.returncode != 0:
                self.unavailable[system] = out.stdout.strip()
                print(out.stdout.strip() or f"{system}: not available", flush=True)
        failures = 0
        for scenario in self.args.scenarios:
            if scenario == "ceiling":
                self.ceiling()
                continue
            for system in self.args.systems:
                for profile in plan[scenario]:
                    if system in self.unavailable:
                        continue
                    log(f"--- {scenario} / {system} / {profile}")
                    try:
                        getattr(self, scenario)(system, profile)
                    except Unavailable as e:
                        self.unavailable[system] = str(e)
                        print(f"{system}: not available ({e})", flush=True)
                    except (Timeout, RuntimeError, rbd.Error, rados.Error) as e:
                        failures += 1
                        self.record(scenario, system, profile, "error", str(e).replace("\n", " ")[:200])
        if hasattr(self, "_idle"):
            runnable = [s for s in self.args.systems if s not in self.unavailable]
            rep = Replicator(runnable[0], "defaults")
            rep.start()
            self.finish(rep, self._idle[1])
        self.samples_csv("summary.csv", ["scenario", "system", "profile", "metric", "value", "unit"],
                         self.results)
        return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lab", default=os.environ.get("RBD_RELAY_LAB_DIR", "/tmp/rbd-relay-lab"))
    ap.add_argument("--pool", default="rbd")
    ap.add_argument("--quick", action="store_true", help="reduced sizes: proves the scripts work")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--scenarios", default="lag,drain,live,idle,ceiling,seq,sync")
    ap.add_argument("--results", required=True, help="directory for the CSV files")
    ap.add_argument("--report", help="Markdown report to write (BENCHMARKS.md)")
    ap.add_argument("--seed", type=int, default=9)
    args = ap.parse_args()
    args.systems = [s for s in args.systems.split(",") if s]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    started = datetime.datetime.utcnow()
    lab = Lab(args.lab, args.pool, args.seed)
    bench = Bench(lab, args)
    try:
        failures = bench.run()
    finally:
        lab.close()
    if args.report:
        sys.path.insert(0, HERE)
        from bench_report import write_report
        write_report(args.report, bench, started, datetime.datetime.utcnow())
        log(f"report: {args.report}")
    log(f"results: {args.results}; {failures} scenario run(s) failed")
    # Repeated last, so a log's tail names what failed.
    for scenario, system, profile, metric, value, _ in bench.results:
        if metric == "error":
            log(f"FAILED: {scenario} / {system} / {profile}: {value}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
