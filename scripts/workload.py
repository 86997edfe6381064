#!/usr/bin/python3
"""A seeded, reproducible librbd workload on one image of the primary site (site-a).

Drives REAL librbd (one image handle, opened once) with a mix of every operation journal
mirroring has to replay: random and sequential writes, unaligned writes, flush, discard,
write_zeroes, write-same, compare-and-write, resize grow/shrink, snapshot create / remove /
rename / protect / unprotect, image rename, image-meta set / remove. The same seed gives
the same operations and bytes. Prints a JSON summary (final image name, size, snapshots,
op counts) on stdout; compare-images then checks the secondary against the primary.

write-same and compare-and-write are not in the python3-rbd bindings, so the handle is a
ctypes one on librbd; python3-rbd (Debian's, /usr/bin/python3 only) creates the image.

  scripts/workload.py --conf $RBD_RELAY_SITE_A_CONF --image wl1 --create 64M --ops 500 --seed 7
"""
import argparse
import ctypes
import json
import random
import sys
import time

c_u64 = ctypes.c_uint64
c_p = ctypes.c_void_p

MIB = 1 << 20


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B").rstrip("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


class CephError(Exception):
    def __init__(self, call, rc):
        super().__init__(f"{call} failed: {rc} ({errno_name(-rc)})")
        self.rc = rc


def errno_name(code):
    import errno
    return errno.errorcode.get(code, "?")


class Lib:
    """librados + librbd through ctypes: just the calls the workload needs."""

    def __init__(self):
        self.rados = ctypes.CDLL("librados.so.2")
        self.rbd = ctypes.CDLL("librbd.so.1")
        sig = {
            (self.rados, "rados_create2"): (ctypes.c_int, [ctypes.POINTER(c_p), ctypes.c_char_p, ctypes.c_char_p, c_u64]),
            (self.rados, "rados_conf_read_file"): (ctypes.c_int, [c_p, ctypes.c_char_p]),
            (self.rados, "rados_conf_set"): (ctypes.c_int, [c_p, ctypes.c_char_p, ctypes.c_char_p]),
            (self.rados, "rados_connect"): (ctypes.c_int, [c_p]),
            (self.rados, "rados_ioctx_create"): (ctypes.c_int, [c_p, ctypes.c_char_p, ctypes.POINTER(c_p)]),
            (self.rados, "rados_ioctx_destroy"): (None, [c_p]),
            (self.rados, "rados_ioctx_set_namespace"): (None, [c_p, ctypes.c_char_p]),
            (self.rados, "rados_shutdown"): (None, [c_p]),
            (self.rbd, "rbd_open"): (ctypes.c_int, [c_p, ctypes.c_char_p, ctypes.POINTER(c_p), ctypes.c_char_p]),
            (self.rbd, "rbd_close"): (ctypes.c_int, [c_p]),
            (self.rbd, "rbd_get_size"): (ctypes.c_int, [c_p, ctypes.POINTER(c_u64)]),
            (self.rbd, "rbd_write"): (ctypes.c_ssize_t, [c_p, c_u64, ctypes.c_size_t, ctypes.c_char_p]),
            (self.rbd, "rbd_read"): (ctypes.c_ssize_t, [c_p, c_u64, ctypes.c_size_t, ctypes.c_char_p]),
            (self.rbd, "rbd_flush"): (ctypes.c_int, [c_p]),
            (self.rbd, "rbd_discard"): (ctypes.c_int, [c_p, c_u64, c_u64]),
            (self.rbd, "rbd_write_zeroes"): (ctypes.c_ssize_t, [c_p, c_u64, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]),
            (self.rbd, "rbd_writesame"): (ctypes.c_ssize_t, [c_p, c_u64, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]),
            (self.rbd, "rbd_compare_and_write"): (ctypes.c_ssize_t, [c_p, c_u64, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(c_u64), ctypes.c_int]),
            (self.rbd, "rbd_resize"): (ctypes.c_int, [c_p, c_u64]),
            (self.rbd, "rbd_snap_create"): (ctypes.c_int, [c_p, ctypes.c_char_p]),
            (self.rbd, "rbd_snap_remove"): (ctypes.c_int, [c_p, ctypes.c_char_p]),
            (self.rbd, "rbd_snap_rename"): (ctypes.c_int, [c_p, ctypes.c_char_p, ctypes.c_char_p]),
            (self.rbd, "rbd_snap_protect"): (ctypes.c_int, [c_p, ctypes.c_char_p]),
            (self.rbd, "rbd_snap_unprotect"): (ctypes.c_int, [c_p, ctypes.c_char_p]),
            (self.rbd, "rbd_rename"): (ctypes.c_int, [c_p, ctypes.c_char_p, ctypes.c_char_p]),
            (self.rbd, "rbd_metadata_set"): (ctypes.c_int, [c_p, ctypes.c_char_p, ctypes.c_char_p]),
            (self.rbd, "rbd_metadata_remove"): (ctypes.c_int, [c_p, ctypes.c_char_p]),
        }
        for (lib, name), (res, args) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args

    def call(self, name, *args):
        lib = self.rados if name.startswith("rados_") else self.rbd
        rc = getattr(lib, name)(*args)
        if rc is not None and rc < 0:
            raise CephError(name, rc)
        return rc


class Image:
    """One librbd image handle on its own cluster connection."""

    def __init__(self, lib, conf, pool, name, settings):
        self.lib, self.name = lib, name
        self.cluster, self.ioctx, self.image = c_p(), c_p(), c_p()
        lib.call("rados_create2", ctypes.byref(self.cluster), b"ceph", b"client.admin", 0)
        lib.call("rados_conf_read_file", self.cluster, conf.encode())
        for key, value in settings.items():
            lib.call("rados_conf_set", self.cluster, key.encode(), str(value).encode())
        lib.call("rados_connect", self.cluster)
        pool, namespace = split_pool(pool)
        lib.call("rados_ioctx_create", self.cluster, pool.encode(), ctypes.byref(self.ioctx))
        lib.call("rados_ioctx_set_namespace", self.ioctx, namespace.encode())
        lib.call("rbd_open", self.ioctx, name.encode(), ctypes.byref(self.image), None)

    def close(self):
        self.lib.call("rbd_close", self.image)
        self.lib.call("rados_ioctx_destroy", self.ioctx)
        self.lib.call("rados_shutdown", self.cluster)

    def size(self):
        out = c_u64()
        self.lib.call("rbd_get_size", self.image, ctypes.byref(out))
        return out.value

    def read(self, ofs, length):
        buf = ctypes.create_string_buffer(length)
        got = self.lib.call("rbd_read", self.image, ofs, length, buf)
        return buf.raw[:got]

    def __getattr__(self, op):
        """image.write(ofs, len, buf) → rbd_write(image, ofs, len, buf), and so on."""
        return lambda *args: self.lib.call("rbd_" + op, self.image, *args)


# Operation weights: writes dominate, as in real use; every other kind shows up in a few
# hundred operations.
WEIGHTS = {
    "write_random": 30, "write_unaligned": 8, "write_sequential": 20, "flush": 6,
    "discard": 5, "write_zeroes": 4, "write_same": 4, "compare_and_write": 3,
    "resize_grow": 2, "resize_shrink": 2, "snap_create": 3, "snap_remove": 2,
    "snap_rename": 1, "snap_protect": 1, "snap_unprotect": 1, "image_rename": 1,
    "meta_set": 2, "meta_remove": 1,
}
MAX_SNAPS = 6


class Workload:
    def __init__(self, image, rng, ioctx_rename, args):
        self.img, self.rng, self.rename_image, self.args = image, rng, ioctx_rename, args
        self.size = image.size()
        self.cursor = 0
        # Snapshots and keys left by an earlier run on this image: worked on, never clashed.
        self.snaps, self.protected, self.meta, self.serial = existing_state(args)
        self.counts = {}
        self.bytes_written = 0

    def data(self, length):
        return self.rng.randbytes(length)

    def extent(self, align, max_len):
        length = self.rng.randrange(1, max_len // align + 1) * align
        length = min(length, self.size - self.size % align)
        ofs = self.rng.randrange(0, (self.size - length) // align + 1) * align
        return ofs, length

    def next_name(self, prefix):
        self.serial += 1
        return f"{prefix}{self.serial}"

    def run_one(self, op):
        """Runs OP when its preconditions hold; returns False to pick another op."""
        img, rng = self.img, self.rng
        if op == "write_random":
            ofs, n = self.extent(4096, 64 * 1024)
            img.write(ofs, n, self.data(n)); self.bytes_written += n
        elif op == "write_unaligned":
            n = rng.randrange(1, 20000)
            n = min(n, self.size)
            ofs = rng.randrange(0, self.size - n + 1)
            img.write(ofs, n, self.data(n)); self.bytes_written += n
        elif op == "write_sequential":
            n = 128 * 1024
            if self.cursor + n > self.size:
                self.cursor = 0
            img.write(self.cursor, n, self.data(n)); self.bytes_written += n
            self.cursor += n
        elif op == "flush":
            img.flush()
        elif op == "discard":
            ofs, n = self.extent(512, 4 * MIB + 8192)
            img.discard(ofs, n)
        elif op == "write_zeroes":
            ofs, n = self.extent(512, MIB)
            img.write_zeroes(ofs, n, 0, 0)
        elif op == "write_same":
            unit = rng.choice([512, 4096])
            ofs, n = self.extent(unit, 256 * 1024)
            img.writesame(ofs, n, self.data(unit), unit, 0); self.bytes_written += n
        elif op == "compare_and_write":
            # librbd 16.2 answers EINVAL to a compare-and-write larger than one 512-byte
            # sector (4 KiB fails), and the OSD where the object does not cover the range:
            # one sector, written first.
            n = 512
            ofs = rng.randrange(0, self.size // n) * n
            current = self.data(n)
            img.write(ofs, n, current)
            mismatch = c_u64()
            img.compare_and_write(ofs, n, current, self.data(n), ctypes.byref(mismatch), 0)
            self.bytes_written += 2 * n
        elif op == "resize_grow":
            if self.size >= self.args.max_size:
                return False
            self.size = min(self.args.max_size, self.size + rng.randrange(1, 9) * MIB + rng.randrange(0, 8) * 512)
            img.resize(self.size)
        elif op == "resize_shrink":
            if self.size <= self.args.min_size:
                return False
            self.size = max(self.args.min_size, self.size - rng.randrange(1, 9) * MIB - rng.randrange(0, 8) * 512)
            img.resize(self.size)
            self.cursor = min(self.cursor, self.size)
        elif op == "snap_create":
            if len(self.snaps) >= MAX_SNAPS:
                return False
            name = self.next_name("s")
            img.snap_create(name.encode()); self.snaps.append(name)
        elif op == "snap_remove":
            free = [s for s in self.snaps if s not in self.protected]
            if not free:
                return False
            name = rng.choice(free)
            img.snap_remove(name.encode()); self.snaps.remove(name)
        elif op == "snap_rename":
            if not self.snaps:
                return False
            i = rng.randrange(len(self.snaps))
            old, new = self.snaps[i], self.next_name("r")
            img.snap_rename(old.encode(), new.encode())
            self.snaps[i] = new
            if old in self.protected:
                self.protected.discard(old); self.protected.add(new)
        elif op == "snap_protect":
            free = [s for s in self.snaps if s not in self.protected]
            if not free:
                return False
            name = rng.choice(free)
            img.snap_protect(name.encode()); self.protected.add(name)
        elif op == "snap_unprotect":
            if not self.protected:
                return False
            name = rng.choice(sorted(self.protected))
            img.snap_unprotect(name.encode()); self.protected.discard(name)
        elif op == "image_rename":
            if self.args.no_rename:
                return False
            new = f"{self.args.image}-{self.next_name('n')}"
            self.rename_image(img.name, new)
            img.name = new
        elif op == "meta_set":
            key = f"wl.key{rng.randrange(5)}"
            img.metadata_set(key.encode(), f"v{self.next_name('')}".encode()); self.meta.add(key)
        elif op == "meta_remove":
            if not self.meta:
                return False
            key = rng.choice(sorted(self.meta))
            img.metadata_remove(key.encode()); self.meta.discard(key)
        else:
            raise ValueError(op)
        self.counts[op] = self.counts.get(op, 0) + 1
        return True

    def run(self, n_ops, only):
        ops = [op for op in WEIGHTS if not only or op in only]
        weights = [WEIGHTS[op] for op in ops]
        done = 0
        while done < n_ops:
            if self.run_one(self.rng.choices(ops, weights)[0]):
                done += 1
        self.img.flush()


def existing_state(args):
    """(snapshot names in id order, protected ones, workload meta keys, highest serial used).

    A replicator's sync points (`.rbd-mirror.<uuid>.<id>`, there while an image sync runs)
    are its own: a user protecting or renaming one would break that sync, so they are left out.
    """
    import rados
    import rbd
    with rados.Rados(conffile=args.conf, conf={"admin_socket": ""}) as cluster:
        pool, namespace = split_pool(args.pool)
        with cluster.open_ioctx(pool) as ioctx:
            ioctx.set_namespace(namespace)
            with rbd.Image(ioctx, args.image, read_only=True) as image:
                snaps = [s["name"] for s in sorted(image.list_snaps(), key=lambda s: s["id"])
                         if not s["name"].startswith(".rbd-mirror.")]
                protected = {s for s in snaps if image.is_protected_snap(s)}
                meta = {k for k, _ in image.metadata_list() if k.startswith("wl.")}
    used = [int(n[1:]) for n in snaps if n[1:].isdigit()]
    used += [int(p[1:]) for p in args.image.split("-") if p[:1] == "n" and p[1:].isdigit()]
    return snaps, protected, meta, max(used, default=0)


def split_pool(spec):
    """`pool` or `pool/namespace`, as the rbd CLI spells them: (pool, namespace)."""
    pool, _, namespace = spec.partition("/")
    return pool, namespace


def create_image(conf, pool, name, size, settings, mirror):
    """A journaled image (optionally mirror-enabled in journal mode), via python3-rbd."""
    import rados
    import rbd
    with rados.Rados(conffile=conf, conf=settings) as cluster:
        pool, namespace = split_pool(pool)
        with cluster.open_ioctx(pool) as ioctx:
            ioctx.set_namespace(namespace)
            features = (rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                        | rbd.RBD_FEATURE_JOURNALING)
            rbd.RBD().create(ioctx, name, size, old_format=False, features=features)
            if mirror:
                with rbd.Image(ioctx, name) as image:
                    image.mirror_image_enable()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conf", required=True, help="the primary's ceph.conf")
    ap.add_argument("--pool", default="rbd", help="POOL or POOL/NAMESPACE")
    ap.add_argument("--image", required=True)
    ap.add_argument("--create", metavar="SIZE", help="create the journaled image first (e.g. 64M)")
    ap.add_argument("--no-mirror", action="store_true", help="with --create: do not enable mirroring")
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--commit-age", type=float, help="rbd_journal_commit_age of this writer (s)")
    ap.add_argument("--no-rename", action="store_true", help="never rename the image")
    ap.add_argument("--only", metavar="OP,OP", help=f"only these operations ({', '.join(WEIGHTS)})")
    ap.add_argument("--min-size", type=parse_size, default=16 * MIB)
    ap.add_argument("--max-size", type=parse_size, default=96 * MIB)
    args = ap.parse_args()

    settings = {"admin_socket": "", "rbd_cache": "false"}
    if args.commit_age is not None:
        settings["rbd_journal_commit_age"] = str(args.commit_age)
    if args.create:
        create_image(args.conf, args.pool, args.image, parse_size(args.create), settings,
                     not args.no_mirror)
    lib = Lib()
    image = Image(lib, args.conf, args.pool, args.image, settings)

    def rename(old, new):
        lib.call("rbd_rename", image.ioctx, old.encode(), new.encode())

    started = time.monotonic()
    wl = Workload(image, random.Random(args.seed), rename, args)
    try:
        wl.run(args.ops, args.only.split(",") if args.only else None)
    finally:
        image.close()
    print(json.dumps({
        "pool": args.pool, "image": image.name, "seed": args.seed, "ops": args.ops,
        "size": wl.size, "snapshots": wl.snaps, "protected": sorted(wl.protected),
        "metadata_keys": sorted(wl.meta), "bytes_written": wl.bytes_written,
        "seconds": round(time.monotonic() - started, 3), "op_counts": wl.counts,
        "commit_age": args.commit_age,
    }, indent=1))


if __name__ == "__main__":
    try:
        main()
    except CephError as e:
        print(f"workload: {e}", file=sys.stderr)
        sys.exit(1)
