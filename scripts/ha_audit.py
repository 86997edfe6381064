#!/usr/bin/python3
"""The verdicts of scripts/ha-check, from what it recorded.

    ha_audit.py delays PROBE_JSONL START STEADY ROLLED
        Each probe image's replication delays (scripts/ha_probe.py): the writes in
        [STEADY, ROLLED] (a rolling restart) must not exceed the worst of [START, STEADY)
        (steady state) by more than 1 s.
    ha_audit.py locks IDS_FILE LOG...
        Lock audit of the daemons' logs: every "exclusive lock acquired" of a listed image
        (site-b image ids) while another client held it (acquired, not released) must
        follow a "breaking the lock of a dead holder" naming that holder, which blocklists
        it first; a release by a client not holding the lock is an error too, unless that
        client's lock on the image was broken after fencing it (a woken frozen daemon).
Prints one line per finding on stderr; exits 1 if any check failed.
"""
import json
import re
import sys

SLACK = 1.0


def say(msg):
    print(f"ha-check: {msg}", file=sys.stderr)


def delays(path, start, steady, rolled):
    start, steady, rolled = float(start), float(steady), float(rolled)
    rows = [json.loads(line) for line in open(path)]
    bad = False
    for img in sorted({r["image"] for r in rows}):
        base = sorted(r["delay"] for r in rows if r["image"] == img and start <= r["t"] < steady)
        roll = [r["delay"] for r in rows if r["image"] == img and steady <= r["t"] <= rolled]
        if not base or not roll:
            say(f"FAIL: rolling restart: {img}: no samples")
            bad = True
            continue
        ok = max(roll) <= base[-1] + SLACK
        bad |= not ok
        say(f"rolling restart: {img}: {len(roll)} writes, delay max {max(roll):.3f} s "
            f"(steady: median {base[len(base) // 2]:.3f} s, worst {base[-1]:.3f} s)"
            + ("" if ok else f": FAIL, more than {SLACK} s beyond the steady worst"))
    return bad


def field(line, key):
    m = re.search(rf"\b{key}=(\S+)", line)
    return m and m.group(1).strip('"')


KINDS = (("acquire", "exclusive lock acquired", "image", "gid"),
         # Logged before the unlock op: the next holder's "acquired" can come before
         # the unlock's reply (a failed unlock leaves the lock to be broken, "break").
         ("release", "releasing the exclusive lock", "image", "gid"),
         ("break", "breaking the lock of a dead holder", "id", "holder"))


def locks(ids_path, logs):
    ids = set(open(ids_path).read().split())
    events = []
    for path in logs:
        for line in open(path, errors="replace"):
            line = re.sub(r"\x1b\[[0-9;]*m", "", line)
            for kind, text, img_key, who in KINDS:
                if text in line and field(line, img_key) in ids:
                    events.append((line.split()[0], kind, field(line, img_key), field(line, who)))
    events.sort()
    holder, broken, bad, takes = {}, set(), False, 0
    for t, kind, img, gid in events:
        if kind == "break":
            broken.add((img, gid))
        elif kind == "acquire":
            takes += 1
            h = holder.get(img)
            if h not in (None, gid) and (img, h) not in broken:
                say(f"FAIL: lock audit: {t}: client {gid} took image {img} while {h} held it")
                bad = True
            holder[img] = gid
        elif holder.get(img) == gid:
            del holder[img]
        elif (img, gid) in broken:
            # A fenced client waking (SIGCONT) may log its release before it learns it lost
            # the lock; it was blocklisted before its lock was broken, so its unlock cannot
            # reach the OSD.
            pass
        else:
            say(f"FAIL: lock audit: {t}: client {gid} released image {img} held by {holder.get(img)}")
            bad = True
    say(f"lock audit: {takes} acquisitions of {len(ids)} images, {len(broken)} locks broken "
        f"after fencing their holder, {'overlaps found' if bad else 'no overlap'}")
    return bad


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    bad = delays(*args) if cmd == "delays" else locks(args[0], args[1:])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
