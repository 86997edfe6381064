//! cls_rbd's `rbd_mirroring` methods through the typed client (`rbd_relay::cls::mirror`), on
//! both backends, each case in a fresh RADOS namespace (the object is a per-pool singleton):
//! mode/uuid lifecycle, peers (add rules, setters, ping) and mirrored images (set rules,
//! paging, removal only while disabling); statuses are in `cls_rbd_status`. Also
//! [`Checks`], which the cls_rbd cases use to report every mismatch of a run at once.

use std::fmt::Debug;

use bytes::Bytes;
use rbd_relay::cls::ClsResult;
use rbd_relay::cls::mirror as m;
use rbd_relay::format::codec::{ListInput, UTime};
use rbd_relay::format::mirror::{
    MIRRORING_OBJECT, MirrorImage, MirrorImageMode, MirrorImageState, MirrorMode, MirrorPeer,
    MirrorPeerDirection,
};
use rbd_relay::format::{Decode, Encode};
use rbd_relay::rados::{Errno, IoCtx, Rados};

use crate::harness::name;

/// Collects mismatches so one run shows them all.
#[derive(Default)]
pub struct Checks(Vec<String>);

impl Checks {
    pub fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.0.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    pub fn done(self) {
        assert!(self.0.is_empty(), "mismatches:\n{}", self.0.join("\n"));
    }
}

/// A call's value or its errno.
pub fn r<T>(res: ClsResult<T>) -> Result<T, Errno> {
    res.map_err(|e| {
        e.errno()
            .unwrap_or_else(|| panic!("not a RADOS error: {e}"))
    })
}

fn peer(uuid: &str, site: &str, client: &str, direction: MirrorPeerDirection) -> MirrorPeer {
    MirrorPeer {
        uuid: uuid.into(),
        site_name: site.into(),
        client_name: client.into(),
        pool_id: -1,
        direction,
        mirror_uuid: String::new(),
        last_seen: UTime::ZERO,
    }
}

pub fn image(gid: &str, state: MirrorImageState) -> MirrorImage {
    MirrorImage {
        global_image_id: gid.into(),
        state,
        mode: MirrorImageMode::Journal,
    }
}

/// A pool namespace with mirroring enabled in image mode and uuid `site-uuid`.
async fn enabled<I: IoCtx>(io: &I, what: &str) -> I {
    let io = io.with_namespace(&name(what));
    m::uuid_set(&io, "site-uuid").await.unwrap();
    m::mode_set(&io, MirrorMode::Image).await.unwrap();
    io
}

pub async fn mirror_mode_uuid<R: Rados>(_c: &R, io: &R::IoCtx) {
    let io = io.with_namespace(&name("mode"));
    let mut c = Checks::default();
    c.eq(
        "mode of a missing object",
        r(m::mode_get(&io).await),
        Ok(MirrorMode::Disabled),
    );
    c.eq(
        "uuid never set",
        r(m::uuid_get(&io).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "enable without uuid",
        r(m::mode_set(&io, MirrorMode::Pool).await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "empty uuid",
        r(m::uuid_set(&io, "").await),
        Err(Errno::EINVAL),
    );
    c.eq("uuid set", r(m::uuid_set(&io, "u1").await), Ok(()));
    c.eq(
        "uuid reset while disabled",
        r(m::uuid_set(&io, "u2").await),
        Ok(()),
    );
    c.eq("uuid", r(m::uuid_get(&io).await), Ok("u2".to_string()));
    let raw = io
        .omap_get_all(MIRRORING_OBJECT, "mirror_uuid")
        .await
        .unwrap();
    c.eq(
        "uuid stored raw",
        raw.get("mirror_uuid").cloned(),
        Some(Bytes::from_static(b"u2")),
    );
    c.eq(
        "enable",
        r(m::mode_set(&io, MirrorMode::Pool).await),
        Ok(()),
    );
    c.eq("mode", r(m::mode_get(&io).await), Ok(MirrorMode::Pool));
    c.eq(
        "image mode",
        r(m::mode_set(&io, MirrorMode::Image).await),
        Ok(()),
    );
    c.eq(
        "uuid while enabled",
        r(m::uuid_set(&io, "u3").await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "unknown mode",
        r(m::mode_set(&io, MirrorMode::Other(7)).await),
        Err(Errno::EINVAL),
    );
    let p = peer("p1", "site-b", "client.admin", MirrorPeerDirection::RxTx);
    m::peer_add(&io, &p).await.unwrap();
    c.eq(
        "disable with peers",
        r(m::mode_set(&io, MirrorMode::Disabled).await),
        Err(Errno::EBUSY),
    );
    m::peer_remove(&io, "p1").await.unwrap();
    c.eq(
        "disable",
        r(m::mode_set(&io, MirrorMode::Disabled).await),
        Ok(()),
    );
    c.eq(
        "mode after disable",
        r(m::mode_get(&io).await),
        Ok(MirrorMode::Disabled),
    );
    c.eq(
        "uuid dropped by disable",
        r(m::uuid_get(&io).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "disable again",
        r(m::mode_set(&io, MirrorMode::Disabled).await),
        Ok(()),
    );
    let untouched = io.with_namespace(&name("mode-none"));
    c.eq(
        "disable on a missing object",
        r(m::mode_set(&untouched, MirrorMode::Disabled).await),
        Ok(()),
    );
    c.done();
}

pub async fn mirror_peers<R: Rados>(_c: &R, io: &R::IoCtx) {
    let plain = io.with_namespace(&name("peers-off"));
    let mut c = Checks::default();
    let rx = peer("p1", "site-b", "client.b", MirrorPeerDirection::RxTx);
    c.eq(
        "list of a missing object",
        r(m::peer_list(&plain).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "add while disabled",
        r(m::peer_add(&plain, &rx).await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "ping while disabled",
        r(m::peer_ping(&plain, "s", "u").await),
        Err(Errno::EINVAL),
    );
    let io = enabled(io, "peers").await;
    let bad = [
        ("empty uuid", peer("", "s", "c", MirrorPeerDirection::RxTx)),
        ("empty site", peer("px", "", "c", MirrorPeerDirection::RxTx)),
        (
            "rx without client",
            peer("px", "s", "", MirrorPeerDirection::Rx),
        ),
        ("tx only", peer("px", "s", "c", MirrorPeerDirection::Tx)),
        (
            "own uuid",
            peer("site-uuid", "s", "c", MirrorPeerDirection::RxTx),
        ),
    ];
    for (what, p) in bad {
        c.eq(what, r(m::peer_add(&io, &p).await), Err(Errno::EINVAL));
    }
    c.eq("add", r(m::peer_add(&io, &rx).await), Ok(()));
    let dup_uuid = peer("p1", "site-c", "client.c", MirrorPeerDirection::RxTx);
    c.eq(
        "same uuid",
        r(m::peer_add(&io, &dup_uuid).await),
        Err(Errno::ESTALE),
    );
    let dup_site = peer("p2", "site-b", "client.c", MirrorPeerDirection::RxTx);
    c.eq(
        "same site",
        r(m::peer_add(&io, &dup_site).await),
        Err(Errno::EEXIST),
    );
    let mut with_uuid = peer("p2", "site-c", "client.c", MirrorPeerDirection::Rx);
    with_uuid.mirror_uuid = "remote-c".into();
    with_uuid.last_seen = UTime::new(5, 6);
    c.eq(
        "add with mirror uuid",
        r(m::peer_add(&io, &with_uuid).await),
        Ok(()),
    );
    let mut dup_mu = peer("p3", "site-d", "client.d", MirrorPeerDirection::RxTx);
    dup_mu.mirror_uuid = "remote-c".into();
    c.eq(
        "same mirror uuid",
        r(m::peer_add(&io, &dup_mu).await),
        Err(Errno::EEXIST),
    );
    c.eq(
        "listed",
        r(m::peer_list(&io).await),
        Ok(vec![rx.clone(), with_uuid.clone()]),
    );

    c.eq(
        "set client",
        r(m::peer_set_client(&io, "p1", "client.x").await),
        Ok(()),
    );
    c.eq(
        "set empty client",
        r(m::peer_set_client(&io, "p1", "").await),
        Ok(()),
    );
    c.eq(
        "set client, unknown",
        r(m::peer_set_client(&io, "nope", "c").await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "set cluster",
        r(m::peer_set_cluster(&io, "p1", "site-e").await),
        Ok(()),
    );
    c.eq(
        "set cluster to own",
        r(m::peer_set_cluster(&io, "p1", "site-e").await),
        Ok(()),
    );
    let taken = r(m::peer_set_cluster(&io, "p1", "site-c").await);
    c.eq("set cluster, taken", taken, Err(Errno::EEXIST));
    let unknown = r(m::peer_set_cluster(&io, "nope", "site-z").await);
    c.eq("set cluster, unknown", unknown, Err(Errno::ENOENT));
    let dir = r(m::peer_set_direction(&io, "p1", MirrorPeerDirection::Tx).await);
    c.eq("set direction tx", dir, Ok(()));
    let dir = r(m::peer_set_direction(&io, "nope", MirrorPeerDirection::Rx).await);
    c.eq("set direction, unknown", dir, Err(Errno::ENOENT));
    let p1 = MirrorPeer {
        site_name: "site-e".into(),
        client_name: String::new(),
        direction: MirrorPeerDirection::Tx,
        ..rx.clone()
    };
    c.eq(
        "after setters",
        r(m::peer_list(&io).await),
        Ok(vec![p1.clone(), with_uuid.clone()]),
    );

    // Ping: an unknown site becomes a TX-only peer; a known site learns its mirror uuid;
    // an RX peer becomes RX_TX.
    m::peer_set_direction(&io, "p1", MirrorPeerDirection::Rx)
        .await
        .unwrap();
    m::peer_set_client(&io, "p1", "client.b").await.unwrap();
    let bad_dir = rbd_relay::format::mirror::MirrorPeerPingInput {
        site_name: "site-e".into(),
        mirror_uuid: "mu-e".into(),
        direction: MirrorPeerDirection::RxTx,
    };
    let raw = io
        .exec_write(
            MIRRORING_OBJECT,
            "rbd",
            "mirror_peer_ping",
            bad_dir.to_bytes(),
        )
        .await;
    c.eq(
        "ping not TX",
        raw.map(|_| ()).map_err(|e| e.errno),
        Err(Errno::EINVAL),
    );
    c.eq(
        "ping empty uuid",
        r(m::peer_ping(&io, "site-e", "").await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "ping known site",
        r(m::peer_ping(&io, "site-e", "mu-e").await),
        Ok(()),
    );
    c.eq(
        "ping new site",
        r(m::peer_ping(&io, "site-f", "mu-f").await),
        Ok(()),
    );
    c.eq(
        "ping renamed site",
        r(m::peer_ping(&io, "site-c2", "remote-c").await),
        Ok(()),
    );
    let peers = m::peer_list(&io).await.unwrap();
    c.eq("peers after ping", peers.len(), 3);
    let find = |site: &str| peers.iter().find(|p| p.site_name == site).cloned();
    let e = find("site-e").expect("site-e");
    c.eq(
        "pinged rx peer",
        (&e.uuid[..], &e.mirror_uuid[..], e.direction),
        ("p1", "mu-e", MirrorPeerDirection::RxTx),
    );
    c.eq("pinged last_seen", e.last_seen.is_zero(), false);
    let f = find("site-f").expect("auto peer");
    c.eq(
        "auto peer",
        (
            &f.client_name[..],
            f.pool_id,
            &f.mirror_uuid[..],
            f.direction,
        ),
        ("", -1, "mu-f", MirrorPeerDirection::Tx),
    );
    c.eq("auto peer uuid", f.uuid.len(), 36);
    let c2 = find("site-c2").expect("renamed by ping");
    c.eq(
        "renamed peer",
        (&c2.uuid[..], c2.direction),
        ("p2", MirrorPeerDirection::RxTx),
    );
    // The site's peer knows another mirror uuid, which another peer has: that one is
    // pinged, and keeps its site name.
    c.eq(
        "ping a site with another peer's uuid",
        r(m::peer_ping(&io, "site-e", "mu-f").await),
        Ok(()),
    );
    let sites: Vec<(String, String)> = m::peer_list(&io)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.site_name, p.mirror_uuid))
        .collect();
    let want: Vec<(String, String)> = [
        ("site-c2", "remote-c"),
        ("site-e", "mu-e"),
        ("site-f", "mu-f"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let mut sorted = sites.clone();
    sorted.sort();
    c.eq("sites after cross ping", sorted, want);
    c.eq("remove", r(m::peer_remove(&io, "p1").await), Ok(()));
    c.eq("remove missing", r(m::peer_remove(&io, "p1").await), Ok(()));
    c.eq(
        "remove on a missing object",
        r(m::peer_remove(&plain, "p1").await),
        Ok(()),
    );
    c.eq(
        "after remove",
        r(m::peer_list(&io).await).map(|l| l.len()),
        Ok(2),
    );
    c.done();
}

/// One page of a cls_rbd listing method, raw (to check paging itself).
pub async fn list_page<I: IoCtx, T: Decode>(
    io: &I,
    oid: &str,
    method: &str,
    after: &str,
    max: u64,
) -> Result<T, Errno> {
    let input = ListInput {
        start_after: after.into(),
        max_return: max,
    };
    let out = io
        .exec(oid, "rbd", method, input.to_bytes())
        .await
        .map_err(|e| e.errno)?;
    Ok(T::from_bytes(out).expect("decodable"))
}

pub async fn mirror_images<R: Rados>(_c: &R, io: &R::IoCtx) {
    let mut c = Checks::default();
    let plain = io.with_namespace(&name("images-off"));
    c.eq(
        "list on a missing object",
        r(m::image_list(&plain).await).map(|l| l.len()),
        Err(Errno::ENOENT),
    );
    c.eq(
        "get on a missing object",
        r(m::image_get(&plain, "i").await),
        Err(Errno::ENOENT),
    );
    let io = enabled(io, "images").await;
    use MirrorImageState::{Disabled, Disabling, Enabled};
    c.eq(
        "new disabling",
        r(m::image_set(&io, "i1", &image("g1", Disabling)).await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "new disabled",
        r(m::image_set(&io, "i1", &image("g1", Disabled)).await),
        Ok(()),
    );
    c.eq(
        "get",
        r(m::image_get(&io, "i1").await),
        Ok(image("g1", Disabled)),
    );
    c.eq(
        "enable",
        r(m::image_set(&io, "i1", &image("g1", Enabled)).await),
        Ok(()),
    );
    c.eq(
        "change gid",
        r(m::image_set(&io, "i1", &image("g9", Enabled)).await),
        Err(Errno::EINVAL),
    );
    c.eq(
        "gid of another image",
        r(m::image_set(&io, "i2", &image("g1", Enabled)).await),
        Err(Errno::EEXIST),
    );
    for i in 2..=5 {
        m::image_set(&io, &format!("i{i}"), &image(&format!("g{i}"), Enabled))
            .await
            .unwrap();
    }
    c.eq(
        "get missing",
        r(m::image_get(&io, "nope").await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "image id",
        r(m::image_get_image_id(&io, "g3").await),
        Ok("i3".to_string()),
    );
    c.eq(
        "image id missing",
        r(m::image_get_image_id(&io, "g9").await),
        Err(Errno::ENOENT),
    );
    let all = m::image_list(&io).await.unwrap();
    let ids: Vec<_> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    c.eq(
        "list",
        ids,
        ["i1=g1", "i2=g2", "i3=g3", "i4=g4", "i5=g5"]
            .map(String::from)
            .to_vec(),
    );
    let page: Result<std::collections::BTreeMap<String, String>, _> =
        list_page(&io, MIRRORING_OBJECT, "mirror_image_list", "i2", 2).await;
    c.eq(
        "page",
        page.map(|p| p.into_keys().collect::<Vec<_>>()),
        Ok(vec!["i3".into(), "i4".into()]),
    );
    let page: Result<std::collections::BTreeMap<String, String>, _> =
        list_page(&io, MIRRORING_OBJECT, "mirror_image_list", "", 0).await;
    c.eq("page of 0", page.map(|p| p.len()), Ok(0));
    c.eq(
        "remove enabled",
        r(m::image_remove(&io, "i1").await),
        Err(Errno::EBUSY),
    );
    c.eq(
        "remove missing",
        r(m::image_remove(&io, "nope").await),
        Err(Errno::ENOENT),
    );
    m::image_set(&io, "i1", &image("g1", Disabling))
        .await
        .unwrap();
    c.eq(
        "re-enable disabling",
        r(m::image_set(&io, "i1", &image("g1", Enabled)).await),
        Ok(()),
    );
    m::image_set(&io, "i1", &image("g1", Disabling))
        .await
        .unwrap();
    c.eq(
        "remove disabling",
        r(m::image_remove(&io, "i1").await),
        Ok(()),
    );
    c.eq("gone", r(m::image_get(&io, "i1").await), Err(Errno::ENOENT));
    c.eq(
        "global gone",
        r(m::image_get_image_id(&io, "g1").await),
        Err(Errno::ENOENT),
    );
    c.eq(
        "gid reusable",
        r(m::image_set(&io, "i6", &image("g1", Enabled)).await),
        Ok(()),
    );
    c.done();
}
