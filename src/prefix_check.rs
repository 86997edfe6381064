//! `rbd-relay check-prefix`: proves, for one image whose replayer is stopped, that the
//! local copy equals the primary's state at the copy's commit position. Upstream has no
//! such tool (its tests compare images only once replication has caught up); this one
//! checks any moment, e.g. in the middle of a workload.
//!
//! ```text
//!  --hold (right after the primary was created, before it is resized; once per image):
//!    START_SIZE: the journal is untrimmed (minimum set 0) and holds no Resize, so the
//!      |         size now is the size at its start --(otherwise)--> Err(Cannot)
//!    REGISTER the hold client at the journal's start: the primary's librbd trims nothing
//!             while it is registered with an empty commit position (as a new rbd-mirror
//!             peer is); its data records the start size
//!  check (the image's replayer stopped, e.g. `rbd mirror stop POOL/IMAGE` on the admin
//!         socket: a stop stores the commit position of everything applied):
//!    READ_POSITION: our mirror client's commit position --(none, syncing,
//!      |            disconnected)--> Err(Cannot)
//!    CHECK_HOLD: the hold's start size --(no hold, minimum set > 0, a clone)--> Err(Cannot)
//!    REFERENCE: a fresh image on the embedded backend, the primary's geometry, the start
//!      |        size; the journal from its start up to the position replayed into it
//!      |        (`replay_prefix`: the daemon's reader and replay)
//!    COMPARE: size, head, every snapshot, byte for byte (the daemon's sync-point
//!      |      snapshot, never copied, is left out) --> Ok(Report)
//!    READ_POSITION again --(moved: the replayer was running)--> Err(Cannot)
//!  --release: unregister the hold; the primary trims again
//! ```
//! The reference starts from zeros at the start size, which is the primary's state at its
//! journal's start only if journaling was on from the image's creation.

use std::time::Duration;

use crate::ceph_conf::LibradosConnector;
use crate::cls::journal as cls_journal;
use crate::cls::{self, ClsError};
use crate::format::Decode;
use crate::format::Encode;
use crate::format::client_data::{CHECK_HOLD_CLIENT_ID, CheckHold, ClientData, MirrorPeerState};
use crate::format::event::{Event, EventEntry};
use crate::format::image::SnapshotNamespace;
use crate::format::journal::{ClientState, ObjectPosition, ObjectSetPosition, header_oid};
use crate::journal::reader::JournalReader;
use crate::mirror::image_replayer::{
    Epochs, ReplayError, image_client, replay_prefix, replica_spec,
};
use crate::mirror::peer::{Connector, pool_peers};
use crate::rados::librados::LibradosCluster;
use crate::rados::memory::MemoryCluster;
use crate::rados::{IoCtx, Rados, RadosError};
use crate::rbd::{self, Image, RbdError};

/// Names of the daemon's (and upstream's) sync-point snapshots on the primary.
const SYNC_POINT_PREFIX: &str = ".rbd-mirror.";

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Nothing can be said about this image now; the text says why and what to do.
    #[error("cannot check: {0}")]
    Cannot(String),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Rbd(#[from] RbdError),
    #[error(transparent)]
    Cls(#[from] ClsError),
    #[error(transparent)]
    Rados(#[from] RadosError),
}

/// One mirrored image: the primary's side and ours.
pub struct Pair<'a, R, L> {
    pub remote_io: &'a R,
    pub remote_image_id: &'a str,
    pub local_io: &'a L,
    pub local_image_id: &'a str,
    /// Our pool's mirror uuid: our journal client's id on the primary.
    pub local_uuid: &'a str,
    pub remote_uuid: &'a str,
}

/// What a check found.
#[derive(Debug)]
pub struct Report {
    /// The commit position's newest entry: the moment compared.
    pub position: ObjectPosition,
    /// Journal entries replayed into the reference.
    pub entries: u64,
    /// Snapshots compared besides the head.
    pub snapshots: usize,
    /// `Err`: the first difference (size, snapshot names, or the first differing byte).
    pub verdict: Result<(), String>,
}

/// Registers the hold on the primary's journal (idempotent); returns the start size.
pub async fn hold<R: IoCtx>(remote_io: &R, remote_image_id: &str) -> Result<u64, CheckError> {
    let header = header_oid(remote_image_id);
    if let Some(held) = held_size(remote_io, &header).await? {
        return Ok(held);
    }
    untrimmed(remote_io, &header).await?;
    // START_SIZE: read before the journal, so a resize racing it is in what is scanned.
    let size = Image::open(remote_io.clone(), remote_image_id)
        .await?
        .size();
    let start = ObjectSetPosition::default();
    let mut reader = JournalReader::open(remote_io.clone(), remote_image_id, &start)
        .await
        .map_err(ReplayError::from)?;
    loop {
        let batch = reader
            .read(256, usize::MAX)
            .await
            .map_err(ReplayError::from)?;
        if batch.is_empty() {
            break;
        }
        for (entry, _) in batch {
            if let Ok(EventEntry {
                event: Event::Resize { .. },
                ..
            }) = EventEntry::from_bytes(entry.data)
            {
                return Err(CheckError::Cannot(
                    "the primary was resized since its journal began: its size at the start \
                     is unknown; register the hold right after creating the image"
                        .into(),
                ));
            }
        }
    }
    let data = CheckHold { image_size: size }.to_bytes();
    cls_journal::client_register(remote_io, &header, CHECK_HOLD_CLIENT_ID, data).await?;
    // Trimmed between the look and the registration: the hold holds nothing.
    if let Err(e) = untrimmed(remote_io, &header).await {
        cls_journal::client_unregister(remote_io, &header, CHECK_HOLD_CLIENT_ID).await?;
        return Err(e);
    }
    Ok(size)
}

/// Unregisters the hold; `false` when there was none.
pub async fn release<R: IoCtx>(remote_io: &R, remote_image_id: &str) -> Result<bool, CheckError> {
    let header = header_oid(remote_image_id);
    match cls_journal::client_unregister(remote_io, &header, CHECK_HOLD_CLIENT_ID).await {
        Err(e) if e.is_not_found() => Ok(false),
        other => Ok(other.map(|()| true)?),
    }
}

/// Compares the local copy with the primary's state at the copy's commit position.
pub async fn check<R: IoCtx, L: IoCtx>(pair: &Pair<'_, R, L>) -> Result<Report, CheckError> {
    let header = header_oid(pair.remote_image_id);
    // READ_POSITION
    let before = commit_position(pair, &header).await?;
    // CHECK_HOLD
    let Some(start_size) = held_size(pair.remote_io, &header).await? else {
        return Err(CheckError::Cannot(format!(
            "no hold on the primary's journal (client '{CHECK_HOLD_CLIENT_ID}'): run \
             `rbd-relay check-prefix --hold` right after creating the image"
        )));
    };
    untrimmed(pair.remote_io, &header).await?;
    let image_header = crate::format::image::oids::header(pair.remote_image_id);
    if cls::image::parent_get(pair.remote_io, &image_header)
        .await?
        .is_some()
    {
        return Err(CheckError::Cannot(
            "the image is a clone: its state at the journal's start is its parent's data,              which the reference (zeros) cannot start from"
                .into(),
        ));
    }
    // REFERENCE
    let cluster = MemoryCluster::default();
    cluster.create_pool("reference")?;
    let io = cluster.connect().ioctx("reference").await?;
    let mut spec = replica_spec(
        pair.remote_io,
        pair.remote_image_id,
        "check-prefix-reference",
        pair.remote_uuid,
    )
    .await?;
    spec.size = start_size;
    spec.data_pool = None;
    let id = rbd::create_non_primary(&io, &spec).await?;
    let mut reference = Image::open(io.clone(), &id).await?;
    reference.acquire_lock().await?;
    let tag_class = image_client(&io, &id).await?.0;
    let epochs = Epochs {
        remote_io: pair.remote_io,
        local_uuid: pair.local_uuid,
        remote_uuid: pair.remote_uuid,
    };
    let entries = replay_prefix(
        &epochs,
        pair.remote_image_id,
        &before,
        &mut reference,
        tag_class,
    )
    .await?;
    let sync_points: Vec<String> = (reference.snapshots().iter())
        .filter(|s| s.name.starts_with(SYNC_POINT_PREFIX))
        .map(|s| s.name.clone())
        .collect();
    for name in sync_points {
        reference
            .snap_remove(&name, &SnapshotNamespace::User)
            .await?;
    }
    // COMPARE
    let local = Image::open(pair.local_io.clone(), pair.local_image_id).await?;
    let verdict = rbd::compare(&reference, &local).await?;
    // READ_POSITION again
    let after = commit_position(pair, &header).await?;
    if after != before {
        return Err(CheckError::Cannot(format!(
            "the commit position moved during the check ({before:?} -> {after:?}): stop the \
             image's replayer first (`rbd mirror stop POOL/IMAGE` on the daemon's admin socket)"
        )));
    }
    Ok(Report {
        position: before,
        entries,
        snapshots: reference.snapshots().len(),
        verdict,
    })
}

/// Our mirror client's newest committed entry, once the copy is replaying.
async fn commit_position<R: IoCtx, L>(
    pair: &Pair<'_, R, L>,
    header: &str,
) -> Result<ObjectPosition, CheckError> {
    let client = match cls_journal::get_client(pair.remote_io, header, pair.local_uuid).await {
        Err(e) if e.is_not_found() => {
            return Err(CheckError::Cannot(format!(
                "no journal client '{}' (ours) on the primary: not mirrored here yet",
                pair.local_uuid
            )));
        }
        other => other?,
    };
    if client.state == ClientState::Disconnected {
        return Err(CheckError::Cannot(
            "the primary disconnected our journal client".into(),
        ));
    }
    match ClientData::from_bytes(client.data) {
        Ok(ClientData::MirrorPeer(m)) if m.state == MirrorPeerState::Replaying => {}
        _ => {
            return Err(CheckError::Cannot(
                "the copy is not replaying yet (image sync)".into(),
            ));
        }
    }
    client
        .commit_position
        .object_positions
        .into_iter()
        .next()
        .ok_or_else(|| CheckError::Cannot("nothing committed yet".into()))
}

/// The hold's start size, if the hold is registered.
async fn held_size<R: IoCtx>(io: &R, header: &str) -> Result<Option<u64>, CheckError> {
    let client = match cls_journal::get_client(io, header, CHECK_HOLD_CLIENT_ID).await {
        Err(e) if e.is_not_found() => return Ok(None),
        other => other?,
    };
    let hold = CheckHold::from_bytes(client.data).map_err(|e| {
        CheckError::Cannot(format!(
            "journal client '{CHECK_HOLD_CLIENT_ID}' is not a check-prefix hold: {e}"
        ))
    })?;
    Ok(Some(hold.image_size))
}

/// Fails unless the journal still holds its first entry (trimming removes whole object
/// sets and raises the minimum set).
async fn untrimmed<R: IoCtx>(io: &R, header: &str) -> Result<(), CheckError> {
    match cls_journal::get_minimum_set(io, header).await? {
        0 => Ok(()),
        set => Err(CheckError::Cannot(format!(
            "the primary's journal was trimmed (its oldest object set is {set}): the check \
             replays the journal from its start, which needs the hold from the image's creation"
        ))),
    }
}

/// Reaching the peer and finding its image: an unreachable peer fails within this.
const PEER_GRACE: Duration = Duration::from_secs(15);

/// What `rbd-relay check-prefix` was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Hold,
    Release,
    Check,
}

/// How an action ended well.
#[derive(Debug)]
pub enum Done {
    /// The hold is registered; the reference will start at this size.
    Held {
        start_size: u64,
    },
    /// `false`: there was no hold.
    Released(bool),
    Checked(Report),
}

/// The command on real clusters, run on the secondary site. It reaches the pool's one rx
/// peer as the daemon does. `--hold` and `--release` act on the primary and name its image
/// (the copy here may not exist yet); a check names the copy here and finds the primary
/// by global id.
pub async fn run(
    local: &LibradosCluster,
    pool: &str,
    image: &str,
    action: Action,
) -> Result<Done, CheckError> {
    let local_io = local.ioctx(pool).await?;
    let pool_id = local.pool_lookup(pool).await?;
    let peer = match pool_peers(local, pool_id, &local_io).await?.as_slice() {
        [peer] => peer.clone(),
        peers => {
            return Err(CheckError::Cannot(format!(
                "pool {pool} has {} rx peers, not one",
                peers.len()
            )));
        }
    };
    let reach = async {
        let cluster = LibradosConnector.connect(&peer).await?;
        let io = cluster.ioctx(pool).await?;
        Ok::<_, CheckError>((cluster, io))
    };
    let Ok(reached) = tokio::time::timeout(PEER_GRACE, reach).await else {
        return Err(CheckError::Cannot(format!(
            "peer {} did not answer within {PEER_GRACE:?}",
            peer.site_name
        )));
    };
    let (_cluster, remote_io) = reached?;
    if action != Action::Check {
        let remote_image_id = image_id(&remote_io, pool, image, &peer.site_name).await?;
        return Ok(match action {
            Action::Hold => Done::Held {
                start_size: hold(&remote_io, &remote_image_id).await?,
            },
            _ => Done::Released(release(&remote_io, &remote_image_id).await?),
        });
    }
    let local_image_id = image_id(&local_io, pool, image, "this site").await?;
    let global_id = cls::mirror::image_get(&local_io, &local_image_id)
        .await?
        .global_image_id;
    let remote_image_id = cls::mirror::image_get_image_id(&remote_io, &global_id).await?;
    Ok(Done::Checked(
        check(&Pair {
            remote_io: &remote_io,
            remote_image_id: &remote_image_id,
            local_io: &local_io,
            local_image_id: &local_image_id,
            local_uuid: &cls::mirror::uuid_get(&local_io).await?,
            remote_uuid: &cls::mirror::uuid_get(&remote_io).await?,
        })
        .await?,
    ))
}

/// The id of image `name` in `io`'s pool on `site`.
async fn image_id<I: IoCtx>(
    io: &I,
    pool: &str,
    name: &str,
    site: &str,
) -> Result<String, CheckError> {
    match cls::dir::get_id(io, name).await {
        Err(e) if e.is_not_found() => Err(CheckError::Cannot(format!(
            "no image {pool}/{name} on {site}"
        ))),
        other => Ok(other?),
    }
}

/// How the command ends (README "Reliability"): 0 equal (or hold / release done),
/// 4 the copy differs, 3 cannot check, 1 other errors.
pub fn exit_code(result: &Result<Done, CheckError>) -> i32 {
    match result {
        Ok(Done::Checked(Report {
            verdict: Err(_), ..
        })) => 4,
        Ok(_) => 0,
        Err(CheckError::Cannot(_)) => 3,
        Err(_) => 1,
    }
}
