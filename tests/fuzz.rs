//! A structure-aware mutation fuzzer for every decoder of `format` (and the journal player
//! that frames entries out of data objects), on the stable toolchain. Seeds are bytes real
//! Ceph wrote (`tests/data/golden-live`) and encodings built from them; each execution
//! stacks a few mutations (bit flips, interesting bytes, truncation, extension, splices
//! with other seeds, length-like `u32`s set to huge or zero values, random bytes) and
//! checks three things:
//! - no panic (the input is kept under `target/fuzz-failures/` and printed as hex);
//! - bounded allocation: no single allocation during a decode exceeds a small multiple of
//!   the input's size (a length prefix beyond the input must be refused before reserving);
//! - a value that decodes re-encodes to bytes that decode to the same value.
//!
//! Each target runs `RBD_RELAY_FUZZ_SECS` seconds (default 1) with a seed from
//! `RBD_RELAY_FUZZ_SEED` (default: the clock; printed, so a failure reproduces);
//! `scripts/fuzz [SECONDS]` runs it longer, in release mode. Inputs that once failed live
//! in `tests/data/fuzz-regressions/<target>/*.hex` and run first, every time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rbd_relay::format::client_data::{CheckHold, ClientData, TagData};
use rbd_relay::format::entity::EntityInst;
use rbd_relay::format::entry::{EntryScanner, scan_entries};
use rbd_relay::format::event::EventEntry;
use rbd_relay::format::image::{
    GetFeaturesOutput, GetSizeOutput, SnapContext, SnapshotInfo, SnapshotRecord,
};
use rbd_relay::format::journal::{Client, JournalGeometry, ObjectSetPosition, Tag, TagCreateInput};
use rbd_relay::format::lock::{GetInfoReply, ListLocksReply, LockOp};
use rbd_relay::format::mirror::{
    MirrorImage, MirrorImageMap, MirrorImageSetInput, MirrorImageSiteStatusOnDisk,
    MirrorImageStatus, MirrorImageStatusListOutput, MirrorImageStatusSetInput, MirrorMode,
    MirrorPeer,
};
use rbd_relay::format::notify::{HeaderNotify, MirroringNotify};
use rbd_relay::format::object_map::ObjectMap;
use rbd_relay::format::{Decode, Encode};
use rbd_relay::journal::player::{Next, Player};

// ---- bounded allocation ------------------------------------------------------------------

/// The system allocator, noting the largest single request made on this thread while a
/// decode runs (`Cell`s with const initialisers: no allocation, no destructor).
struct Watching;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: defers every call to `System`; only records sizes in thread-local cells.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    let _ = WATCHING.try_with(|w| {
        if w.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

#[global_allocator]
static ALLOC: Watching = Watching;

/// The most one allocation may take while decoding `len` input bytes: decoded values may be
/// larger than their encoding (a struct per few bytes), never larger than a length claims.
fn allocation_bound(len: usize) -> usize {
    256 * len + (64 << 10)
}

// ---- targets -----------------------------------------------------------------------------

/// One decoder under test: a function that decodes (and checks) an input.
struct Target {
    name: &'static str,
    run: fn(Bytes),
}

/// Decodes as `T`; what decodes must survive a re-encode unchanged.
fn round_trip<T: Decode + Encode + PartialEq + std::fmt::Debug>(b: Bytes) {
    if let Ok(v) = T::from_bytes(b) {
        let again = T::from_bytes(v.to_bytes());
        assert_eq!(again.as_ref(), Ok(&v), "re-encoding changed the value");
    }
}

/// A journal data object as the player reads it: framing (at an object offset, with the
/// journal's length limit), every entry's event, and play in order, with the object split
/// into two reads at an arbitrary point, as object 0 of a journal whose header claims 10
/// sets and whose other objects do not exist: play must settle (an entry, caught up or an
/// error) within 64 reads (a missing entry may make it walk those sets: librbd can place
/// an entry sets after later ones, so only the header bounds the search).
fn journal_object(b: Bytes) {
    let _ = scan_entries(b.clone());
    for item in EntryScanner::in_object(b.clone(), 4096, (1 << 14) - 33) {
        match item {
            Ok(s) => drop(EventEntry::from_bytes(s.entry.data)),
            Err(_) => break,
        }
    }
    let g = JournalGeometry::new(14, 4).expect("geometry");
    let mut player = Player::new(g, 0, &ObjectSetPosition::default());
    let cut = b.len() / 3;
    let mut reads = [(0, b.slice(..cut)), (cut as u64, b.slice(cut..))].into_iter();
    let mut fetches = 0;
    loop {
        match player.next(10) {
            Ok(Next::Fetch {
                object_number,
                from,
            }) => {
                fetches += 1;
                assert!(fetches <= 64, "play did not settle: {fetches} reads");
                let (bytes, to_end) = match reads.next() {
                    Some((at, bytes)) if object_number == 0 && at == from => (bytes, false),
                    _ => (Bytes::new(), true),
                };
                if player.feed(object_number, from, bytes, to_end).is_err() {
                    return;
                }
            }
            Ok(Next::Entry(e, _)) => drop(EventEntry::from_bytes(e.data)),
            Ok(Next::CaughtUp) | Err(_) => return,
        }
    }
}

fn mirroring_notify(b: Bytes) {
    round_trip::<MirroringNotify>(b.clone());
    let _ = rbd_relay::mirror::pool_watcher::decode(b);
}

macro_rules! targets {
    ($($name:literal => $run:expr),* $(,)?) => {
        &[$(Target { name: $name, run: $run }),*]
    };
}

const TARGETS: &[Target] = targets![
    "journal_object" => journal_object,
    "event_entry" => round_trip::<EventEntry>,
    "journal_client" => round_trip::<Client>,
    "journal_tag" => round_trip::<Tag>,
    "client_data" => round_trip::<ClientData>,
    "check_hold" => round_trip::<CheckHold>,
    "tag_data" => round_trip::<TagData>,
    "object_set_position" => round_trip::<ObjectSetPosition>,
    "mirror_peer" => round_trip::<MirrorPeer>,
    "mirror_image" => round_trip::<MirrorImage>,
    "mirror_image_status_on_disk" => round_trip::<MirrorImageSiteStatusOnDisk>,
    "mirror_image_map" => round_trip::<MirrorImageMap>,
    "mirror_mode" => round_trip::<MirrorMode>,
    "snapshot_record" => round_trip::<SnapshotRecord>,
    "mirroring_notify" => mirroring_notify,
    "header_notify" => round_trip::<HeaderNotify>,
    // cls replies
    "reply_client_list" => round_trip::<Vec<Client>>,
    "reply_tag_list" => round_trip::<Vec<Tag>>,
    "reply_peer_list" => round_trip::<Vec<MirrorPeer>>,
    "reply_image_list" => round_trip::<BTreeMap<String, String>>,
    "reply_status_list" => round_trip::<MirrorImageStatusListOutput>,
    "reply_image_status" => round_trip::<MirrorImageStatus>,
    "reply_snapshot_list" => round_trip::<Vec<SnapshotInfo>>,
    "reply_snap_context" => round_trip::<SnapContext>,
    "reply_get_size" => round_trip::<GetSizeOutput>,
    "reply_get_features" => round_trip::<GetFeaturesOutput>,
    "reply_lock_info" => round_trip::<GetInfoReply>,
    "reply_list_locks" => round_trip::<ListLocksReply>,
    "reply_object_map" => round_trip::<ObjectMap>,
    "reply_entity_inst" => round_trip::<EntityInst>,
    "reply_metadata_list" => round_trip::<BTreeMap<String, Bytes>>,
    // cls inputs, which the embedded backend's methods decode
    "input_tag_create" => round_trip::<TagCreateInput>,
    "input_lock" => round_trip::<LockOp>,
    "input_mirror_image_set" => round_trip::<MirrorImageSetInput>,
    "input_status_set" => round_trip::<MirrorImageStatusSetInput>,
];

// ---- seeds -------------------------------------------------------------------------------

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-live");
const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz-regressions");

fn unhex(s: &str) -> Option<Bytes> {
    let s = s.trim();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Which target a captured file feeds, from where Ceph keeps it.
fn target_of(path: &str) -> Option<&'static str> {
    let key = path.rsplit('/').next()?;
    let object = path.rsplit('/').nth(1)?;
    Some(match () {
        _ if key.starts_with("journal_data.") => "journal_object",
        _ if object.starts_with("journal.") && key.starts_with("client_") => "journal_client",
        _ if object.starts_with("journal.") && key.starts_with("tag_") => "journal_tag",
        _ if key.starts_with("mirror_peer_") => "mirror_peer",
        _ if object == "rbd_mirroring" && key.starts_with("image_") => "mirror_image",
        _ if key.starts_with("status_global_") || key.starts_with("remote_status_global_") => {
            "mirror_image_status_on_disk"
        }
        _ if key.starts_with("image_map_") => "mirror_image_map",
        _ if key.starts_with("mirror_mode") => "mirror_mode",
        _ if key.starts_with("snapshot_") => "snapshot_record",
        _ => return None,
    })
}

/// Seeds by target: captured bytes, the pieces inside them, and cls replies assembled
/// from the decoded values.
fn seeds() -> BTreeMap<&'static str, Vec<Bytes>> {
    let mut all: BTreeMap<&'static str, Vec<Bytes>> = BTreeMap::new();
    let mut paths = Vec::new();
    files(Path::new(GOLDEN), &mut paths);
    for p in &paths {
        let name = p.to_string_lossy();
        if let Some(notify) = name
            .strip_suffix(".jsonl")
            .filter(|n| n.contains("/notify/"))
        {
            let target = if notify.ends_with("rbd_mirroring") {
                "mirroring_notify"
            } else {
                "header_notify"
            };
            for line in std::fs::read_to_string(p).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let object = v["object"].as_str().unwrap_or_default();
                if object == "rbd_mirroring" || object.starts_with("rbd_header.") {
                    let payload = unhex(v["payload_hex"].as_str().unwrap_or_default());
                    all.entry(target).or_default().extend(payload);
                }
            }
            continue;
        }
        let stem = name.trim_end_matches(".hex");
        // history/ files are `<key>.<n>.hex`.
        let key = stem.rsplit_once('.').filter(|_| stem.contains("/history/"));
        let stem = key.map_or(stem, |(k, _)| k);
        if let Some(target) = target_of(stem).filter(|_| name.ends_with(".hex")) {
            let bytes = unhex(&std::fs::read_to_string(p).unwrap()).unwrap();
            all.entry(target).or_default().push(bytes);
        }
    }
    let decoded = |t: &str| all.get(t).cloned().unwrap_or_default();
    let entries: Vec<Bytes> = (decoded("journal_object").iter())
        .flat_map(|o| {
            scan_entries(o.clone())
                .map(|s| s.entries)
                .unwrap_or_default()
        })
        .map(|s| s.entry.data)
        .collect();
    let clients: Vec<Client> = (decoded("journal_client").into_iter())
        .filter_map(|b| Client::from_bytes(b).ok())
        .collect();
    let tags: Vec<Tag> = (decoded("journal_tag").into_iter())
        .filter_map(|b| Tag::from_bytes(b).ok())
        .collect();
    let peers: Vec<MirrorPeer> = (decoded("mirror_peer").into_iter())
        .filter_map(|b| MirrorPeer::from_bytes(b).ok())
        .collect();
    let derived: [(&str, Vec<Bytes>); 7] = [
        ("event_entry", entries),
        (
            "check_hold",
            vec![
                CheckHold {
                    image_size: 64 << 20,
                }
                .to_bytes(),
            ],
        ),
        (
            "client_data",
            clients.iter().map(|c| c.data.clone()).collect(),
        ),
        ("tag_data", tags.iter().map(|t| t.data.clone()).collect()),
        (
            "object_set_position",
            clients
                .iter()
                .map(|c| c.commit_position.to_bytes())
                .collect(),
        ),
        ("reply_client_list", vec![clients.to_bytes()]),
        ("reply_tag_list", vec![tags.to_bytes()]),
    ];
    for (t, s) in derived {
        all.entry(t).or_default().extend(s);
    }
    all.entry("reply_peer_list")
        .or_default()
        .push(peers.to_bytes());
    all
}

// ---- mutation ----------------------------------------------------------------------------

/// Values that break length and count checks.
const HUGE: [u32; 6] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_fff0, 0xffff_ffff];

/// Applies one to four mutations to `input`; `pool` supplies splice partners.
fn mutate(rng: &mut StdRng, input: &[u8], pool: &[Bytes]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        match rng.random_range(0..9) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.random_range(0..5)];
            }
            2 => b.truncate(rng.random_range(0..=len)),
            3 => b.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
            4 if !pool.is_empty() => {
                let other = &pool[rng.random_range(0..pool.len())];
                let (keep, from) = (rng.random_range(0..=len), rng.random_range(0..=other.len()));
                b.truncate(keep);
                b.extend_from_slice(&other[from..]);
            }
            // Structure-aware: a u32 that reads as a plausible length or count of what
            // follows it becomes a huge or zero one.
            5 if len >= 4 => {
                let lengths: Vec<usize> = (0..len - 3)
                    .filter(|&i| {
                        let v = u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize;
                        v > 0 && v <= len - i - 4
                    })
                    .collect();
                let at = match lengths.len() {
                    0 => rng.random_range(0..len - 3),
                    n => lengths[rng.random_range(0..n)],
                };
                b[at..at + 4].copy_from_slice(&HUGE[rng.random_range(0..HUGE.len())].to_le_bytes());
            }
            6 if len > 0 => {
                let (from, to) = (rng.random_range(0..len), rng.random_range(0..len));
                let chunk = b[from.min(to)..from.max(to)].to_vec();
                let at = rng.random_range(0..=len);
                b.splice(at..at, chunk);
            }
            7 if len > 0 => {
                let at = rng.random_range(0..len);
                b.remove(at);
            }
            8 => {
                b = (0..rng.random_range(0..128))
                    .map(|_| rng.random::<u8>())
                    .collect()
            }
            _ => {}
        }
    }
    b
}

// ---- the loop ----------------------------------------------------------------------------

/// Runs one input; `Err` with why when it panicked or allocated beyond the bound.
fn exec(target: &Target, input: Bytes) -> Result<(), String> {
    let len = input.len();
    LARGEST.with(|l| l.set(0));
    WATCHING.with(|w| w.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    WATCHING.with(|w| w.set(false));
    let largest = LARGEST.with(Cell::get);
    if let Err(panic) = outcome {
        let msg = (panic.downcast_ref::<String>().cloned())
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return Err(format!("panicked: {msg}"));
    }
    if largest > allocation_bound(len) {
        return Err(format!(
            "allocated {largest} bytes at once for a {len}-byte input"
        ));
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Keeps a failing input for a regression file and fails the test with it.
fn failed(target: &Target, input: &[u8], why: &str) -> ! {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{}-{:016x}.hex", target.name, fxhash(input)));
    let _ = std::fs::write(&file, hex(input));
    panic!(
        "{}: {why}\ninput ({} bytes, kept in {}): {}",
        target.name,
        input.len(),
        file.display(),
        hex(input)
    );
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

fn budget() -> Duration {
    let secs = std::env::var("RBD_RELAY_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    Duration::from_secs_f64(secs.unwrap_or(1.0))
}

#[test]
fn regression_inputs_stay_fixed() {
    let mut ran = 0;
    for target in TARGETS {
        let mut paths = Vec::new();
        files(&Path::new(REGRESSIONS).join(target.name), &mut paths);
        for p in paths {
            let input = unhex(&std::fs::read_to_string(&p).unwrap()).unwrap();
            if let Err(why) = exec(target, input.clone()) {
                failed(target, &input, &format!("{}: {why}", p.display()));
            }
            ran += 1;
        }
    }
    assert!(ran > 0, "no regression inputs under {REGRESSIONS}");
}

#[test]
fn every_decoder_survives_mutated_real_bytes() {
    let seeds = seeds();
    let everything: Vec<Bytes> = seeds.values().flatten().cloned().collect();
    for (name, s) in &seeds {
        assert!(!s.is_empty(), "no seeds for {name}");
    }
    let seed = std::env::var("RBD_RELAY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    println!("RBD_RELAY_FUZZ_SEED={seed}, {:?} per target", budget());
    let mut rng = StdRng::seed_from_u64(seed);
    for target in TARGETS {
        // Targets without captured bytes of their own start from everything captured.
        let own = seeds.get(target.name).filter(|s| !s.is_empty());
        let start = own.unwrap_or(&everything);
        for s in start {
            if let Err(why) = exec(target, s.clone()) {
                failed(target, s, &why);
            }
        }
        let (began, mut execs) = (Instant::now(), 0u64);
        while began.elapsed() < budget() {
            let base = &start[rng.random_range(0..start.len())];
            let input = mutate(&mut rng, base, &everything);
            if let Err(why) = exec(target, Bytes::from(input.clone())) {
                failed(target, &input, &why);
            }
            execs += 1;
        }
        let rate = execs as f64 / began.elapsed().as_secs_f64();
        println!(
            "fuzz {:<30} {} seeds, {execs} execs, {rate:.0}/s",
            target.name,
            start.len()
        );
    }
}
