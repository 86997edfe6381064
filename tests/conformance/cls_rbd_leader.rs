//! The mirror daemons' instance registry on `rbd_mirror_leader`, through the typed client.

use rbd_relay::cls::mirror as m;
use rbd_relay::rados::{Errno, IoCtx, Rados};

use crate::harness::name;

pub async fn mirror_instances<R: Rados>(_c: &R, io: &R::IoCtx) {
    let ns = io.with_namespace(&name("leader"));
    let missing = m::instances_list(&ns).await.map(drop).unwrap_err();
    assert_eq!(missing.errno(), Some(Errno::ENOENT), "no leader object yet");
    m::instances_add(&ns, "4134").await.unwrap();
    m::instances_add(&ns, "4200").await.unwrap();
    m::instances_add(&ns, "4134").await.unwrap(); // idempotent
    assert_eq!(m::instances_list(&ns).await.unwrap(), ["4134", "4200"]);
    m::instances_remove(&ns, "4134").await.unwrap();
    m::instances_remove(&ns, "4134").await.unwrap(); // absent is fine
    assert_eq!(m::instances_list(&ns).await.unwrap(), ["4200"]);
    ns.remove("rbd_mirror_leader").await.unwrap();
}
