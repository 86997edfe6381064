//! cls_rbd's image statuses on `rbd_mirroring` through the typed client
//! (`rbd_relay::cls::mirror`), on both backends with two clients: local and remote statuses,
//! what is stored (the writer's entity, `up` false, the OSD's time), `up` only while the
//! writer watches `rbd_mirroring`, listing, `remove_down`, and writes for unknown or
//! not-enabled images silently dropped.

use rbd_relay::cls::mirror as m;
use rbd_relay::format::Decode;
use rbd_relay::format::codec::UTime;
use rbd_relay::format::entity::EntityAddr;
use rbd_relay::format::mirror::{
    MIRRORING_OBJECT, MirrorImageSiteStatus, MirrorImageSiteStatusOnDisk, MirrorImageState,
    MirrorImageStatusListOutput, MirrorImageStatusState, MirrorMode,
};
use rbd_relay::rados::{Errno, IoCtx, Rados};

use crate::cls_rbd_mirror::{Checks, image, list_page, r};
use crate::harness::name;

fn site(mirror_uuid: &str, state: MirrorImageStatusState, desc: &str) -> MirrorImageSiteStatus {
    MirrorImageSiteStatus {
        mirror_uuid: mirror_uuid.into(),
        state,
        description: desc.into(),
        last_update: UTime::new(1, 2),
        up: true,
    }
}

/// Statuses written by client 1; client 2 reads. `up` only while client 1 watches.
pub async fn mirror_statuses<R: Rados>(c1: &R, io1: &R::IoCtx, _c2: &R, io2: &R::IoCtx) {
    let ns = name("statuses");
    let (io1, io2) = (io1.with_namespace(&ns), io2.with_namespace(&ns));
    m::uuid_set(&io1, "site-uuid").await.unwrap();
    m::mode_set(&io1, MirrorMode::Image).await.unwrap();
    use MirrorImageStatusState::{Replaying, Stopped, Syncing};
    let mut c = Checks::default();
    let untouched = io2.with_namespace(&name("statuses-none"));
    c.eq(
        "list on a missing object",
        r(m::image_status_list(&untouched).await).map(|_| ()),
        Err(Errno::ENOENT),
    );
    c.eq(
        "remove_down on a missing object",
        r(m::image_status_remove_down(&untouched).await),
        Ok(()),
    );
    c.eq(
        "remove on a missing object",
        r(m::image_status_remove(&untouched, "g").await),
        Ok(()),
    );
    m::image_set(&io1, "i1", &image("g1", MirrorImageState::Enabled))
        .await
        .unwrap();
    m::image_set(&io1, "i2", &image("g2", MirrorImageState::Disabled))
        .await
        .unwrap();
    m::image_set(&io1, "i3", &image("g3", MirrorImageState::Enabled))
        .await
        .unwrap();
    let local = site("", Replaying, "replaying, {}");
    c.eq(
        "set on unknown gid",
        r(m::image_status_set(&io1, "nope", &local).await),
        Ok(()),
    );
    c.eq(
        "set on disabled",
        r(m::image_status_set(&io1, "g2", &local).await),
        Ok(()),
    );
    c.eq(
        "unknown not stored",
        r(m::image_status_get(&io2, "nope").await).map(|_| ()),
        Err(Errno::ENOENT),
    );
    c.eq(
        "disabled not stored",
        r(m::image_status_get(&io2, "g2").await).map(|_| ()),
        Err(Errno::ENOENT),
    );
    c.eq(
        "no status yet",
        r(m::image_instance_get(&io2, "g1").await).map(|_| ()),
        Err(Errno::ENOENT),
    );

    let mut watch = io1.watch(MIRRORING_OBJECT).await.unwrap();
    m::image_status_set(&io1, "g1", &local).await.unwrap();
    m::image_status_set(&io1, "g1", &site("remote-b", Syncing, "sync"))
        .await
        .unwrap();
    m::image_status_set(&io1, "g1", &site("remote-a", Stopped, "stopped"))
        .await
        .unwrap();
    let keys = io2.omap_get_all(MIRRORING_OBJECT, "").await.unwrap();
    let status_keys: Vec<&str> = keys
        .keys()
        .filter(|k| k.contains("status"))
        .map(String::as_str)
        .collect();
    c.eq(
        "status keys",
        status_keys,
        vec![
            "remote_status_global_g1_remote-a",
            "remote_status_global_g1_remote-b",
            "status_global_g1",
        ],
    );
    // Stored: the writer's entity (address type ANY), no mirror uuid, `up` false, OSD time.
    for key in ["status_global_g1", "remote_status_global_g1_remote-b"] {
        let stored = MirrorImageSiteStatusOnDisk::from_bytes(keys[key].clone()).unwrap();
        let o = &stored.origin;
        c.eq(
            key,
            (
                o.name.num,
                o.addr.addr_type,
                stored.status.mirror_uuid.as_str(),
                stored.status.up,
            ),
            (c1.instance_id() as i64, EntityAddr::TYPE_ANY, "", false),
        );
        c.eq(
            "stored time",
            stored.status.last_update == UTime::new(1, 2),
            false,
        );
    }
    let s = m::image_status_get(&io2, "g1").await.unwrap();
    let brief = |s: &MirrorImageSiteStatus| {
        (
            s.mirror_uuid.clone(),
            s.state,
            s.description.clone(),
            s.up,
            s.last_update.is_zero() || s.last_update == UTime::new(1, 2),
        )
    };
    c.eq(
        "local",
        s.local.as_ref().map(brief),
        Some((
            String::new(),
            Replaying,
            "replaying, {}".into(),
            true,
            false,
        )),
    );
    let remote: Vec<_> = s.remote.iter().map(brief).collect();
    c.eq(
        "remote",
        remote,
        vec![
            ("remote-a".into(), Stopped, "stopped".into(), true, false),
            ("remote-b".into(), Syncing, "sync".into(), true, false),
        ],
    );
    let inst = r(m::image_instance_get(&io2, "g1").await).map(|i| i.name.num);
    c.eq("instance", inst, Ok(c1.instance_id() as i64));

    let listed = m::image_status_list(&io2).await.unwrap();
    c.eq(
        "list images",
        listed.images.keys().cloned().collect::<Vec<_>>(),
        vec!["i1".to_string(), "i2".into(), "i3".into()],
    );
    c.eq(
        "list statuses",
        listed.statuses.keys().cloned().collect::<Vec<_>>(),
        vec!["i1".to_string()],
    );
    c.eq("listed status", listed.statuses.get("i1"), Some(&s));
    let page: Result<MirrorImageStatusListOutput, _> =
        list_page(&io2, MIRRORING_OBJECT, "mirror_image_status_list", "i1", 1).await;
    c.eq(
        "status page",
        page.map(|p| (p.images.into_keys().collect::<Vec<_>>(), p.statuses.len())),
        Ok((vec!["i2".to_string()], 0)),
    );

    io1.unwatch(watch.cookie).await.unwrap();
    while watch.next().await.is_some() {}
    let s = m::image_status_get(&io2, "g1").await.unwrap();
    c.eq("local down", s.local.map(|l| l.up), Some(false));
    c.eq(
        "remote down",
        s.remote.iter().map(|l| l.up).collect::<Vec<_>>(),
        vec![false, false],
    );
    c.eq(
        "instance stale",
        r(m::image_instance_get(&io2, "g1").await).map(|_| ()),
        Err(Errno::ESTALE),
    );

    // A status of a watching writer survives remove_down; the others go: client 2 never
    // watches, client 1 watches again.
    m::image_status_set(&io2, "g3", &local).await.unwrap();
    let _watch3 = io1.watch(MIRRORING_OBJECT).await.unwrap();
    c.eq(
        "up again",
        r(m::image_status_get(&io2, "g1").await).map(|s| s.local.map(|l| l.up)),
        Ok(Some(true)),
    );
    c.eq(
        "remove down",
        r(m::image_status_remove_down(&io2).await),
        Ok(()),
    );
    c.eq(
        "down removed",
        r(m::image_status_get(&io2, "g3").await).map(|_| ()),
        Err(Errno::ENOENT),
    );
    c.eq(
        "up kept",
        r(m::image_status_get(&io2, "g1").await).map(|s| s.remote.len()),
        Ok(2),
    );
    m::image_status_set(&io1, "g3", &local).await.unwrap();
    m::image_status_set(&io1, "g1", &site("remote-b", Syncing, "sync"))
        .await
        .unwrap();
    c.eq(
        "remove",
        r(m::image_status_remove(&io1, "g1").await),
        Ok(()),
    );
    c.eq(
        "removed",
        r(m::image_status_get(&io2, "g1").await).map(|_| ()),
        Err(Errno::ENOENT),
    );
    c.eq(
        "remove again",
        r(m::image_status_remove(&io1, "g1").await),
        Ok(()),
    );
    // Removing a disabling image drops its statuses.
    m::image_set(&io1, "i3", &image("g3", MirrorImageState::Disabling))
        .await
        .unwrap();
    c.eq(
        "set while disabling",
        r(m::image_status_set(&io1, "g3", &site("", Stopped, "x")).await),
        Ok(()),
    );
    c.eq(
        "kept while disabling",
        r(m::image_status_get(&io2, "g3").await).map(|s| s.local.map(|l| l.state)),
        Ok(Some(Replaying)),
    );
    m::image_remove(&io1, "i3").await.unwrap();
    c.eq(
        "statuses of removed image",
        r(m::image_status_get(&io2, "g3").await).map(|_| ()),
        Err(Errno::ENOENT),
    );
    c.done();
}
