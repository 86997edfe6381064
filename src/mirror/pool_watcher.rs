//! PoolWatcher: the set of images a remote pool mirrors, kept current by `rbd_mirroring`
//! notifications. Replaces upstream's PoolWatcher, which re-lists every 30 s: here the
//! list is read once, then each `ImageUpdated` notification adds or removes one image, and a
//! watch error or lag triggers a re-watch and a full re-list (nothing a lost notification
//! carried is missed).

use std::collections::BTreeMap;

use crate::cls::{self, ClsError};
use crate::format::Decode;
use crate::format::mirror::{MirrorImageMode, MirrorImageState};
use crate::format::notify::MirroringNotify;
use crate::rados::IoCtx;

/// global image id → the primary's image id.
pub type ImageSet = BTreeMap<String, String>;

/// What a notification means for the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// The image is (still) mirrored: start it, or kick its parked replayer.
    Enabled {
        global_id: String,
        image_id: String,
    },
    Removed {
        global_id: String,
    },
    /// The pool's mode changed or the payload is unknown: re-list.
    Relist,
}

/// Journal-mode images in state enabled (snapshot-mode images are not ours to replay).
pub async fn list<I: IoCtx>(io: &I) -> Result<ImageSet, ClsError> {
    let ids = match cls::mirror::image_list(io).await {
        Err(e) if e.is_not_found() => return Ok(ImageSet::new()),
        other => other?,
    };
    let mut set = ImageSet::new();
    for (image_id, global_id) in ids {
        match cls::mirror::image_get(io, &image_id).await {
            Ok(img)
                if img.state == MirrorImageState::Enabled
                    && img.mode == MirrorImageMode::Journal =>
            {
                set.insert(global_id, image_id);
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {} // disabled meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(set)
}

/// Decodes an `rbd_mirroring` notification of the remote pool.
pub fn decode(payload: bytes::Bytes) -> Update {
    match MirroringNotify::from_bytes(payload) {
        Ok(MirroringNotify::ImageUpdated {
            state,
            image_id,
            global_image_id,
        }) => match state {
            MirrorImageState::Enabled => Update::Enabled {
                global_id: global_image_id,
                image_id,
            },
            _ => Update::Removed {
                global_id: global_image_id,
            },
        },
        _ => Update::Relist,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Encode;

    #[test]
    fn image_updates_map_to_set_changes() {
        let n = |state| {
            MirroringNotify::ImageUpdated {
                state,
                image_id: "id1".into(),
                global_image_id: "g1".into(),
            }
            .to_bytes()
        };
        assert_eq!(
            decode(n(MirrorImageState::Enabled)),
            Update::Enabled {
                global_id: "g1".into(),
                image_id: "id1".into()
            }
        );
        assert_eq!(
            decode(n(MirrorImageState::Disabling)),
            Update::Removed {
                global_id: "g1".into()
            }
        );
        assert_eq!(decode(bytes::Bytes::from_static(b"junk")), Update::Relist);
    }
}
