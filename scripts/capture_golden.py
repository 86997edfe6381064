#!/usr/bin/python3
"""Helper of scripts/capture-golden: raw RADOS access through Ceph's own python bindings.

Must run under /usr/bin/python3 (the Debian python3-rados / python3-rbd bindings).
Every value is written as lowercase hex, no separators, one line, no trailing newline
handling needed by readers (a trailing "\n" is written; strip it).

Subcommands (CONF = a ceph.conf, POOL = pool name):
  omap CONF POOL OBJ DIR          every omap key of OBJ -> DIR/<key>.hex (+ DIR/.keys.json)
  obj CONF POOL OBJ FILE          whole object data -> FILE (hex)
  objects CONF POOL PREFIX DIR    every object whose name starts with PREFIX -> DIR/<name>.hex
  register-dummy CONF POOL JOURNAL_OBJ CLIENT_ID
                                  journal.client_register(CLIENT_ID, ClientData{CliClientMeta})
  exec-hex CONF POOL OBJ CLS METHOD INHEX
                                  exec a cls method, print "<ret> <outhex>"
  watch CONF POOL OUT OBJ...      watch the objects, append one JSON line per notify to OUT,
                                  until SIGTERM/SIGINT (acks every notify with an empty payload)
  poll CONF POOL DIR INTERVAL OBJ...
                                  poll the omap of the objects every INTERVAL s until SIGTERM;
                                  every distinct value ever seen of every key is kept as
                                  DIR/<obj>/<key>.<n>.hex, listed in DIR/history.jsonl;
                                  polling rbd_mirroring also follows journal.<id> and
                                  rbd_header.<id> of every image_<id> key it lists
  workload CONF POOL IMAGE        librbd I/O through python3-rbd + ctypes (writesame, c&w)
  bigwrite CONF POOL IMAGE LEN    one LEN-byte write + flush (to show 16 KiB event splitting)
  manifest OUTDIR                 build OUTDIR/MANIFEST.json from the tree + OUTDIR/.meta/*
  verify OUTDIR                   independent check of the capture: parse every journal_data
                                  object (framing + CRC-32C of spec §3.5) and compare the
                                  EventEntry bytes with what `rbd journal export` wrote
"""
import ctypes
import json
import os
import signal
import sys
import threading
import time

import rados

SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def fname(key):
    """File-name form of an omap key / object name: unsafe bytes as %XX."""
    out = []
    for ch in key:
        if ch in SAFE:
            out.append(ch)
        else:
            out.extend("%%%02X" % b for b in ch.encode())
    s = "".join(out)
    return s if s else "%EMPTY"  # the empty key (journal client "" is keyed "client_")


def connect(conf, extra=None):
    """An unconnected handle: `with connect(..) as c` connects it (and shuts it down)."""
    opts = {"admin_socket": ""}  # many concurrent clients: no admin socket clashes
    opts.update(extra or {})
    return rados.Rados(conffile=conf, conf=opts)


def omap_all(io, obj):
    vals = {}
    start = ""
    while True:
        with rados.ReadOpCtx() as op:
            it, _ = io.get_omap_vals(op, start, "", 1000)
            io.operate_read_op(op, obj)
            batch = list(it)
        for k, v in batch:
            vals[k] = v if v is not None else b""
        if len(batch) < 1000:
            return vals
        start = batch[-1][0]


def write_hex(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data.hex() + "\n")


def read_obj(io, obj):
    size, _ = io.stat(obj)
    data = b""
    while len(data) < size:
        chunk = io.read(obj, max(size - len(data), 1), len(data))
        if not chunk:
            break
        data += chunk
    return data


def cmd_omap(conf, pool, obj, d):
    with connect(conf) as c, c.open_ioctx(pool) as io:
        vals = omap_all(io, obj)
    os.makedirs(d, exist_ok=True)
    index = {}
    for k, v in sorted(vals.items()):
        write_hex(os.path.join(d, fname(k) + ".hex"), v)
        index[fname(k) + ".hex"] = {"key": k, "bytes": len(v)}
    with open(os.path.join(d, ".keys.json"), "w") as f:
        json.dump({"object": obj, "pool": pool, "keys": index}, f, indent=1, sort_keys=True)
    print("%s: %d omap keys" % (obj, len(vals)))


def cmd_obj(conf, pool, obj, path):
    with connect(conf) as c, c.open_ioctx(pool) as io:
        data = read_obj(io, obj)
    write_hex(path, data)
    print("%s: %d bytes" % (obj, len(data)))


def cmd_objects(conf, pool, prefix, d):
    n = 0
    with connect(conf) as c, c.open_ioctx(pool) as io:
        names = sorted(o.key for o in io.list_objects() if o.key.startswith(prefix))
        for name in names:
            write_hex(os.path.join(d, fname(name) + ".hex"), read_obj(io, name))
            n += 1
    print("%s*: %d objects" % (prefix, n))


def enc_str(s):
    b = s.encode() if isinstance(s, str) else s
    return len(b).to_bytes(4, "little") + b


def cmd_register_dummy(conf, pool, jobj, client_id):
    # ClientData v2/compat 1 { u32 type = 2 (CliClientMeta) }  -- spec §4.3
    body = (2).to_bytes(4, "little")
    client_data = bytes([2, 1]) + len(body).to_bytes(4, "little") + body
    inp = enc_str(client_id) + enc_str(client_data)
    with connect(conf) as c, c.open_ioctx(pool) as io:
        ret, _ = io.execute(jobj, "journal", "client_register", inp)
        io.notify(jobj, "")  # what the journal library does after every header change
    print("registered journal client %r on %s (ret %d, input %s)" % (client_id, jobj, ret, inp.hex()))


def cmd_exec_hex(conf, pool, obj, cls, method, inhex):
    with connect(conf) as c, c.open_ioctx(pool) as io:
        ret, out = io.execute(obj, cls, method, bytes.fromhex(inhex), 65536)
    print(ret, (out or b"").hex())


def wait_for_signal():
    stop = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: stop.set())
    return stop


def cmd_watch(conf, pool, out, objs):
    stop = wait_for_signal()
    lock = threading.Lock()
    f = open(out, "a")
    c = connect(conf)
    c.connect(timeout=30)
    io = c.open_ioctx(pool)
    watches = []

    def make_cb(obj):
        def cb(notify_id, notifier_id, watch_id, data):
            with lock:
                f.write(json.dumps({"t": time.time(), "object": obj, "notifier_gid": notifier_id,
                                    "notify_id": notify_id, "bytes": len(data or b""),
                                    "payload_hex": (data or b"").hex()}) + "\n")
                f.flush()
            return b""  # empty ack ("no opinion")
        return cb

    for obj in objs:
        for _ in range(100):
            try:
                watches.append(io.watch(obj, make_cb(obj)))
                break
            except rados.ObjectNotFound:
                time.sleep(0.1)
        else:
            print("watch: %s does not exist" % obj, file=sys.stderr)
    print("watching %d objects" % len(watches), flush=True)
    while not stop.wait(0.2):
        pass
    for w in watches:
        w.close()
    io.close()
    c.shutdown()
    f.close()


def cmd_poll(conf, pool, d, interval, objs):
    stop = wait_for_signal()
    os.makedirs(d, exist_ok=True)
    seen = {}  # (obj, key) -> (value, n)
    hist = open(os.path.join(d, "history.jsonl"), "a")
    with connect(conf) as c, c.open_ioctx(pool) as io:
        while not stop.is_set():
            for obj in list(objs):
                try:
                    vals = omap_all(io, obj)
                except rados.ObjectNotFound:
                    continue
                if obj == "rbd_mirroring":  # follow every mirrored image's header and journal
                    for k in vals:
                        if k.startswith("image_"):
                            for o in ("journal." + k[6:], "rbd_header." + k[6:]):
                                if o not in objs:
                                    objs.append(o)
                now = time.time()
                for k, v in vals.items():
                    prev = seen.get((obj, k))
                    if prev is not None and prev[0] == v:
                        continue
                    n = 0 if prev is None else prev[1] + 1
                    seen[(obj, k)] = (v, n)
                    rel = os.path.join(fname(obj), "%s.%d.hex" % (fname(k), n))
                    write_hex(os.path.join(d, rel), v)
                    hist.write(json.dumps({"t": now, "object": obj, "key": k, "version": n,
                                           "file": rel, "bytes": len(v)}) + "\n")
                for (o, k), (v, n) in list(seen.items()):
                    if o == obj and k not in vals and v is not None:
                        seen[(o, k)] = (None, n)
                        hist.write(json.dumps({"t": now, "object": obj, "key": k,
                                               "removed": True}) + "\n")
            hist.flush()
            stop.wait(interval)
    hist.close()


# --- librbd workload -------------------------------------------------------------------

def librbd_c(conf, pool, image):
    """Open IMAGE with the librbd C API (for writesame / compare_and_write, which the
    python binding of Pacific does not expose)."""
    lr = ctypes.CDLL("librados.so.2")
    lb = ctypes.CDLL("librbd.so.1")
    cluster = ctypes.c_void_p()
    assert lr.rados_create2(ctypes.byref(cluster), b"ceph", b"client.admin", ctypes.c_uint64(0)) == 0
    assert lr.rados_conf_read_file(cluster, conf.encode()) == 0
    lr.rados_conf_parse_env(cluster, None)
    assert lr.rados_connect(cluster) == 0
    ioctx = ctypes.c_void_p()
    assert lr.rados_ioctx_create(cluster, pool.encode(), ctypes.byref(ioctx)) == 0
    img = ctypes.c_void_p()
    assert lb.rbd_open(ioctx, image.encode(), ctypes.byref(img), None) == 0
    lb.rbd_writesame.restype = ctypes.c_ssize_t
    lb.rbd_writesame.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t,
                                 ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    lb.rbd_compare_and_write.restype = ctypes.c_ssize_t
    lb.rbd_compare_and_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t,
                                         ctypes.c_char_p, ctypes.c_char_p,
                                         ctypes.POINTER(ctypes.c_uint64), ctypes.c_int]

    def close():
        lb.rbd_close(img)
        lr.rados_ioctx_destroy(ioctx)
        lr.rados_shutdown(cluster)
    return lb, img, close


def cmd_workload(conf, pool, image):
    import rbd
    log = []

    def note(what, **kw):
        kw["op"] = what
        log.append(kw)
        print("workload:", json.dumps(kw), flush=True)

    with connect(conf) as c, c.open_ioctx(pool) as io:
        with rbd.Image(io, image) as img:
            for off, ln, byte in [(0, 512, 0x11), (65536, 4096, 0x22), (131072 + 512, 8192, 0x33),
                                  (1 << 20, 20000, 0x44), (3 << 20, 40960, 0x55)]:
                img.write(bytes([byte]) * ln, off)
                note("write", offset=off, length=ln, byte=byte)
            img.flush()
            note("flush")
            # a 4 KiB discard inside an 8 KiB object is a partial discard: librbd skips it
            # (rbd_skip_partial_discard) and journals nothing
            img.discard(65536, 4096)
            note("discard_partial_not_journaled", offset=65536, length=4096)
            img.write(b"\x99" * 65536, 4 << 20)
            note("write", offset=4 << 20, length=65536, byte=0x99)
            img.discard(4 << 20, 65536)  # object-aligned: journaled as AioDiscard
            note("discard", offset=4 << 20, length=65536)
            img.write_zeroes(1 << 20, 8192)
            note("write_zeroes", offset=1 << 20, length=8192)
            img.flush()
            note("flush")
    # writesame and compare_and_write through the C API
    lb, img, close = librbd_c(conf, pool, image)
    try:
        pat = b"ABCDEFGH" * 64  # 512-byte pattern
        r = lb.rbd_writesame(img, 2 << 20, 8192, pat, len(pat), 0)
        note("writesame", offset=2 << 20, length=8192, pattern_len=len(pat), result=r)
        # compare_and_write: compare against what the 0x11 write left at offset 0
        mism = ctypes.c_uint64(0)
        r = lb.rbd_compare_and_write(img, 0, 512, b"\x11" * 512, b"\x66" * 512, ctypes.byref(mism), 0)
        note("compare_and_write", offset=0, length=512, cmp_byte=0x11, write_byte=0x66, result=r)
        # a mismatching one (should fail with -EILSEQ and write nothing)
        r = lb.rbd_compare_and_write(img, 0, 512, b"\x00" * 512, b"\x77" * 512, ctypes.byref(mism), 0)
        note("compare_and_write_mismatch", offset=0, length=512, result=r, mismatch_off=mism.value)
        lb.rbd_flush(img)
        note("flush")
    finally:
        close()


def cmd_bigwrite(conf, pool, image, length):
    import rbd
    with connect(conf) as c, c.open_ioctx(pool) as io:
        with rbd.Image(io, image) as img:
            img.write(b"\x5a" * length, 0)
            img.flush()
    print("bigwrite: %d bytes at 0 + flush" % length)


# --- manifest --------------------------------------------------------------------------

def cmd_manifest(outdir):
    meta_dir = os.path.join(outdir, ".meta")
    with open(os.path.join(meta_dir, "meta.json")) as f:
        meta = json.load(f)
    commands = {}
    if os.path.exists(os.path.join(meta_dir, "commands.jsonl")):
        with open(os.path.join(meta_dir, "commands.jsonl")) as f:
            for line in f:
                e = json.loads(line)
                commands[e["file"]] = e
    files = []
    keyindex = {}
    for root, _, names in os.walk(outdir):
        for n in names:
            if n == ".keys.json":
                with open(os.path.join(root, n)) as f:
                    keyindex[os.path.relpath(root, outdir)] = json.load(f)
    for root, dirs, names in os.walk(outdir):
        dirs.sort()
        rel_root = os.path.relpath(root, outdir)
        if rel_root.startswith(".meta"):
            continue
        for n in sorted(names):
            rel = os.path.normpath(os.path.join(rel_root, n))
            if n in (".keys.json", "MANIFEST.json", "README.md"):
                continue
            e = {"file": rel, "bytes": os.path.getsize(os.path.join(root, n))}
            parts = rel.split(os.sep)
            # <phase>/<site>/omap/<object>/<key>.hex | <phase>/<site>/objects/<obj>.hex |
            # <phase>/<site>/cli/<x> | history/<site>/... | notify/<x> | logs/<x>
            if len(parts) >= 4 and parts[2] == "omap":
                ki = keyindex.get(os.path.dirname(rel), {})
                e.update(kind="omap_value", phase=parts[0], cluster=parts[1],
                         pool=ki.get("pool", meta.get("pool")), object=ki.get("object", parts[3]),
                         key=ki.get("keys", {}).get(n, {}).get("key"), encoding="hex")
            elif len(parts) >= 4 and parts[2] == "objects":
                e.update(kind="object_data", phase=parts[0], cluster=parts[1],
                         pool=meta.get("pool"), object=n[:-4] if n.endswith(".hex") else n,
                         encoding="hex")
            elif len(parts) >= 3 and parts[0] == "history":
                e.update(kind="omap_history", cluster=parts[1],
                         note="every distinct omap value seen while polling (see history.jsonl)")
            elif parts[0] == "notify":
                e.update(kind="watch_notify", note="one JSON line per notify received")
            elif parts[0] == "logs":
                e.update(kind="log")
            if rel in commands:
                e.update(kind="tool_output", command=commands[rel]["command"],
                         cluster=commands[rel].get("cluster"), exit_code=commands[rel].get("rc"))
                if "phase" in commands[rel]:
                    e["phase"] = commands[rel]["phase"]
            files.append(e)
    out = dict(meta)
    out["files"] = files
    out["total_bytes"] = sum(e["bytes"] for e in files)
    with open(os.path.join(outdir, "MANIFEST.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    print("MANIFEST.json: %d files, %d bytes" % (len(files), out["total_bytes"]))


# --- verify -------------------------------------------------------------------------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def ceph_crc32c(data, crc=0):
    """ceph_crc32c(seed, ...): reflected CRC-32C, no pre/post inversion."""
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def parse_journal_object(data):
    """Records of one journal data object (spec §3.5): list of (offset, entry_tid, tag_tid,
    payload). Raises on any framing/CRC error."""
    out, off = [], 0
    while off < len(data):
        pre = int.from_bytes(data[off:off + 8], "little")
        assert pre == 0x3141592653589793, "bad preamble at %d" % off
        assert data[off + 8] == 1, "bad version at %d" % off
        entry_tid = int.from_bytes(data[off + 9:off + 17], "little")
        tag_tid = int.from_bytes(data[off + 17:off + 25], "little")
        ln = int.from_bytes(data[off + 25:off + 29], "little")
        payload = data[off + 29:off + 29 + ln]
        crc = int.from_bytes(data[off + 29 + ln:off + 33 + ln], "little")
        assert crc == ceph_crc32c(data[off:off + 29 + ln]), "bad crc at %d" % off
        out.append((off, entry_tid, tag_tid, payload))
        off += 33 + ln
    return out


def cmd_verify(outdir):
    import base64
    import glob
    import re
    ok = True
    man = json.load(open(os.path.join(outdir, "MANIFEST.json")))
    images = [(man["image"]["id_site_a"], "journal-export.txt", man["image"]["journal_order"]),
              (man["big_image"]["id_site_a"], "big-journal-export.txt", man["big_image"]["journal_order"])]
    objdir = os.path.join(outdir, "2-replaying", "site-a", "objects")
    for image_id, export, order in images:
        records = []
        sizes = []
        for path in glob.glob(os.path.join(objdir, "journal_data.*.%s.*.hex" % image_id)):
            objno = int(path.rsplit(".", 2)[1])
            data = bytes.fromhex(open(path).read().strip())
            sizes.append(len(data))  # may exceed 2^order: the last append into an object that
                                     # was still below the soft limit is not refused
            for off, etid, ttid, payload in parse_journal_object(data):
                records.append((ttid, etid, objno, off, payload))
        records.sort()
        # per tag, entry tids are 0..n-1 without gaps
        by_tag = {}
        for ttid, etid, *_ in records:
            by_tag.setdefault(ttid, []).append(etid)
        for ttid, tids in by_tag.items():
            if tids != list(range(len(tids))):
                print("FAIL %s: tag %d entry tids %s" % (image_id, ttid, tids))
                ok = False
        exported = []
        with open(os.path.join(outdir, "2-replaying", "site-a", "cli", export)) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                e = json.loads(line.split(" ", 1)[1])
                exported.append((e["tag_id"], base64.b64decode(e["entry"]), e["type"]))
        ours = [(r[0], r[4]) for r in records]
        theirs = [(t, b) for t, b, _ in exported]
        if sorted(ours) != sorted(theirs):
            print("FAIL %s: %d records parsed vs %d exported, payloads differ" % (image_id, len(ours), len(theirs)))
            ok = False
        for (t, b, typ) in exported:
            # EventEntry v5: u8 v, u8 compat, u32 len, u32 event_type
            if int.from_bytes(b[6:10], "little") != typ:
                print("FAIL %s: exported type %d != encoded type" % (image_id, typ))
                ok = False
        types = {}
        for _, b, typ in exported:
            types[typ] = types.get(typ, 0) + 1
        biggest = max(len(r[4]) for r in records)
        print("%s: %d records in %d objects (largest object %d bytes, 2^order %d; largest payload %d),"
              " tags %s, all CRCs ok, exported event types %s" % (
                  image_id, len(records), len(sizes), max(sizes), 1 << order, biggest,
                  sorted(by_tag), dict(sorted(types.items()))))
    print("verify:", "OK" if ok else "FAILED")
    return 0 if ok else 1


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, a = argv[1], argv[2:]
    if cmd == "omap":
        cmd_omap(*a)
    elif cmd == "obj":
        cmd_obj(*a)
    elif cmd == "objects":
        cmd_objects(*a)
    elif cmd == "register-dummy":
        cmd_register_dummy(*a)
    elif cmd == "exec-hex":
        cmd_exec_hex(*a)
    elif cmd == "watch":
        cmd_watch(a[0], a[1], a[2], a[3:])
    elif cmd == "poll":
        cmd_poll(a[0], a[1], a[2], float(a[3]), a[4:])
    elif cmd == "workload":
        cmd_workload(*a)
    elif cmd == "bigwrite":
        cmd_bigwrite(a[0], a[1], a[2], int(a[3]))
    elif cmd == "manifest":
        cmd_manifest(*a)
    elif cmd == "verify":
        return cmd_verify(*a)
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
