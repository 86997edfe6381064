//! What Ceph's own tools make of an image the `rbd` module wrote, in the lab's site-a
//! (lab only: without one these fail unless `RBD_RELAY_SKIP_CEPH=1`).
//!
//! - `same_image_as_librbd`: a non-primary image written by rbd-relay and a plain image
//!   written by real librbd (`tests/rbd/librbd_reference.py`) with the same operations
//!   agree for `rbd info`, `rbd snap ls`, `rbd image-meta list` and `rbd export` of head
//!   and every snapshot; ours is non-primary (`object-map check` refused with EROFS, as
//!   librbd will not lock it) and listed by `rbd mirror image status`; `rbd mirror image
//!   promote --force` then works, the object maps of head and snapshots pass `rbd
//!   object-map check` and stay valid, and librbd reads the same bytes and writes to it.
//! - `promote_takes_the_lock_from_us`: promote while rbd-relay holds the lock; the
//!   promotion's journal notify makes us let go (16.2.15's promote asks nobody for the
//!   lock), a librbd lock request is then granted.
//! - `bad_input`: writes past the end, a missing image, a snapshot taken behind our back.

#[path = "rbd/cases.rs"]
#[allow(dead_code)] // the image spec, byte patterns and lock request helpers only
mod cases;
#[path = "support/mod.rs"]
#[allow(dead_code)] // each test crate uses part of the shared support
mod harness;
#[path = "rbd/lock_cases.rs"]
#[allow(dead_code)]
mod lock_cases;

use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use rbd_relay::format::image::{SnapshotNamespace, oids};
use rbd_relay::rados::librados::LibradosIoCtx;
use rbd_relay::rbd::{Image, IoOp, LockState, NonPrimarySpec, RbdError, create_non_primary};
use serde_json::{Value, json};

use harness::cli;

const MIB: u64 = 1 << 20;
/// 1 MiB objects, so a few MiB cover whole-object, partial and cross-object cases.
const ORDER: u8 = 20;
const SIZE: u64 = 8 * MIB;
/// The same without journaling, for the plain reference image.
const PLAIN_FEATURES: &str = "layering,exclusive-lock,object-map,fast-diff,deep-flatten";

/// Byte i is (seed + i % 251) mod 256; `librbd_reference.py` has the same rule.
fn pattern(seed: u8, len: u64) -> Bytes {
    cases::pattern(seed, len as usize)
}

/// The operations both sides apply, in order (the reference reads them as JSON lines).
/// Discards are 64 KiB-aligned, librbd's default discard granularity.
fn workload() -> Vec<Value> {
    vec![
        json!({"op": "write", "offset": 0, "seed": 1, "len": 300_000}),
        json!({"op": "write", "offset": MIB - 1000, "seed": 2, "len": 5000}),
        json!({"op": "write", "offset": 3 * MIB, "seed": 3, "len": MIB}),
        json!({"op": "write", "offset": 5 * MIB + 123, "seed": 4, "len": 70_000}),
        json!({"op": "discard", "offset": 128 << 10, "length": 64 << 10}),
        json!({"op": "discard", "offset": 3 * MIB, "length": MIB}),
        json!({"op": "write_same", "offset": 6 * MIB + 512, "length": 64 << 10, "seed": 7, "unit": 512}),
        // librbd takes one 512-byte sector. 128512 = 512 × 251: the image holds
        // pattern(1, _) there, so this one matches…
        json!({"op": "compare_and_write", "offset": 128_512, "len": 512, "cmp_seed": 1, "seed": 8, "matches": true}),
        // …and this one does not (nothing written).
        json!({"op": "compare_and_write", "offset": 8192, "len": 512, "cmp_seed": 9, "seed": 10, "matches": false}),
        json!({"op": "snap", "name": "s1"}),
        json!({"op": "write", "offset": 0, "seed": 20, "len": 4096}),
        json!({"op": "discard", "offset": MIB, "length": MIB}),
        json!({"op": "write", "offset": 7 * MIB + 1000, "seed": 21, "len": 10_000}),
        json!({"op": "resize", "size": 12 * MIB}),
        json!({"op": "write", "offset": 11 * MIB, "seed": 22, "len": 8192}),
        json!({"op": "snap", "name": "s2"}),
        json!({"op": "resize", "size": 5 * MIB + 512 * 1024}),
        json!({"op": "write", "offset": 5 * MIB, "seed": 23, "len": 4096}),
        json!({"op": "protect", "name": "s1"}),
        json!({"op": "meta", "key": "owner", "value": "rbd-relay"}),
    ]
}

fn u(op: &Value, key: &str) -> u64 {
    op[key].as_u64().unwrap_or_else(|| panic!("{key} in {op}"))
}

fn s<'a>(op: &'a Value, key: &str) -> &'a str {
    op[key].as_str().unwrap_or_else(|| panic!("{key} in {op}"))
}

/// The data ops of the workload as `IoOp`s (`None` for header ops).
fn io_op(op: &Value) -> Option<IoOp> {
    let seed = |key| u(op, key) as u8;
    Some(match s(op, "op") {
        "write" => IoOp::Write {
            offset: u(op, "offset"),
            data: pattern(seed("seed"), u(op, "len")),
        },
        "discard" => IoOp::Discard {
            offset: u(op, "offset"),
            length: u(op, "length"),
        },
        "write_same" => IoOp::WriteSame {
            offset: u(op, "offset"),
            length: u(op, "length"),
            pattern: pattern(seed("seed"), u(op, "unit")),
        },
        "compare_and_write" => IoOp::CompareAndWrite {
            offset: u(op, "offset"),
            cmp: pattern(seed("cmp_seed"), u(op, "len")),
            data: pattern(seed("seed"), u(op, "len")),
        },
        _ => return None,
    })
}

/// Applies the workload through our `Image`: consecutive data ops as one batch, the way a
/// journal replayer hands them over between barriers.
async fn apply_ours(image: &mut Image<LibradosIoCtx>, ops: &[Value]) {
    let mut batch: Vec<IoOp> = Vec::new();
    let mut mismatches = 0;
    for op in ops {
        if let Some(io) = io_op(op) {
            mismatches += usize::from(op["matches"] == json!(false));
            batch.push(io);
            continue;
        }
        flush_batch(image, &mut batch, &mut mismatches).await;
        match s(op, "op") {
            "snap" => {
                image
                    .snap_create(s(op, "name"), SnapshotNamespace::User)
                    .await
                    .unwrap();
            }
            "resize" => image.resize(u(op, "size")).await.unwrap(),
            "protect" => image.snap_protect(s(op, "name")).await.unwrap(),
            "meta" => image
                .metadata_set(s(op, "key"), s(op, "value"))
                .await
                .unwrap(),
            other => panic!("unknown op {other}"),
        }
    }
    flush_batch(image, &mut batch, &mut mismatches).await;
}

async fn flush_batch(image: &Image<LibradosIoCtx>, batch: &mut Vec<IoOp>, mismatches: &mut usize) {
    let result = image.apply(batch, 32).await;
    match (*mismatches, result) {
        (0, r) => r.unwrap(),
        (_, Err(RbdError::CompareMismatch { .. })) => {}
        (_, r) => panic!("a compare-and-write had to mismatch: {r:?}"),
    }
    batch.clear();
    *mismatches = 0;
}

/// Applies the workload with real librbd to an existing plain image.
fn apply_reference(image: &str, ops: &[Value]) {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rbd/librbd_reference.py");
    let mut child = Command::new("/usr/bin/python3")
        .args([script, &harness::conf_path(), "rbd", image])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().unwrap();
    for op in ops {
        writeln!(stdin, "{op}").unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "librbd reference failed");
}

/// Runs a CLI command that may fail; its output.
fn try_cli(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(["-c", &harness::conf_path()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn cli_json(args: &[&str]) -> Value {
    let out = cli("rbd", &[args, &["--format", "json"]].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("rbd {args:?}: {e}: {out}"))
}

/// `rbd export` of an image or snapshot spec.
fn export(spec: &str) -> Vec<u8> {
    let out = try_cli("rbd", &["export", "--no-progress", spec, "-"]);
    assert!(
        out.status.success(),
        "export {spec}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn export_md5(spec: &str) -> String {
    md5_hex(&export(spec))
}

/// (name, size, protected) of each snapshot, oldest first.
fn snaps(spec: &str) -> Vec<(String, u64, String)> {
    let list = cli_json(&["snap", "ls", spec]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["size"].as_u64().unwrap(),
                s["protected"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A fresh non-primary image in the lab's pool `rbd` (mirroring on in image mode, as
/// rbd-mirror needs it), opened and locked by rbd-relay.
async fn locked_non_primary(
    io: &LibradosIoCtx,
    prefix: &str,
) -> (Image<LibradosIoCtx>, NonPrimarySpec) {
    // Once per process: two `rbd mirror pool enable` racing on a pool whose mode is still
    // disabled both try to allocate the mirror uuid, and the loser fails with EINVAL.
    static MIRRORING: std::sync::Once = std::sync::Once::new();
    MIRRORING.call_once(|| {
        cli("rbd", &["mirror", "pool", "enable", "rbd", "image"]);
    });
    let spec = NonPrimarySpec {
        size: SIZE,
        order: ORDER,
        ..cases::spec(prefix)
    };
    let id = create_non_primary(io, &spec).await.unwrap();
    let mut image = Image::open(io.clone(), &id).await.unwrap();
    image.acquire_lock().await.unwrap();
    (image, spec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_image_as_librbd() {
    let Some((_cluster, io)) = harness::librados("same_image_as_librbd").await else {
        return;
    };
    let ops = workload();
    let (mut image, np) = locked_non_primary(&io, "cli-ours").await;
    apply_ours(&mut image, &ops).await;
    image.release_lock().await.unwrap();
    let ours = format!("rbd/{}", np.name);

    let reference = unique("cli-ref");
    let size = format!("{}", SIZE);
    cli(
        "rbd",
        &[
            "create",
            "--size",
            &format!("{}B", size),
            "--object-size",
            "1M",
            "--image-feature",
            PLAIN_FEATURES,
            &format!("rbd/{reference}"),
        ],
    );
    apply_reference(&reference, &ops);
    let theirs = format!("rbd/{reference}");

    let info = cli_json(&["info", &ours]);
    let ref_info = cli_json(&["info", &theirs]);
    assert_eq!(info["size"], ref_info["size"]);
    assert_eq!(info["size"], json!(5 * MIB + 512 * 1024));
    assert_eq!(info["order"], json!(ORDER));
    let features: Vec<&str> = info["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert_eq!(
        features,
        [
            "layering",
            "exclusive-lock",
            "object-map",
            "fast-diff",
            "deep-flatten",
            "journaling"
        ]
    );
    assert_eq!(info["flags"], json!([]), "no invalid object map: {info}");
    assert_eq!(info["mirroring"]["mode"], "journal", "{info}");
    assert_eq!(info["mirroring"]["state"], "enabled", "{info}");
    assert_eq!(info["mirroring"]["global_id"], json!(np.global_image_id));
    assert_eq!(info["mirroring"]["primary"], json!(false), "{info}");

    let snapshots = snaps(&ours);
    assert_eq!(snapshots, snaps(&theirs));
    assert_eq!(
        snapshots,
        [
            ("s1".to_string(), SIZE, "true".to_string()),
            ("s2".to_string(), 12 * MIB, "false".to_string())
        ]
    );
    assert_eq!(
        cli_json(&["image-meta", "list", &ours]),
        json!({"owner": "rbd-relay"})
    );
    let mut sums = Vec::new();
    for at in ["", "@s1", "@s2"] {
        let sum = export_md5(&format!("{ours}{at}"));
        assert_eq!(
            sum,
            export_md5(&format!("{theirs}{at}")),
            "rbd export {ours}{at} differs from librbd's"
        );
        assert!(!sums.contains(&sum), "{at} equals an earlier version");
        sums.push(sum);
        let info = cli_json(&["info", &format!("{ours}{at}")]);
        assert_eq!(info["flags"], json!([]), "{at}: {info}");
    }
    // librbd checks a map only as lock owner, which it may not be of a non-primary image.
    let refused = try_cli("rbd", &["object-map", "check", "--no-progress", &ours]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("(30) Read-only file system"),
        "object-map check of a non-primary image: {refused:?}"
    );

    let status = cli_json(&["mirror", "image", "status", &ours]);
    assert_eq!(status["name"], json!(np.name), "{status}");
    assert_eq!(status["global_id"], json!(np.global_image_id), "{status}");

    cli("rbd", &["mirror", "image", "promote", "--force", &ours]);
    let info = cli_json(&["info", &ours]);
    assert_eq!(info["mirroring"]["primary"], json!(true), "{info}");
    check_object_maps(&ours);
    librbd_reads_and_writes(&np.name, &export_md5(&theirs));
    for spec in [&ours, &theirs] {
        cli("rbd", &["snap", "unprotect", &format!("{spec}@s1")]);
        cli("rbd", &["snap", "purge", "--no-progress", spec]);
        cli("rbd", &["rm", "--no-progress", spec]);
    }
}

/// `rbd object-map check` of head and every snapshot finds nothing to fix: the maps stay
/// valid (a check that finds a wrong entry flags the map invalid). Run after promotion,
/// which leaves the maps as rbd-relay wrote them.
fn check_object_maps(spec: &str) {
    for at in ["", "@s1", "@s2"] {
        let spec = format!("{spec}{at}");
        let out = try_cli("rbd", &["object-map", "check", "--no-progress", &spec]);
        assert!(
            out.status.success(),
            "object-map check {spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info = cli_json(&["info", &spec]);
        assert_eq!(info["flags"], json!([]), "after check {spec}: {info}");
    }
}

/// python3-rbd opens the promoted image, reads what the reference holds, writes a block
/// and reads it back.
fn librbd_reads_and_writes(name: &str, reference_md5: &str) {
    let script = r#"
import hashlib, sys, rados, rbd
conf, name = sys.argv[1:3]
with rados.Rados(conffile=conf) as cluster, cluster.open_ioctx("rbd") as io, rbd.Image(io, name) as img:
    print(hashlib.md5(img.read(0, img.size())).hexdigest())
    img.write(b"\xab" * 4096, 8192)
    img.flush()
    print(img.read(8192, 4096) == b"\xab" * 4096)
"#;
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, &harness::conf_path(), name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python3-rbd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, [reference_md5, "True"], "python3-rbd read/write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_takes_the_lock_from_us() {
    let Some((_cluster, io)) = harness::librados("promote_takes_the_lock_from_us").await else {
        return;
    };
    let (mut image, np) = locked_non_primary(&io, "cli-promote").await;
    image.write(0, pattern(1, 4096)).await.unwrap();
    let ours = format!("rbd/{}", np.name);
    let mut state = image.lock_state();
    let promote = {
        let ours = ours.clone();
        tokio::task::spawn_blocking(move || {
            try_cli("rbd", &["mirror", "image", "promote", "--force", &ours])
        })
    };
    // 16.2.15's promote does not ask for the lock: it allocates a local-owned journal tag
    // and notifies the journal header; that notify is what tells us to let go.
    let observed = tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| *s != LockState::Held),
    )
    .await
    .expect("the promotion was not noticed")
    .map(|s| *s)
    .unwrap();
    assert_eq!(observed, LockState::ReleaseRequested);
    let out = promote.await.unwrap();
    assert!(
        out.status.success(),
        "promote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = cli_json(&["info", &ours]);
    assert_eq!(info["mirroring"]["primary"], json!(true), "{info}");
    // A librbd writer asking for the lock now is told yes.
    assert_eq!(
        lock_cases::request_lock(&io, &oids::header(image.id())).await,
        0,
        "promoted: the lock may go"
    );
    image.release_lock().await.unwrap();
    assert!(matches!(
        image.write(0, pattern(2, 4096)).await,
        Err(RbdError::LockNotHeld)
    ));
    librbd_reads_and_writes(
        &np.name,
        &md5_hex(&image_bytes(&[(0, pattern(1, 4096))], SIZE)),
    );
    cli("rbd", &["rm", "--no-progress", &ours]);
}

/// An image of `size` bytes holding `extents`, zeros elsewhere.
fn image_bytes(extents: &[(u64, Bytes)], size: u64) -> Vec<u8> {
    let mut bytes = vec![0; size as usize];
    for (offset, data) in extents {
        bytes[*offset as usize..*offset as usize + data.len()].copy_from_slice(data);
    }
    bytes
}

fn md5_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("md5sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input() {
    let Some((_cluster, io)) = harness::librados("bad_input").await else {
        return;
    };
    let (mut image, np) = locked_non_primary(&io, "cli-bad").await;
    let err = image.write(SIZE - 100, pattern(1, 200)).await.unwrap_err();
    assert!(
        matches!(err, RbdError::OutOfBounds { offset, length: 200, size: SIZE } if offset == SIZE - 100),
        "{err}"
    );
    let missing = Image::open_by_name(io.clone(), &unique("missing")).await;
    assert!(matches!(missing, Err(RbdError::NotFound(_))));

    // Another client snapshots the image behind our back and tells the header's watchers,
    // as librbd does: our writes stop until a refresh picks up the new snap context.
    image.write(0, pattern(1, 4096)).await.unwrap();
    lock_cases::snapshot_behind_our_back(&io, image.id(), "behind").await;
    let err = image.write(0, pattern(2, 4096)).await.unwrap_err();
    assert!(matches!(err, RbdError::StaleSnapContext), "{err}");
    image.refresh().await.unwrap();
    image.write(0, pattern(2, 4096)).await.unwrap();
    image.release_lock().await.unwrap();
    let ours = format!("rbd/{}", np.name);
    let snap_spec = format!("{ours}@behind");
    assert_eq!(
        &export(&snap_spec)[..4096],
        &pattern(1, 4096)[..],
        "the snapshot kept the data from before it"
    );
    assert_eq!(&export(&ours)[..4096], &pattern(2, 4096)[..]);
    cli("rbd", &["mirror", "image", "promote", "--force", &ours]);
    cli("rbd", &["snap", "purge", "--no-progress", &ours]);
    cli("rbd", &["rm", "--no-progress", &ours]);
}
