#!/usr/bin/python3
"""The reference side of tests/rbd_cli.rs: applies the test's operations (JSON lines on
stdin, the format tests/rbd_cli.rs writes) to an existing plain image with real librbd, so
the image rbd-relay wrote can be compared with what librbd makes of the same operations.

Bytes come from the same rule as the test's `pattern(seed, len)`: byte i is
(seed + i % 251) mod 256. write-same and compare-and-write are not in python3-rbd, so
the handle is workload.py's ctypes one; partial discards are not skipped
(rbd_skip_partial_discard=false), since rbd-relay zeroes exactly what a discard covers.

  librbd_reference.py CONF POOL IMAGE < ops.jsonl
"""
import ctypes
import errno
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
from workload import CephError, Image, Lib  # noqa: E402


def pattern(seed, length):
    return bytes((seed + i % 251) & 0xFF for i in range(length))


def main():
    conf, pool, name = sys.argv[1:4]
    img = Image(Lib(), conf, pool, name, {"rbd_skip_partial_discard": "false"})
    for line in sys.stdin:
        op = json.loads(line)
        kind = op["op"]
        if kind == "write":
            data = pattern(op["seed"], op["len"])
            img.write(op["offset"], len(data), data)
        elif kind == "discard":
            img.discard(op["offset"], op["length"])
        elif kind == "write_same":
            unit = pattern(op["seed"], op["unit"])
            img.writesame(op["offset"], op["length"], unit, len(unit), 0)
        elif kind == "compare_and_write":
            cmp, data = pattern(op["cmp_seed"], op["len"]), pattern(op["seed"], op["len"])
            mismatch = ctypes.c_uint64()
            try:
                img.compare_and_write(op["offset"], op["len"], cmp, data, ctypes.byref(mismatch), 0)
                matched = True
            except CephError as e:
                if e.rc != -errno.EILSEQ:
                    raise
                matched = False
            if matched != op["matches"]:
                sys.exit(f"compare_and_write at {op['offset']}: matched={matched}")
        elif kind == "snap":
            img.snap_create(op["name"].encode())
        elif kind == "resize":
            img.resize(op["size"])
        elif kind == "protect":
            img.snap_protect(op["name"].encode())
        elif kind == "meta":
            img.metadata_set(op["key"].encode(), op["value"].encode())
        else:
            sys.exit(f"unknown op {kind}")
    img.flush()
    img.close()


if __name__ == "__main__":
    main()
