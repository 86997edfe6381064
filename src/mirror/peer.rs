//! Reaching a peer site. A pool's peer entry names the remote cluster (site name) and client;
//! how to connect (mon host + key from the config-key store, or `<cluster>.conf` + keyring)
//! is the backend's business, behind [`Connector`], so the daemon runs the same on real
//! Ceph and on the embedded clusters.

use async_trait::async_trait;

use crate::cls::{self, ClsError};
use crate::format::mirror::MirrorPeerDirection;
use crate::rados::librados::CephKey;
use crate::rados::{Rados, RadosResult};

/// Where a peer is, as the local pool's configuration says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerSite {
    pub uuid: String,
    /// The remote cluster's name (`site_name` of the peer entry).
    pub site_name: String,
    /// `client.<id>` the peer entry names.
    pub client_name: String,
    /// From config-key `rbd/mirror/peer/<pool id>/<peer uuid>`, when the peer was added
    /// with `--remote-mon-host` / `--remote-key-file` or by bootstrap import.
    pub mon_host: Option<String>,
    pub key: Option<KeyRef>,
}

/// A peer's secret, compared by value but never shown.
#[derive(Debug, Clone)]
pub struct KeyRef(pub CephKey);

impl PartialEq for KeyRef {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose() == other.0.expose()
    }
}
impl Eq for KeyRef {}
impl std::hash::Hash for KeyRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.expose().hash(state)
    }
}

#[async_trait]
pub trait Connector: Send + Sync + 'static {
    type Rados: Rados;
    async fn connect(&self, peer: &PeerSite) -> RadosResult<Self::Rados>;
}

/// The peers of local pool `pool_id` (`io`) that this site pulls from (rx-only and rx-tx
/// entries; a tx-only peer pulls by itself), with the mon host and key stored for each.
pub async fn pool_peers<R: Rados>(
    local: &R,
    pool_id: i64,
    io: &R::IoCtx,
) -> Result<Vec<PeerSite>, ClsError> {
    let mut peers = Vec::new();
    for p in cls::mirror::peer_list(io).await? {
        if p.direction == MirrorPeerDirection::Tx {
            continue;
        }
        let (mon_host, key) = match local
            .config_key_get(&peer_attributes_key(pool_id, &p.uuid))
            .await
        {
            Ok(json) => parse_peer_attributes(&json),
            Err(_) => (None, None),
        };
        peers.push(PeerSite {
            uuid: p.uuid,
            site_name: p.site_name,
            client_name: p.client_name,
            mon_host,
            key,
        });
    }
    Ok(peers)
}

/// The config-key entry librbd writes for a peer: `{"mon_host": "...", "key": "..."}`.
pub fn parse_peer_attributes(json: &[u8]) -> (Option<String>, Option<KeyRef>) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return (None, None);
    };
    let get = |k: &str| {
        v.get(k)
            .and_then(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    (get("mon_host"), get("key").map(|k| KeyRef(CephKey::new(k))))
}

/// Config-key name of a peer's attributes.
pub fn peer_attributes_key(pool_id: i64, peer_uuid: &str) -> String {
    format!("rbd/mirror/peer/{pool_id}/{peer_uuid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_attributes_parse_and_stay_secret() {
        let (mon, key) = parse_peer_attributes(br#"{"mon_host":"127.0.0.1:3300","key":"AQD=="}"#);
        assert_eq!(mon.as_deref(), Some("127.0.0.1:3300"));
        let key = key.unwrap();
        assert!(!format!("{key:?}").contains("AQD"));
        assert_eq!(parse_peer_attributes(b"not json"), (None, None));
    }
}
