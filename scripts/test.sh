#!/usr/bin/env bash
# The test command: everything from a fresh machine (Rust present) to a verdict.
# Installs the Ceph packages when missing, starts a private two-site lab (site-a, site-b),
# runs every test (unit, property, conformance on both backends, real-Ceph tests, the
# daemon end to end on the lab), stops
# the lab and exits with the tests' status; a failed step's error lines are repeated at the end
# (every step's output is kept in /tmp/rbd-relay-test-logs.*).
#   RBD_RELAY_LAB_DIR  where the lab lives (default: a fresh directory under /tmp)
#   RBD_RELAY_KEEP_LAB=1  leave the lab running afterwards (for debugging)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ceph-lab install
export RBD_RELAY_LAB_DIR=${RBD_RELAY_LAB_DIR:-$(mktemp -d /tmp/rbd-relay-test.XXXXXX)}
stop_lab() { [ "${RBD_RELAY_KEEP_LAB:-0}" = 1 ] || scripts/ceph-lab down; }
trap stop_lab EXIT
scripts/ceph-lab up
eval "$(scripts/ceph-lab env)"

# Real-Ceph and Prometheus tests must run here: never let an inherited opt-out skip them.
unset RBD_RELAY_SKIP_CEPH RBD_RELAY_SKIP_PROMTOOL

# Examples and benchmarks must build; they run as benchmarks, not as tests.
cargo build --examples --benches --quiet
status=0
# Each step's output is kept too: a failed step's error lines are repeated at the end, where
# a truncated CI log still shows them.
logs=$(mktemp -d /tmp/rbd-relay-test-logs.XXXXXX)
failed=() steps=0
run() {
  echo "test.sh: $*"
  steps=$((steps + 1))
  local log=$logs/$steps.log
  "$@" 2>&1 | tee "$log" && return 0
  status=${PIPESTATUS[0]}
  failed+=("$*"$'\n'"$(grep -E 'FAIL|DIFFERENT|panicked|[Ee]rror:|error =|differ|within [0-9]+ s' "$log" | tail -n 15 || true)")
}
# The conformance suite once per backend, so each backend's count shows on its own line.
run cargo test --test conformance -- memory
run cargo test --test conformance -- librados
# ...and its lab-only cases that drive the rbd CLI.
run cargo test --test conformance -- --skip memory --skip librados
others=()
for t in tests/*.rs; do others+=(--test "$(basename "$t" .rs)"); done
run cargo test --lib --bins "${others[@]}"
# The lab scripts run the debug build (ha-check: the release build, below).
export RBD_RELAY_BIN=$PWD/target/debug/rbd-relay
# The benchmark scripts at reduced sizes, both systems: proves they work (reports, no gates).
# First, on a lab the other scripts have not filled yet: both replicators mirror every image
# in the pool, and the ~30 the others leave (some split-brain, some in error) only add to
# upstream's start-up, which alone takes 3 s or 30 s from one run to the next.
run scripts/bench --quick
# The process contract and the admin socket through Ceph's CLIs (before the kill -9s of
# e2e-check: it expects empty blocklists after its clean stops).
run scripts/daemon-check
# Renames, trash moves and restores, removals while the daemon is down, omap hygiene.
run scripts/image-kinds
# Clones (v1, v2, another pool, synced and replayed), a parent snapshot in the trash and
# out again, flatten.
run scripts/clone-check
# Hostile bytes (a bad CRC in a journal, an undecodable rbd_mirroring record) fail only
# their image or pool; no cephx key in logs, admin socket, metrics or status output.
run scripts/hostile-check
# The daemon end to end on the lab with real librbd on site-a: live replay of the full op
# mix, image sync, restart, and 20 kill -9s mid-workload; both sites compared byte for byte.
run scripts/e2e-check rbd-relay 200
# Failover and failback with the stock rbd CLI, rbd-relay on both sites: planned, forced
# (split-brain, resync), resync requests, disconnected clients, an outage of site-a.
run scripts/dr-drill
# Cluster faults while librbd writes: OSD and mon restarts on both sites, rbd-relay's client
# blocklisted on each, site-a stopped past the watch timeout; each must resume, be reported
# in status and metrics, and leave both sites identical.
run scripts/fault-check
# HA: three daemons on site-b share the images; SIGKILLs, a SIGSTOP freeze, leader release,
# a rolling restart timed by a probe, a lock audit (see the script). Its timings hold for
# the release build, which users run.
run cargo build --release --quiet --bin rbd-relay
RBD_RELAY_BIN=$PWD/target/release/rbd-relay run scripts/ha-check 5 12
# Repeated last, so a log's tail names what failed.
for f in "${failed[@]}"; do echo "test.sh: FAILED: ${f%%$'\n'*}"; sed 's/^/  | /' <<<"${f#*$'\n'}"; done
echo "test.sh: exit status $status"
exit $status
