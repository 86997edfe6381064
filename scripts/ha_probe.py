#!/usr/bin/python3
"""Replication delay of a few probe images, measured end to end while daemons move them.

    scripts/ha_probe.py --conf-a A --conf-b B --out FILE IMAGE...

In turn for each image: librbd writes a fresh 4 KiB block on site-a (journal commit age
10 ms, as the latency benchmark's writer) and the copy on site-b is read until the block
shows. Each result is one JSON line in FILE: {"t": unix time of the write, "image",
"delay": seconds until visible}. Runs until SIGTERM. scripts/ha-check reads the lines of
the windows it marks (steady state, rolling restart) and compares them.
"""
import argparse
import json
import os
import signal
import sys
import time

import rados
import rbd

POOL = "rbd"
TIMEOUT = 60.0


def connect(conf, settings):
    cluster = rados.Rados(conffile=conf, conf=dict(settings, admin_socket=""))
    cluster.connect()
    return cluster, cluster.open_ioctx(POOL)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--conf-a", required=True)
    p.add_argument("--conf-b", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("images", nargs="+")
    args = p.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    _, io_a = connect(args.conf_a, {"rbd_cache": "false", "rbd_journal_commit_age": "0.01"})
    _, io_b = connect(args.conf_b, {"rbd_cache": "false"})
    writers = [rbd.Image(io_a, name) for name in args.images]
    readers = []
    for name in args.images:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                readers.append(rbd.Image(io_b, name, read_only=True))
                break
            except rbd.ImageNotFound:
                if time.monotonic() > deadline:
                    sys.exit(f"ha_probe: {name} not on site-b after {TIMEOUT} s")
                time.sleep(0.2)
    with open(args.out, "a", buffering=1) as out:
        while not stop:
            for name, w, r in zip(args.images, writers, readers):
                data = (f"{name} {time.time_ns()} ".encode() + os.urandom(4096))[:4096]
                t, start = time.time(), time.monotonic()
                w.write(data, 0)
                w.flush()
                while r.read(0, 4096) != data and not stop:
                    if time.monotonic() - start > TIMEOUT:
                        sys.exit(f"ha_probe: {name}: a write not visible on site-b after {TIMEOUT} s")
                    time.sleep(0.002)
                if stop:
                    break
                delay = time.monotonic() - start
                out.write(json.dumps({"t": t, "image": name, "delay": round(delay, 4)}) + "\n")
                if stop:
                    break


if __name__ == "__main__":
    main()
