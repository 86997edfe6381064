//! Load-aware placement on top of rendezvous hashing. Hashing spreads image *counts*; one
//! busy database image can still outweigh ten idle ones. So every instance reports how many
//! bytes per second each of its images replays, and the leader, once per balance interval,
//! moves at most one image from the busiest instance to the idlest when that narrows the
//! gap enough to matter. A move is an override `image → instance` stored in RADOS next to
//! the membership, so every instance reads the same placement:
//!
//! ```text
//!  rbd_relay_balance omap:  load_<instance id> = {"at": unix s, "images": {global id: bytes/s}}
//!                           move_<global id>   = {"to": instance id, "at": unix s}
//!  owner(image) = its move's target if that instance is live, else rendezvous(live)
//! ```
//! Failover needs no leader: a move to a dead instance no longer counts, so the image falls
//! back to its rendezvous owner at once. The leader only tidies such stale moves later. The
//! throttle (one move per interval, a minimum gap) keeps images from bouncing while the
//! load reports, one interval old, catch up with the last move.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::assignment;
use crate::rados::{IoCtx, RadosError, WriteOp};

/// Next to `rbd_relay_instances`, in each mirrored pool of the local site.
pub const BALANCE_OBJECT: &str = "rbd_relay_balance";

const LOAD: &str = "load_";
const MOVE: &str = "move_";

/// Replay bytes per second of each image, by global id.
pub type Loads = BTreeMap<String, u64>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Report {
    at: u64,
    images: Loads,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Move {
    to: u64,
    at: u64,
}

/// One change the leader makes to the placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Serve `global_id` on `to` instead of where it runs now.
    Move { global_id: String, to: u64 },
    /// Drop an override: its target died, or the image went back to its hashed owner.
    Forget { global_id: String },
}

/// The owner of `global_id`: its move's live target, else its rendezvous owner.
pub fn owner(global_id: &str, live: &[u64], moves: &BTreeMap<String, u64>) -> Option<u64> {
    match moves.get(global_id) {
        Some(to) if live.contains(to) => Some(*to),
        _ => assignment::owner(global_id, live),
    }
}

/// What the leader changes, given each image's load and the current placement: stale moves
/// go, then at most one image moves from the busiest live instance to the idlest. Moving
/// load `l` turns their gap `g` into `|g - 2l|`; the image that narrows it most is chosen,
/// and only if it narrows it by at least `min_gap` bytes/s and a fifth of the busiest load:
/// two equal images on one side and one on the other stay put instead of swapping forever.
pub fn plan(
    live: &[u64],
    moves: &BTreeMap<String, u64>,
    loads: &Loads,
    min_gap: u64,
) -> Vec<Change> {
    let mut changes: Vec<Change> = moves
        .iter()
        .filter(|(_, to)| !live.contains(to))
        .map(|(g, _)| Change::Forget {
            global_id: g.clone(),
        })
        .collect();
    let mut per: BTreeMap<u64, u64> = live.iter().map(|&i| (i, 0)).collect();
    for (g, load) in loads {
        if let Some(o) = owner(g, live, moves) {
            *per.entry(o).or_default() += load;
        }
    }
    let (Some((&hi, &hi_load)), Some((&lo, &lo_load))) = (
        per.iter()
            .max_by_key(|(i, l)| (**l, std::cmp::Reverse(**i))),
        per.iter().min_by_key(|(i, l)| (**l, **i)),
    ) else {
        return changes;
    };
    let gap = hi_load - lo_load;
    let narrows = |l: u64| gap.saturating_sub(gap.abs_diff(2 * l));
    let best = loads
        .iter()
        .filter(|(g, _)| hi != lo && owner(g, live, moves) == Some(hi))
        .max_by_key(|(g, l)| (narrows(**l), std::cmp::Reverse((*g).clone())))
        .filter(|(_, l)| narrows(**l) >= min_gap.max(hi_load / 5).max(1));
    if let Some((g, _)) = best {
        let global_id = g.clone();
        changes.push(if assignment::owner(g, live) == Some(lo) {
            Change::Forget { global_id }
        } else {
            Change::Move { global_id, to: lo }
        });
    }
    changes
}

/// Stores this instance's load report.
pub async fn report<I: IoCtx>(io: &I, me: u64, images: Loads) -> Result<(), RadosError> {
    let value = serde_json::to_vec(&Report { at: now(), images }).unwrap_or_default();
    io.operate_write(BALANCE_OBJECT, WriteOp::new().create(false))
        .await?;
    let kv = BTreeMap::from([(format!("{LOAD}{me}"), Bytes::from(value))]);
    io.omap_set(BALANCE_OBJECT, kv).await
}

/// The current moves: global id → target instance. None stored is an empty map.
pub async fn moves<I: IoCtx>(io: &I) -> Result<BTreeMap<String, u64>, RadosError> {
    Ok(read::<I, Move>(io, MOVE)
        .await?
        .into_iter()
        .map(|(g, m)| (g, m.to))
        .collect())
}

/// Removes this instance's load report (a clean stop).
pub async fn withdraw<I: IoCtx>(io: &I, me: u64) -> Result<(), RadosError> {
    match io
        .omap_rm_keys(BALANCE_OBJECT, &[&format!("{LOAD}{me}")])
        .await
    {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// The balance object as the leader reads it, once per interval.
pub struct Snapshot {
    /// Every live instance's last report merged (an image reported twice, by its old and
    /// new owner around a move, counts at its higher rate).
    pub loads: Loads,
    moves: BTreeMap<String, Move>,
    /// Keys of the reports of instances no longer live.
    dead_reports: Vec<String>,
}

impl Snapshot {
    pub async fn read<I: IoCtx>(io: &I, live: &[u64]) -> Result<Snapshot, RadosError> {
        let mut loads = Loads::new();
        let mut dead_reports = Vec::new();
        for (id, report) in read::<I, Report>(io, LOAD).await? {
            if !id.parse().is_ok_and(|id| live.contains(&id)) {
                dead_reports.push(format!("{LOAD}{id}"));
                continue;
            }
            for (g, l) in report.images {
                let e = loads.entry(g).or_default();
                *e = (*e).max(l);
            }
        }
        Ok(Snapshot {
            loads,
            moves: read(io, MOVE).await?,
            dead_reports,
        })
    }

    /// The moves: global id → target instance.
    pub fn moves(&self) -> BTreeMap<String, u64> {
        self.moves.iter().map(|(g, m)| (g.clone(), m.to)).collect()
    }

    /// Moves of images no live instance reports any more (deleted, or no longer mirrored),
    /// once older than `settle` seconds: until then the target may not have reported the
    /// image yet.
    pub fn gone(&self, settle: u64) -> Vec<Change> {
        let now = now();
        self.moves
            .iter()
            .filter(|(g, m)| !self.loads.contains_key(*g) && m.at + settle < now)
            .map(|(g, _)| Change::Forget {
                global_id: g.clone(),
            })
            .collect()
    }
}

/// Applies the leader's changes and drops the reports of instances no longer live.
pub async fn apply<I: IoCtx>(
    io: &I,
    changes: &[Change],
    seen: &Snapshot,
) -> Result<(), RadosError> {
    let mut set = BTreeMap::new();
    let mut rm = seen.dead_reports.clone();
    for change in changes {
        match change {
            Change::Move { global_id, to } => {
                let m = Move { to: *to, at: now() };
                let value = serde_json::to_vec(&m).unwrap_or_default();
                set.insert(format!("{MOVE}{global_id}"), Bytes::from(value));
            }
            Change::Forget { global_id } => rm.push(format!("{MOVE}{global_id}")),
        }
    }
    if !rm.is_empty() {
        let keys: Vec<&str> = rm.iter().map(String::as_str).collect();
        io.omap_rm_keys(BALANCE_OBJECT, &keys).await?;
    }
    if !set.is_empty() {
        io.omap_set(BALANCE_OBJECT, set).await?;
    }
    Ok(())
}

/// Entries under `prefix`, keyed by the rest of their key; undecodable ones are skipped
/// (logged): a bad entry must not stop placement. No object yet reads as none.
async fn read<I: IoCtx, T: for<'de> Deserialize<'de>>(
    io: &I,
    prefix: &str,
) -> Result<BTreeMap<String, T>, RadosError> {
    let entries = match io.omap_get_all(BALANCE_OBJECT, prefix).await {
        Err(e) if e.is_not_found() => return Ok(BTreeMap::new()),
        other => other?,
    };
    Ok(entries
        .into_iter()
        .filter_map(|(key, value)| {
            let rest = key.strip_prefix(prefix)?.to_string();
            match serde_json::from_slice(&value) {
                Ok(v) => Some((rest, v)),
                Err(e) => {
                    tracing::warn!(%key, %e, "ignoring an undecodable balance entry");
                    None
                }
            }
        })
        .collect())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: [u64; 3] = [11, 22, 33];

    /// Images named so that instance `i` of LIVE owns `n` of them by hashing.
    fn owned_by(i: u64, n: usize) -> Vec<String> {
        (0..)
            .map(|k| format!("img-{k}"))
            .filter(|g| assignment::owner(g, &LIVE) == Some(i))
            .take(n)
            .collect()
    }

    #[test]
    fn balanced_or_idle_pools_stay_put() {
        let mut loads = Loads::new();
        for (i, g) in LIVE
            .iter()
            .flat_map(|&i| owned_by(i, 2).into_iter().map(move |g| (i, g)))
        {
            loads.insert(g, i * 1000);
        }
        // 22 000 vs 66 000 bytes/s: a gap, but below the minimum.
        assert_eq!(plan(&LIVE, &BTreeMap::new(), &loads, 1 << 20), vec![]);
        assert_eq!(plan(&LIVE, &BTreeMap::new(), &Loads::new(), 1), vec![]);
    }

    #[test]
    fn the_busiest_instance_gives_the_image_nearest_half_the_gap_to_the_idlest() {
        let heavy = owned_by(11, 3);
        let loads: Loads = [
            (heavy[0].clone(), 90 << 20),
            (heavy[1].clone(), 40 << 20),
            (heavy[2].clone(), 10 << 20),
        ]
        .into();
        // 140 MiB/s on 11, none elsewhere: half the gap is 70; moving the 90 MiB/s image
        // leaves 50 against 90, the 40 MiB/s one 100 against 40.
        let changes = plan(&LIVE, &BTreeMap::new(), &loads, 1 << 20);
        assert_eq!(changes.len(), 1);
        let Change::Move { global_id, to } = &changes[0] else {
            panic!("{changes:?}")
        };
        assert_eq!(global_id, &heavy[0]);
        assert!(*to == 22 || *to == 33);
    }

    #[test]
    fn moves_that_would_only_swap_the_roles_are_not_made() {
        // One image alone: moving it swaps busy and idle.
        let loads: Loads = [(owned_by(11, 1)[0].clone(), 100 << 20)].into();
        assert_eq!(plan(&LIVE, &BTreeMap::new(), &loads, 1), vec![]);
        // Two equal images against one, give or take noise: moving one would swap them.
        let [a, b] = [owned_by(11, 2)[0].clone(), owned_by(11, 2)[1].clone()];
        let c = owned_by(22, 1)[0].clone();
        let loads: Loads = [(a, 21 << 20), (b, 20 << 20), (c, 19 << 20)].into();
        assert_eq!(plan(&[11, 22], &BTreeMap::new(), &loads, 1), vec![]);
    }

    #[test]
    fn moves_to_dead_instances_are_forgotten_and_their_images_hash_again() {
        let g = owned_by(11, 1)[0].clone();
        let moves: BTreeMap<String, u64> = [(g.clone(), 44)].into();
        assert_eq!(owner(&g, &LIVE, &moves), Some(11));
        assert_eq!(
            plan(&LIVE, &moves, &Loads::new(), 1),
            vec![Change::Forget { global_id: g }]
        );
    }

    #[test]
    fn an_image_moved_back_to_its_hashed_owner_drops_its_override() {
        let [a, c] = [owned_by(11, 2)[0].clone(), owned_by(11, 2)[1].clone()];
        let b = owned_by(22, 1)[0].clone();
        // b was moved to 11 earlier; now 11 is busy and 22 idle: b (half the gap) goes home.
        let moves: BTreeMap<String, u64> = [(b.clone(), 11)].into();
        let loads: Loads = [(a, 10 << 20), (b.clone(), 20 << 20), (c, 10 << 20)].into();
        let live = [11, 22];
        assert_eq!(owner(&b, &live, &moves), Some(11));
        assert_eq!(
            plan(&live, &moves, &loads, 1),
            vec![Change::Forget { global_id: b }]
        );
    }
}
