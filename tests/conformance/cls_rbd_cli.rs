//! Lab only: what the typed mirroring client writes is what the `rbd` CLI reads. A peer added
//! with `cls::mirror::peer_add` shows in `rbd mirror pool info`, and a status set with
//! `image_status_set` on a CLI-made, mirroring-enabled image shows in `rbd mirror image
//! status` (`up` while this client watches `rbd_mirroring`). Runs in a pool of its own,
//! deleted at the end. Fails without a lab unless `RBD_RELAY_SKIP_CEPH=1`.

use rbd_relay::cls::{dir, mirror as m};
use rbd_relay::format::codec::UTime;
use rbd_relay::format::mirror::{
    MIRRORING_OBJECT, MirrorImageSiteStatus, MirrorImageStatusState, MirrorPeer,
    MirrorPeerDirection,
};
use rbd_relay::rados::{IoCtx, Rados};

use crate::harness::{self, cli};

fn json(tool: &str, args: &[&str]) -> serde_json::Value {
    let out = cli(tool, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{tool} {args:?}: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_sees_peers_and_statuses() {
    let Some((cluster, _)) = harness::librados("cli_sees_peers_and_statuses").await else {
        return;
    };
    let pool = format!(
        "clsrbd-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    cli("ceph", &["osd", "pool", "create", &pool, "8"]);
    cli("rbd", &["pool", "init", &pool]);
    let result = {
        let pool = pool.clone();
        tokio::spawn(async move { check(&cluster, &pool).await })
    }
    .await;
    cli(
        "ceph",
        &[
            "osd",
            "pool",
            "rm",
            &pool,
            &pool,
            "--yes-i-really-really-mean-it",
        ],
    );
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn check<R: Rados>(cluster: &R, pool: &str) {
    let io = cluster.ioctx(pool).await.expect("test pool");
    cli("rbd", &["mirror", "pool", "enable", pool, "image"]);
    let peer = MirrorPeer {
        uuid: uuid::Uuid::new_v4().to_string(),
        site_name: "cls-rbd-remote".into(),
        client_name: "client.remote".into(),
        pool_id: -1,
        direction: MirrorPeerDirection::RxTx,
        mirror_uuid: String::new(),
        last_seen: UTime::ZERO,
    };
    m::peer_add(&io, &peer).await.unwrap();
    let info = json("rbd", &["mirror", "pool", "info", pool, "--format", "json"]);
    let peers = info["peers"].as_array().expect("peers");
    let listed = peers
        .iter()
        .find(|p| p["uuid"] == peer.uuid.as_str())
        .unwrap_or_else(|| panic!("peer not listed: {info}"));
    assert_eq!(listed["site_name"], "cls-rbd-remote", "{info}");
    assert_eq!(listed["client_name"], "client.remote", "{info}");
    assert_eq!(listed["direction"], "rx-tx", "{info}");

    let image = format!("{pool}/img");
    cli(
        "rbd",
        &[
            "create",
            "--size",
            "8M",
            "--image-feature",
            "exclusive-lock,journaling",
            &image,
        ],
    );
    cli("rbd", &["mirror", "image", "enable", &image]);
    let id = dir::get_id(&io, "img").await.unwrap();
    let gid = m::image_get(&io, &id).await.unwrap().global_image_id;
    let watch = io.watch(MIRRORING_OBJECT).await.unwrap();
    let status = MirrorImageSiteStatus {
        mirror_uuid: String::new(),
        state: MirrorImageStatusState::Replaying,
        description: "set by rbd-relay".into(),
        last_update: UTime::ZERO,
        up: false,
    };
    m::image_status_set(&io, &gid, &status).await.unwrap();
    let shown = json(
        "rbd",
        &["mirror", "image", "status", &image, "--format", "json"],
    );
    assert_eq!(shown["global_id"], gid.as_str(), "{shown}");
    assert_eq!(shown["state"], "up+replaying", "{shown}");
    assert_eq!(shown["description"], "set by rbd-relay", "{shown}");
    io.unwatch(watch.cookie).await.unwrap();
    let shown = json(
        "rbd",
        &["mirror", "image", "status", &image, "--format", "json"],
    );
    assert_eq!(shown["state"], "down+replaying", "{shown}");

    m::peer_remove(&io, &peer.uuid).await.unwrap();
    cli("rbd", &["mirror", "image", "disable", &image]);
    cli("rbd", &["rm", &image]);
}
