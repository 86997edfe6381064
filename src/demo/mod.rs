//! The embedded two-site setup: what `rbd-relay demo` runs and what the end-to-end tests on
//! the memory backend use. Two in-memory clusters ("site-a" primary, "site-b" secondary),
//! pool `rbd` on each with mirroring enabled and site-b peered to site-a, the real daemon
//! replicating, and a byte-for-byte comparison of both sides.

pub mod primary;
pub mod run;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::cls;
use crate::format::Encode;
use crate::format::codec::UTime;
use crate::format::mirror::{
    MIRRORING_OBJECT, MirrorImageState, MirrorMode, MirrorPeer, MirrorPeerDirection,
};
use crate::format::notify::MirroringNotify;
use crate::mirror::{Connector, PeerSite};
use crate::rados::memory::{MemoryCluster, MemoryRados};
use crate::rados::{Errno, IoCtx, Rados, RadosError, RadosOp, RadosResult};

pub use crate::rbd::compare;

pub const POOL: &str = "rbd";

/// In-memory sites by name: how the embedded daemon "connects" to a peer.
#[derive(Clone, Default)]
pub struct MemoryConnector {
    sites: Arc<BTreeMap<String, MemoryCluster>>,
}

#[async_trait]
impl Connector for MemoryConnector {
    type Rados = MemoryRados;
    async fn connect(&self, peer: &PeerSite) -> RadosResult<MemoryRados> {
        self.sites
            .get(&peer.site_name)
            .map(MemoryCluster::connect)
            .ok_or_else(|| RadosError::new(RadosOp::Connect, &peer.site_name, Errno::ENOENT))
    }
}

/// Two embedded sites, mirroring configured as `rbd mirror pool enable` + `peer add` would.
pub struct TwoSites {
    pub site_a: MemoryCluster,
    pub site_b: MemoryCluster,
    pub connector: MemoryConnector,
}

impl TwoSites {
    pub async fn new(mode: MirrorMode) -> RadosResult<Self> {
        let (site_a, site_b) = (MemoryCluster::default(), MemoryCluster::default());
        for (site, name, peer) in [(&site_a, "site-a", "site-b"), (&site_b, "site-b", "site-a")] {
            site.create_pool(POOL)?;
            let rados = site.connect();
            let io = rados.ioctx(POOL).await?;
            let setup = async {
                cls::mirror::uuid_set(&io, &uuid::Uuid::new_v4().to_string()).await?;
                cls::mirror::mode_set(&io, mode).await?;
                cls::mirror::peer_add(
                    &io,
                    &MirrorPeer {
                        uuid: uuid::Uuid::new_v4().to_string(),
                        site_name: peer.into(),
                        client_name: "client.admin".into(),
                        pool_id: -1,
                        direction: MirrorPeerDirection::RxTx,
                        mirror_uuid: String::new(),
                        last_seen: UTime::ZERO,
                    },
                )
                .await
            };
            setup.await.map_err(|e| match e {
                cls::ClsError::Rados(r) => r,
                other => RadosError::new(RadosOp::Exec, format!("{other}"), Errno::EIO),
            })?;
            rados
                .config_key_set("rbd/mirror/site_name", Bytes::from(name))
                .await?;
        }
        let sites = BTreeMap::from([
            ("site-a".to_string(), site_a.clone()),
            ("site-b".to_string(), site_b.clone()),
        ]);
        Ok(TwoSites {
            site_a,
            site_b,
            connector: MemoryConnector {
                sites: Arc::new(sites),
            },
        })
    }
}

/// Tells a pool's watchers that an image's mirroring changed (librbd does this on enable).
pub async fn notify_image_updated<I: IoCtx>(
    io: &I,
    image_id: &str,
    global_id: &str,
    state: MirrorImageState,
) -> RadosResult<()> {
    let msg = MirroringNotify::ImageUpdated {
        state,
        image_id: image_id.into(),
        global_image_id: global_id.into(),
    };
    io.notify(
        MIRRORING_OBJECT,
        msg.to_bytes(),
        std::time::Duration::from_secs(5),
    )
    .await
    .map(drop)
}
