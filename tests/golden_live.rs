//! Proves `rbd_relay::format` against bytes written by **real Ceph 16.2.15** and against Ceph's
//! own interpretation of them (`tests/data/golden-live/`, see its README and MANIFEST.json),
//! not against our own encoders. No Ceph needed; everything is read from the capture.
//!
//! 1. Journal data objects: `scan_entries` splits every captured `journal_data.*` object into
//!    records with no error and no truncated tail; every record re-frames (CRC included) and
//!    every `EventEntry` re-encodes byte-identically; records sit at their splay offset; the
//!    records of each journal, in playback order (§3.7: per tag strictly by entry tid, tags
//!    never going back, so `(tag_tid, entry_tid)` order), equal exactly `rbd journal export`
//!    (tag ids, payload bytes, event type numbers), and every decoded event equals the JSON
//!    that `rbd journal export --verbose` printed for it (names, all fields, timestamp).
//! 2. Every omap value of every phase and every distinct value in `history/` (rbd_mirroring,
//!    rbd_mirror_leader, rbd_directory, journal headers incl. `ClientData`/`TagData`, image
//!    headers) decodes and re-encodes byte-identically, and agrees with the CLI's view:
//!    `rbd journal status`/`info`, `rbd mirror image status`, `rbd mirror pool info`,
//!    `rbd info`, `rbd snap ls --all`, `rbd image-meta list`.
//! 3. Every captured watch/notify payload decodes (MirroringNotify on `rbd_mirroring`,
//!    HeaderNotify on `rbd_header.*`, empty on `journal.*`) and re-encodes byte-identically.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde_json::{Value, json};

use rbd_relay::format::client_data::{ClientData, MirrorPeerState, TagData};
use rbd_relay::format::entry::{Entry, scan_entries};
use rbd_relay::format::event::{Event, EventEntry};
use rbd_relay::format::image::{ProtectionStatus, SnapshotNamespace, SnapshotRecord};
use rbd_relay::format::journal::{Client, ClientState, ObjectPosition, Tag};
use rbd_relay::format::mirror::{
    MirrorImage, MirrorImageMap, MirrorImageMode, MirrorImageSiteStatusOnDisk, MirrorImageState,
    MirrorImageStatusState, MirrorMode, MirrorPeer, MirrorPeerDirection, decode_raw_mirror_uuid,
};
use rbd_relay::format::notify::{HeaderNotify, MirroringNotify};
use rbd_relay::format::{Decode, Encode, UTime};

// ---- capture access ----------------------------------------------------------------------

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-live");

fn text(rel: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{rel}")).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn json_file(rel: &str) -> Value {
    serde_json::from_str(&text(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn unhex(s: &str) -> Bytes {
    let s = s.trim();
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect::<Vec<_>>()
        .into()
}

fn hex_file(rel: &str) -> Bytes {
    unhex(&text(rel))
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 byte {c}"),
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in s {
        acc = (acc << 6) | u32::from(val(c));
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn manifest() -> Value {
    json_file("MANIFEST.json")
}

fn mstr<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_str()
        .unwrap_or_else(|| panic!("MANIFEST {path:?}"))
}

/// One captured omap value: `source` is `<phase>` or `history`.
struct OmapValue {
    source: String,
    cluster: String,
    object: String,
    key: String,
    value: Bytes,
}

/// Every omap value of both phases (MANIFEST) and every distinct value of `history/`.
fn omap_values() -> Vec<OmapValue> {
    let mut out = Vec::new();
    for f in manifest()["files"].as_array().unwrap() {
        if f["kind"] == "omap_value" {
            out.push(OmapValue {
                source: f["phase"].as_str().unwrap().into(),
                cluster: f["cluster"].as_str().unwrap().into(),
                object: f["object"].as_str().unwrap().into(),
                key: f["key"].as_str().unwrap().into(),
                value: hex_file(f["file"].as_str().unwrap()),
            });
        }
    }
    for site in ["site-a", "site-b"] {
        for line in text(&format!("history/{site}/history.jsonl")).lines() {
            let h: Value = serde_json::from_str(line).unwrap();
            if h["removed"] == true {
                continue;
            }
            let value = hex_file(&format!("history/{site}/{}", h["file"].as_str().unwrap()));
            assert_eq!(value.len() as u64, h["bytes"].as_u64().unwrap());
            out.push(OmapValue {
                source: "history".into(),
                cluster: site.into(),
                object: h["object"].as_str().unwrap().into(),
                key: h["key"].as_str().unwrap().into(),
                value,
            });
        }
    }
    out
}

/// The omap of one object in one phase, key → value.
fn omap(phase: &str, cluster: &str, object: &str) -> BTreeMap<String, Bytes> {
    let m: BTreeMap<_, _> = omap_values()
        .into_iter()
        .filter(|v| v.source == phase && v.cluster == cluster && v.object == object)
        .map(|v| (v.key, v.value))
        .collect();
    assert!(
        !m.is_empty(),
        "no omap captured for {phase}/{cluster}/{object}"
    );
    m
}

fn with_prefix<'a>(
    m: &'a BTreeMap<String, Bytes>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a str, &'a Bytes)> + 'a {
    m.iter()
        .filter_map(move |(k, v)| k.strip_prefix(prefix).map(|s| (s, v)))
}

/// Decodes `b` as `T` and asserts that re-encoding gives exactly `b`.
fn rt<T: Decode + Encode + std::fmt::Debug>(what: &str, b: &Bytes) -> T {
    let v = T::from_bytes(b.clone()).unwrap_or_else(|e| panic!("{what}: decode failed: {e:?}"));
    assert_eq!(v.to_bytes(), *b, "{what}: re-encoding of {v:?} differs");
    v
}

// ---- Ceph's time formats (the lab ran in UTC) --------------------------------------------

/// (year, month, day, hh, mm, ss, weekday 0 = Sunday) of a Unix time.
fn civil(t: UTime) -> (i64, u32, u32, u32, u32, u32, usize) {
    let secs = i64::from(t.sec);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400) as u32);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    let wday = (days + 4).rem_euclid(7) as usize;
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60, wday)
}

/// `utime_t::gmtime` as `rbd journal export --verbose` prints it.
fn iso_micros(t: UTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    let us = t.nsec / 1000;
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}+0000")
}

/// `ctime(3)` without the newline, as `rbd info` / `rbd snap ls` print it.
fn ctime(t: UTime) -> String {
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, wd) = civil(t);
    format!(
        "{} {}{d:3} {h:02}:{mi:02}:{s:02} {y}",
        WD[wd],
        MON[mo as usize - 1]
    )
}

/// `YYYY-mm-dd HH:MM:SS`, as `rbd mirror image status` prints `last_update`.
fn ymd_hms(t: UTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

#[test]
fn time_formatting_helpers() {
    // 0x6b069275 is create_timestamp of gold; `rbd info` printed this.
    assert_eq!(
        ctime(UTime::new(0x6b06_9275, 0)),
        "Wed Nov 25 07:47:01 2026"
    );
    assert_eq!(ctime(UTime::new(0, 0)), "Thu Jan  1 00:00:00 1970");
    assert_eq!(
        iso_micros(UTime::new(951_782_400, 1_999)),
        "2000-02-29T00:00:00.000001+0000"
    );
}

// ---- 1. journal data objects vs `rbd journal export` --------------------------------------

/// One record as found in a data object.
struct Record {
    object_number: u64,
    entry: Entry,
    event: EventEntry,
}

/// Scans every captured data object of journal `id`, proving framing, CRC and EventEntry
/// round trips on the way. Returns the number of objects and the records in object order.
fn journal_records(id: &str) -> (usize, Vec<Record>) {
    let prefix = format!("journal_data.1.{id}.");
    let mut objects = 0;
    let mut out = Vec::new();
    for f in manifest()["files"].as_array().unwrap() {
        let Some(n) = f["object"].as_str().and_then(|o| o.strip_prefix(&prefix)) else {
            continue;
        };
        assert_eq!(f["kind"], "object_data");
        let object_number: u64 = n.parse().unwrap();
        let buf = hex_file(f["file"].as_str().unwrap());
        let scan = scan_entries(buf.clone()).unwrap_or_else(|e| panic!("{n}: {e:?}"));
        assert_eq!(scan.tail_offset, buf.len(), "object {n}: truncated tail");
        assert!(!scan.entries.is_empty(), "object {n}: empty");
        for s in scan.entries {
            let framed = s.entry.to_bytes();
            assert_eq!(
                framed,
                buf[s.offset..s.offset + framed.len()],
                "{n}@{}",
                s.offset
            );
            let what = format!("object {n} record at {}", s.offset);
            let event: EventEntry = rt(&what, &s.entry.data);
            out.push(Record {
                object_number,
                entry: s.entry,
                event,
            });
        }
        objects += 1;
    }
    (objects, out)
}

/// `rbd journal export`: (tag_id, type, EventEntry bytes) per entry in playback order.
fn journal_export(rel: &str, id: &str) -> Vec<(u64, u64, Vec<u8>)> {
    let t = text(rel);
    let mut lines = t.lines();
    assert_eq!(lines.next(), Some(format!("# journal_id: {id}").as_str()));
    lines
        .enumerate()
        .map(|(i, line)| {
            let (len, js) = line.split_once(' ').unwrap();
            // The prefix is the JSON's length (the README says "+ newline": it is not).
            assert_eq!(len.parse::<usize>().unwrap(), js.len(), "length prefix");
            let v: Value = serde_json::from_str(js).unwrap();
            assert_eq!(v["commit_tid"].as_u64(), Some(i as u64 + 1), "commit_tid");
            let entry = base64(v["entry"].as_str().unwrap());
            (
                v["tag_id"].as_u64().unwrap(),
                v["type"].as_u64().unwrap(),
                entry,
            )
        })
        .collect()
}

/// The JSON objects of `rbd journal export --verbose`, checking its summary line.
fn export_verbose(rel: &str) -> Vec<Value> {
    let t = text(rel);
    let end = t.rfind("}\n").map_or(0, |i| i + 2);
    let events: Vec<Value> = serde_json::Deserializer::from_str(&t[..end])
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        t[end..].trim(),
        format!("{} entries processed, 0 errors", events.len())
    );
    events
}

/// What `EventEntry::dump` (librbd/journal/Types.cc) prints for `e`.
fn ceph_dump(e: &EventEntry) -> Value {
    let ns = |n: &SnapshotNamespace| {
        assert_eq!(*n, SnapshotNamespace::User);
        "user"
    };
    let mut v = match &e.event {
        Event::AioDiscard {
            offset,
            length,
            discard_granularity_bytes,
            skip_partial_discard,
        } => {
            assert_eq!(*skip_partial_discard, *discard_granularity_bytes > 0);
            json!({"offset": offset, "length": length,
                   "discard_granularity_bytes": discard_granularity_bytes})
        }
        Event::AioWrite {
            offset,
            length,
            data,
        } => {
            assert_eq!(data.len() as u64, *length);
            json!({"offset": offset, "length": length})
        }
        Event::AioWriteSame { offset, length, .. } => json!({"offset": offset, "length": length}),
        Event::AioCompareAndWrite {
            offset,
            length,
            cmp_data,
            write_data,
        } => {
            assert_eq!(
                (cmp_data.len() as u64, write_data.len() as u64),
                (*length, *length)
            );
            json!({"offset": offset, "length": length})
        }
        Event::AioFlush => json!({}),
        Event::OpFinish { op_tid, r } => json!({"op_tid": op_tid, "result": r}),
        Event::SnapCreate {
            op_tid,
            snap_name,
            snap_namespace: n,
        }
        | Event::SnapRemove {
            op_tid,
            snap_name,
            snap_namespace: n,
        }
        | Event::SnapProtect {
            op_tid,
            snap_name,
            snap_namespace: n,
        }
        | Event::SnapUnprotect {
            op_tid,
            snap_name,
            snap_namespace: n,
        } => json!({"op_tid": op_tid, "snap_name": snap_name, "snapshot_namespace_type": ns(n)}),
        Event::SnapRename {
            op_tid,
            dst_snap_name,
            snap_id,
            src_snap_name,
        } => json!({"op_tid": op_tid, "src_snap_id": snap_id, "src_snap_name": src_snap_name,
                    "dest_snap_name": dst_snap_name}),
        Event::Rename { op_tid, image_name } => json!({"op_tid": op_tid, "image_name": image_name}),
        Event::Resize { op_tid, size } => json!({"op_tid": op_tid, "size": size}),
        Event::SnapLimit { op_tid, limit } => json!({"op_tid": op_tid, "limit": limit}),
        Event::UpdateFeatures {
            op_tid,
            features,
            enabled,
        } => json!({"op_tid": op_tid, "features": features, "enabled": enabled}),
        Event::MetadataSet { op_tid, key, value } => {
            json!({"op_tid": op_tid, "key": key, "value": value})
        }
        Event::MetadataRemove { op_tid, key } => json!({"op_tid": op_tid, "key": key}),
        other => panic!("no capture has {other:?}"),
    };
    v["event_type"] = e.event.name().into();
    v["timestamp"] = iso_micros(e.timestamp).into();
    v
}

/// Checks one journal's data objects against its header and Ceph's export; returns
/// (records, distinct event types).
fn check_journal(id: &str, cli_prefix: &str, objects: usize) -> (usize, BTreeSet<&'static str>) {
    let cli = |f: &str| format!("2-replaying/site-a/cli/{cli_prefix}{f}");
    let header = omap("2-replaying", "site-a", &format!("journal.{id}"));
    let splay = u64::from(rt::<u8>("splay_width", &header["splay_width"]));
    let active_set: u64 = rt("active_set", &header["active_set"]);
    let info = json_file(&cli("journal-info.json"));
    assert_eq!(info["splay_width"].as_u64(), Some(splay));
    assert_eq!(
        info["order"].as_u64(),
        Some(rt::<u8>("order", &header["order"]).into())
    );
    assert_eq!(info["object_oid_prefix"], format!("journal_data.1.{id}."));

    let (found, mut records) = journal_records(id);
    assert_eq!(found, objects, "data objects of journal {id}");
    for r in &records {
        // §3.6: entry k of a tag lives at splay offset k % W, in a set not after the active one.
        assert_eq!(r.object_number % splay, r.entry.entry_tid % splay);
        assert!(r.object_number / splay <= active_set);
    }
    // §3.7 playback: a tag's entries strictly in entry-tid order, tags never going back.
    records.sort_by_key(|r| (r.entry.tag_tid, r.entry.entry_tid));
    let mut next_tid: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &records {
        let n = next_tid.entry(r.entry.tag_tid).or_default();
        assert_eq!(
            r.entry.entry_tid, *n,
            "tag {} not contiguous",
            r.entry.tag_tid
        );
        *n += 1;
    }
    let export = journal_export(&cli("journal-export.txt"), id);
    let verbose = export_verbose(&cli("journal-export-verbose.txt"));
    assert_eq!(records.len(), export.len(), "record count vs export");
    assert_eq!(
        records.len(),
        verbose.len(),
        "record count vs export --verbose"
    );
    // `rbd journal inspect --verbose` walks the same entries, in the same order.
    let inspect: Vec<u64> = text(&cli("journal-inspect-verbose.txt"))
        .lines()
        .filter_map(|l| l.strip_prefix("Entry: tag_id="))
        .enumerate()
        .map(|(i, l)| {
            let (tag, commit) = l.split_once(", commit_tid=").unwrap();
            assert_eq!(commit.parse::<usize>().unwrap(), i + 1);
            tag.parse().unwrap()
        })
        .collect();
    let tags: Vec<u64> = records.iter().map(|r| r.entry.tag_tid).collect();
    assert_eq!(tags, inspect, "inspect");
    let mut types = BTreeSet::new();
    for (i, (r, (tag, ty, payload))) in records.iter().zip(&export).enumerate() {
        let at = format!("export entry {}", i + 1);
        assert_eq!(r.entry.tag_tid, *tag, "{at}: tag");
        assert_eq!(r.entry.data[..], payload[..], "{at}: payload");
        assert_eq!(u64::from(r.event.event.event_type()), *ty, "{at}: type");
        assert_eq!(ceph_dump(&r.event), verbose[i], "{at}: decoded fields");
        types.insert(r.event.event.name());
    }
    // The image client's commit position names records that exist where it says.
    let client: Client = rt("client_", &header["client_"]);
    for p in &client.commit_position.object_positions {
        assert!(
            records
                .iter()
                .any(|r| (r.object_number, r.entry.tag_tid, r.entry.entry_tid)
                    == (p.object_number, p.tag_tid, p.entry_tid)),
            "commit position {p:?} names no record"
        );
    }
    (records.len(), types)
}

#[test]
fn journal_data_objects_match_rbd_journal_export() {
    let m = manifest();
    let (n, types) = check_journal(mstr(&m, &["image", "id_site_a"]), "", 44);
    assert_eq!(n, 135);
    // Every event type the workload produced (README §"What was done").
    assert_eq!(types.len(), 17, "{types:?}");
    let (n, _) = check_journal(mstr(&m, &["big_image", "id_site_a"]), "big-", 2);
    assert_eq!(n, 4);
    // The replica journal has no data objects and its export is empty.
    let id_b = mstr(&m, &["image", "id_site_b"]);
    assert!(journal_export("2-replaying/site-b/cli/journal-export.txt", id_b).is_empty());
}

// ---- 2. omap values ------------------------------------------------------------------------

/// Decodes one omap value with the decoder its object and key call for, asserting a
/// byte-identical re-encoding; returns the kind of value for the tally.
fn check_omap_value(v: &OmapValue, m: &Value) -> &'static str {
    let (obj, key, b) = (v.object.as_str(), v.key.as_str(), &v.value);
    let what = format!("{}/{}/{obj}/{key}", v.source, v.cluster);
    let what = what.as_str();
    let suffix = |p: &str| key.strip_prefix(p);
    let hex_tid = |s: &str| u64::from_str_radix(s, 16).unwrap();
    if obj == "rbd_mirroring" {
        if key == "mirror_uuid" {
            let uuid = decode_raw_mirror_uuid(b).unwrap();
            assert_eq!(uuid, mstr(m, &["mirror_uuid", &v.cluster]), "{what}");
            return "mirror_uuid";
        } else if key == "mirror_mode" {
            assert_eq!(rt::<MirrorMode>(what, b), MirrorMode::Image);
            return "mirror_mode";
        } else if let Some(uuid) = suffix("mirror_peer_") {
            let p: MirrorPeer = rt(what, b);
            assert_eq!((p.uuid.as_str(), p.pool_id), (uuid, -1), "{what}");
            assert_eq!(p.direction, MirrorPeerDirection::RxTx);
            return "mirror_peer";
        } else if let Some(id) = suffix("image_") {
            let i: MirrorImage = rt(what, b);
            assert_eq!(
                i.global_image_id,
                mstr(m, &["image", "global_id"]),
                "{what}"
            );
            assert_eq!(
                (i.state, i.mode),
                (MirrorImageState::Enabled, MirrorImageMode::Journal)
            );
            assert_eq!(id, image_id(m, &v.cluster));
            return "mirror_image";
        } else if let Some(gid) = suffix("global_") {
            assert_eq!(gid, mstr(m, &["image", "global_id"]));
            assert_eq!(rt::<String>(what, b), image_id(m, &v.cluster));
            return "mirror_global";
        } else if key.starts_with("status_global_") || key.starts_with("remote_status_global_") {
            let s: MirrorImageSiteStatusOnDisk = rt(what, b);
            // cls stores a v1 status: no uuid (it is in the key), `up` computed on read.
            assert!(s.status.mirror_uuid.is_empty() && !s.status.up, "{what}");
            return "mirror_status";
        }
    } else if obj == "rbd_mirror_leader" {
        if key.starts_with("instance_") {
            assert!(b.is_empty(), "{what}");
            return "leader_instance";
        } else if key.starts_with("image_map_") {
            let im: MirrorImageMap = rt(what, b);
            assert_eq!(
                key,
                format!("image_map_{}", mstr(m, &["image", "global_id"]))
            );
            // The daemon instance `rbd mirror image status` names.
            let status = json_file("2-replaying/site-b/cli/mirror-image-status.json");
            assert_eq!(
                im.instance_id, status["daemon_service"]["instance_id"],
                "{what}"
            );
            return "leader_image_map";
        }
    } else if obj == "rbd_directory" {
        if key.starts_with("name_") || key.starts_with("id_") {
            rt::<String>(what, b);
            return "directory";
        }
    } else if obj.starts_with("journal.") {
        match key {
            "order" | "splay_width" => {
                rt::<u8>(what, b);
                return "journal_u8";
            }
            "pool_id" => {
                assert_eq!(rt::<i64>(what, b), -1);
                return "journal_pool_id";
            }
            "minimum_set" | "active_set" | "next_tag_tid" | "next_tag_class" => {
                rt::<u64>(what, b);
                return "journal_u64";
            }
            _ => {}
        }
        if let Some(id) = suffix("client_") {
            let c: Client = rt(what, b);
            assert_eq!(
                (c.id.as_str(), c.state),
                (id, ClientState::Connected),
                "{what}"
            );
            if c.data.is_empty() {
                // `rbd journal export/inspect` register with zero-length data.
                assert!(id == "EXPORT" || id == "INSPECT", "{what}");
            } else {
                let d: ClientData = rt(&format!("{what} ClientData"), &c.data);
                match (&d, id) {
                    (ClientData::Image { .. }, "") | (ClientData::Cli, "golden-capture") => {}
                    (ClientData::MirrorPeer(p), _) => {
                        assert_eq!(id, mstr(m, &["mirror_uuid", "site-b"]), "{what}");
                        assert!(p.image_id.is_empty() || p.image_id == image_id(m, "site-b"));
                    }
                    _ => panic!("{what}: unexpected {d:?}"),
                }
            }
            return "journal_client";
        } else if let Some(tid) = suffix("tag_") {
            let t: Tag = rt(what, b);
            assert_eq!(t.tid, hex_tid(tid), "{what}");
            let td: TagData = rt(&format!("{what} TagData"), &t.data);
            // Site-a owns its epochs; the replica's tags are owned by site-a's pool.
            let owner = if v.cluster == "site-a" {
                ""
            } else {
                mstr(m, &["mirror_uuid", "site-a"])
            };
            assert_eq!(td.mirror_uuid, owner, "{what}");
            return "journal_tag";
        }
    } else if let Some(image) = obj.strip_prefix("rbd_header.") {
        match key {
            "size" | "features" | "snap_seq" | "flags" | "op_features" | "snap_limit" => {
                rt::<u64>(what, b);
                return "header_u64";
            }
            "order" => {
                rt::<u8>(what, b);
                return "header_order";
            }
            "object_prefix" => {
                let p: String = rt(what, b);
                assert_eq!(p, format!("rbd_data.{image}"));
                return "header_object_prefix";
            }
            "create_timestamp" | "access_timestamp" | "modify_timestamp" => {
                rt::<UTime>(what, b);
                return "header_timestamp";
            }
            _ => {}
        }
        if let Some(id) = suffix("snapshot_") {
            let s: SnapshotRecord = rt(what, b);
            assert_eq!(s.id, hex_tid(id), "{what}");
            return "header_snapshot";
        } else if key.starts_with("metadata_") {
            // Raw value bytes, no length prefix (spec §5.2).
            std::str::from_utf8(b).unwrap();
            return "header_metadata";
        }
    }
    panic!("{what}: no decoder for this key");
}

fn image_id<'a>(m: &'a Value, cluster: &str) -> &'a str {
    match cluster {
        "site-a" => mstr(m, &["image", "id_site_a"]),
        _ => mstr(m, &["image", "id_site_b"]),
    }
}

#[test]
fn every_omap_value_round_trips() {
    let m = manifest();
    let values = omap_values();
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut history = 0;
    for v in &values {
        *tally.entry(check_omap_value(v, &m)).or_default() += 1;
        history += usize::from(v.source == "history");
    }
    eprintln!(
        "{} omap values ({history} from history): {tally:?}",
        values.len()
    );
    assert_eq!(
        values.len() - history,
        190,
        "MANIFEST lists 190 omap values"
    );
    assert!(history > 150, "history values: {history}");
}

#[test]
fn rbd_mirror_registration_history() {
    let m = manifest();
    let key = format!("client_{}", mstr(&m, &["mirror_uuid", "site-b"]));
    let metas: Vec<_> = omap_values()
        .into_iter()
        .filter(|v| v.source == "history" && v.key == key)
        .map(|v| match rt::<Client>(&key, &v.value).data {
            d if d.is_empty() => panic!("rbd-mirror registered without data"),
            d => match rt::<ClientData>(&key, &d) {
                ClientData::MirrorPeer(p) => p,
                other => panic!("{other:?}"),
            },
        })
        .collect();
    assert_eq!(metas.len(), 11);
    // README: "" REPLAYING → <replica id> SYNCING → + sync point → snap_seqs {4:4, 7:5},
    // object_number 8191 → sync point gone, sync_object_count 8192, REPLAYING.
    let first = &metas[0];
    assert_eq!(
        (first.image_id.as_str(), first.state),
        ("", MirrorPeerState::Replaying)
    );
    let syncing = metas
        .iter()
        .position(|p| p.state == MirrorPeerState::Syncing)
        .unwrap();
    assert_eq!(metas[syncing].image_id, image_id(&m, "site-b"));
    let with_point = metas
        .iter()
        .position(|p| !p.sync_points.is_empty())
        .unwrap();
    let point = &metas[with_point].sync_points[0];
    let prefix = format!(".rbd-mirror.{}.", mstr(&m, &["mirror_uuid", "site-b"]));
    assert!(point.snap_name.starts_with(&prefix), "{point:?}");
    assert_eq!(point.snap_namespace, SnapshotNamespace::User);
    assert!(
        metas
            .iter()
            .any(|p| p.snap_seqs == BTreeMap::from([(4, 4), (7, 5)])
                && p.sync_points.first().and_then(|s| s.object_number) == Some(8191))
    );
    let last = metas.last().unwrap();
    assert!(syncing < with_point && last.sync_points.is_empty());
    assert_eq!(
        (last.state, last.sync_object_count),
        (MirrorPeerState::Replaying, 8192)
    );
}

// ---- 2b. omap values vs Ceph's CLI ----------------------------------------------------------

/// The bytes of a `bufferlist::hexdump` as `rbd journal status --format json` prints data.
fn parse_hexdump(s: &str) -> Vec<u8> {
    s.lines()
        .filter_map(|l| l.split_once("  "))
        .flat_map(|(_, rest)| {
            let hex = rest.split("  |").next().unwrap();
            hex.split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn position_json(p: &ObjectPosition) -> Value {
    json!({"object_number": p.object_number, "tag_tid": p.tag_tid, "entry_tid": p.entry_tid})
}

#[test]
fn journal_headers_match_rbd_journal_status() {
    let m = manifest();
    let big = mstr(&m, &["big_image", "id_site_a"]);
    let cases = [
        (
            "1-primary",
            "site-a",
            image_id(&m, "site-a"),
            "journal-status.json",
        ),
        (
            "2-replaying",
            "site-a",
            image_id(&m, "site-a"),
            "journal-status.json",
        ),
        (
            "2-replaying",
            "site-b",
            image_id(&m, "site-b"),
            "journal-status.json",
        ),
        ("2-replaying", "site-a", big, "big-journal-status.json"),
    ];
    for (phase, site, id, file) in cases {
        let status = json_file(&format!("{phase}/{site}/cli/{file}"));
        let header = omap(phase, site, &format!("journal.{id}"));
        for k in ["minimum_set", "active_set"] {
            assert_eq!(
                status[k].as_u64(),
                Some(rt::<u64>(k, &header[k])),
                "{phase} {site} {k}"
            );
        }
        let ours: Vec<Value> = with_prefix(&header, "client_")
            .map(|(_, b)| {
                let c: Client = rt("client", b);
                let positions: Vec<_> = c
                    .commit_position
                    .object_positions
                    .iter()
                    .map(position_json)
                    .collect();
                assert_eq!(c.state, ClientState::Connected);
                json!({"id": c.id, "data": c.data.to_vec(),
                       "commit_position": {"object_positions": positions}, "state": "connected"})
            })
            .collect();
        let mut theirs = status["registered_clients"].as_array().unwrap().clone();
        for c in &mut theirs {
            c["data"] = parse_hexdump(c["data"].as_str().unwrap()).into();
        }
        assert_eq!(ours, theirs, "{phase} {site} {file}");
    }
    // rbd-mirror caught up: its position equals librbd's and the one its status reports.
    let header = omap(
        "2-replaying",
        "site-a",
        &format!("journal.{}", image_id(&m, "site-a")),
    );
    let peer: Client = rt(
        "peer",
        &header[&format!("client_{}", mstr(&m, &["mirror_uuid", "site-b"]))],
    );
    let image: Client = rt("image", &header["client_"]);
    assert_eq!(peer.commit_position, image.commit_position);
    let status = json_file("2-replaying/site-b/cli/mirror-image-status.json");
    let desc = status["description"].as_str().unwrap();
    let desc: Value = serde_json::from_str(desc.strip_prefix("replaying, ").unwrap()).unwrap();
    let newest = position_json(&peer.commit_position.object_positions[0]);
    assert_eq!(desc["primary_position"], newest);
    assert_eq!(desc["non_primary_position"], newest);
}

#[test]
fn mirroring_values_match_rbd_mirror_cli() {
    let m = manifest();
    let gid = mstr(&m, &["image", "global_id"]);
    let uuid_b = mstr(&m, &["mirror_uuid", "site-b"]);
    // `rbd mirror pool info`: mode and peers.
    for (phase, site, peer_uuid) in [
        ("2-replaying", "site-a", uuid_b),
        ("2-replaying", "site-b", ""), // no daemon on site-a pings site-b
        ("1-primary", "site-a", ""),
        ("1-primary", "site-b", ""),
    ] {
        let info = json_file(&format!("{phase}/{site}/cli/mirror-pool-info.json"));
        let om = omap(phase, site, "rbd_mirroring");
        assert_eq!(info["mode"], "image");
        assert_eq!(
            rt::<MirrorMode>("mode", &om["mirror_mode"]),
            MirrorMode::Image
        );
        let peers: Vec<Value> = with_prefix(&om, "mirror_peer_")
            .map(|(_, b)| {
                let p: MirrorPeer = rt("peer", b);
                assert_eq!(p.mirror_uuid, peer_uuid, "{phase} {site}");
                json!({"uuid": p.uuid, "direction": "rx-tx", "site_name": p.site_name,
                       "mirror_uuid": p.mirror_uuid, "client_name": p.client_name})
            })
            .collect();
        assert_eq!(Value::from(peers), info["peers"], "{phase} {site}");
    }
    // `rbd mirror image status`: site-b's local status, and site-a's copy of it.
    let sb = json_file("2-replaying/site-b/cli/mirror-image-status.json");
    let sa = json_file("2-replaying/site-a/cli/mirror-image-status.json");
    let ob = omap("2-replaying", "site-b", "rbd_mirroring");
    let oa = omap("2-replaying", "site-a", "rbd_mirroring");
    let local: MirrorImageSiteStatusOnDisk = rt("local", &ob[&format!("status_global_{gid}")]);
    let remote: MirrorImageSiteStatusOnDisk = rt(
        "remote",
        &oa[&format!("remote_status_global_{gid}_{uuid_b}")],
    );
    let peer = &sa["peer_sites"][0];
    assert_eq!(peer["mirror_uuids"], uuid_b);
    for (s, cli) in [(&local.status, &sb), (&remote.status, peer)] {
        assert_eq!(s.state, MirrorImageStatusState::Replaying);
        assert_eq!(cli["state"], "up+replaying");
        assert_eq!(cli["description"], s.description.as_str());
        assert_eq!(cli["last_update"], ymd_hms(s.last_update).as_str());
    }
    assert_eq!(sb["global_id"], gid);
    // Phase 1: no daemon ran, so no status at all.
    let st = json_file("1-primary/site-a/cli/mirror-image-status.json");
    assert_eq!(st["description"], "status not found");
    let o1 = omap("1-primary", "site-a", "rbd_mirroring");
    assert!(o1.keys().all(|k| !k.contains("status_global_")));
}

const FEATURE_NAMES: [&str; 12] = [
    "layering",
    "striping",
    "exclusive-lock",
    "object-map",
    "fast-diff",
    "deep-flatten",
    "journaling",
    "data-pool",
    "operations",
    "migrating",
    "non-primary",
    "dirty-cache",
];

#[test]
fn image_headers_match_rbd_info_snap_ls_and_meta() {
    let m = manifest();
    let gid = mstr(&m, &["image", "global_id"]);
    let big = mstr(&m, &["big_image", "id_site_a"]);
    let cases = [
        ("1-primary", "site-a", image_id(&m, "site-a"), "info.json"),
        ("2-replaying", "site-a", image_id(&m, "site-a"), "info.json"),
        ("2-replaying", "site-b", image_id(&m, "site-b"), "info.json"),
        ("2-replaying", "site-a", big, "big-info.json"),
    ];
    for (phase, site, id, file) in cases {
        let at = format!("{phase} {site} {file}");
        let info = json_file(&format!("{phase}/{site}/cli/{file}"));
        let h = omap(phase, site, &format!("rbd_header.{id}"));
        assert_eq!(info["id"], id);
        // `rbd_id.<name>` (data) and `rbd_directory` (primary only) lead from name to id.
        let name = info["name"].as_str().unwrap();
        if phase == "2-replaying" {
            let rbd_id = hex_file(&format!("{phase}/{site}/objects/rbd_id.{name}.hex"));
            assert_eq!(rt::<String>("rbd_id", &rbd_id), id, "{at}");
            let dir = omap(phase, site, "rbd_directory");
            assert_eq!(rt::<String>("name_", &dir[&format!("name_{name}")]), id);
            assert_eq!(rt::<String>("id_", &dir[&format!("id_{id}")]), name);
        }
        assert_eq!(
            info["size"].as_u64(),
            Some(rt::<u64>("size", &h["size"])),
            "{at}"
        );
        assert_eq!(
            info["order"].as_u64(),
            Some(rt::<u8>("order", &h["order"]).into()),
            "{at}"
        );
        let prefix: String = rt("object_prefix", &h["object_prefix"]);
        assert_eq!(info["block_name_prefix"], prefix, "{at}");
        let features: u64 = rt("features", &h["features"]);
        let names: Vec<&str> = (0..12)
            .filter(|b| features & (1 << b) != 0)
            .map(|b| FEATURE_NAMES[b])
            .collect();
        assert_eq!(info["features"], json!(names), "{at}");
        assert_eq!(h.get("flags").map_or(0, |b| rt::<u64>("flags", b)), 0);
        assert_eq!(info["flags"], json!([]));
        for k in ["create_timestamp", "access_timestamp", "modify_timestamp"] {
            assert_eq!(info[k], ctime(rt::<UTime>(k, &h[k])), "{at} {k}");
        }
        let snaps: Vec<SnapshotRecord> = with_prefix(&h, "snapshot_")
            .map(|(_, b)| rt("snapshot", b))
            .collect();
        assert_eq!(
            info["snapshot_count"].as_u64(),
            Some(snaps.len() as u64),
            "{at}"
        );
        let mirroring = &info["mirroring"];
        if id == big {
            assert_eq!(mirroring["state"], "disabled");
            continue;
        }
        assert_eq!(
            (&mirroring["mode"], &mirroring["state"]),
            (&json!("journal"), &json!("enabled"))
        );
        let mi: MirrorImage = rt(
            "image",
            &omap(phase, site, "rbd_mirroring")[&format!("image_{id}")],
        );
        assert_eq!(mirroring["global_id"], mi.global_image_id.as_str());
        assert_eq!(mi.global_image_id, gid);
        // Primary ⇔ the newest tag is owned locally ("").
        let j = omap(phase, site, &format!("journal.{id}"));
        let newest = with_prefix(&j, "tag_")
            .last()
            .map(|(_, b)| rt::<Tag>("tag", b))
            .unwrap();
        let owner = rt::<TagData>("tag data", &newest.data).mirror_uuid;
        assert_eq!(mirroring["primary"], json!(owner.is_empty()), "{at}");
        if phase == "1-primary" {
            continue;
        }
        // `rbd snap ls --all`.
        let ls = json_file(&format!("{phase}/{site}/cli/snap-ls-all.json"));
        let ours: Vec<Value> = snaps
            .iter()
            .map(|s| {
                assert_eq!(s.snapshot_namespace, SnapshotNamespace::User);
                let protected = s.protection_status == ProtectionStatus::Protected;
                json!({"id": s.id, "name": s.name, "size": s.image_size,
                       "protected": protected.to_string(), "timestamp": ctime(s.timestamp),
                       "namespace": {"type": "user"}})
            })
            .collect();
        assert_eq!(Value::from(ours), ls, "{at} snap ls");
        // `rbd image-meta list`.
        let meta = json_file(&format!("{phase}/{site}/cli/image-meta-list.json"));
        let ours: serde_json::Map<String, Value> = with_prefix(&h, "metadata_")
            .map(|(k, b)| (k.to_string(), std::str::from_utf8(b).unwrap().into()))
            .collect();
        assert_eq!(Value::from(ours), meta, "{at} image-meta");
    }
}

// ---- 3. watch/notify payloads ----------------------------------------------------------

#[test]
fn notify_payloads_decode_and_round_trip() {
    let m = manifest();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for f in [
        "site-a.gold",
        "site-a.rbd_mirroring",
        "site-b.gold",
        "site-b.rbd_mirroring",
    ] {
        let site = &f[..6];
        for line in text(&format!("notify/{f}.jsonl")).lines() {
            let n: Value = serde_json::from_str(line).unwrap();
            let obj = n["object"].as_str().unwrap();
            let payload = unhex(n["payload_hex"].as_str().unwrap());
            assert_eq!(payload.len() as u64, n["bytes"].as_u64().unwrap());
            let kind = if obj == "rbd_mirroring" {
                match rt::<MirroringNotify>(obj, &payload) {
                    MirroringNotify::ImageUpdated {
                        state,
                        image_id: id,
                        global_image_id,
                    } => {
                        assert_eq!(state, MirrorImageState::Enabled);
                        assert_eq!(id, image_id(&m, site));
                        assert_eq!(global_image_id, mstr(&m, &["image", "global_id"]));
                        "mirroring ImageUpdated".to_string()
                    }
                    other => panic!("{other:?}"),
                }
            } else if obj.starts_with("journal.") {
                assert!(payload.is_empty(), "journal header notify with payload");
                "journal (empty)".to_string()
            } else {
                assert_eq!(obj, format!("rbd_header.{}", image_id(&m, site)));
                assert!(!payload.is_empty());
                let h: HeaderNotify = rt(obj, &payload);
                assert!(!matches!(h, HeaderNotify::Unknown { .. }), "{h:?}");
                format!("header op {}", h.notify_op())
            };
            *tally.entry(kind).or_default() += 1;
        }
    }
    eprintln!("notifies: {tally:?}");
    assert_eq!(tally.values().sum::<usize>(), 154 + 1 + 45 + 1);
}
