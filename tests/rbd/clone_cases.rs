//! Clones of the `rbd` module, on both backends: a replica made as a clone of a local
//! parent snapshot reads through it, copies objects up on their first write (keeping the
//! parent's bytes around the write, and the clone's snapshots intact), zeroes instead of
//! removing inside the overlap, stops at the overlap after a shrink, flattens, and leaves
//! the parent snapshot's children when flattened or removed; a parent snapshot removed
//! while a clone reads it goes to the trash, and is purged when that clone goes.

use rbd_relay::cls::image as cls_image;
use rbd_relay::format::image::{ParentImageSpec, SnapshotNamespace, oids};
use rbd_relay::rados::{IoCtx, Rados};
use rbd_relay::rbd::{CloneOf, Image, IoOp, create_non_primary, remove_image};

use crate::cases::{Model, OBJ, SIZE, locked_image, pattern, spec};

async fn children<I: IoCtx>(io: &I, parent: &Image<I>, snap: u64) -> Vec<String> {
    cls_image::children_list(io, &oids::header(parent.id()), snap)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.image_id)
        .collect()
}

async fn whole<I: IoCtx>(image: &Image<I>, snap: Option<u64>) -> Vec<u8> {
    let size = match snap {
        None => image.size(),
        Some(id) => {
            image
                .snapshots()
                .iter()
                .find(|s| s.id == id)
                .unwrap()
                .image_size
        }
    };
    image.read(0, size, snap).await.unwrap().to_vec()
}

pub async fn clones<R: Rados>(_c: &R, io: &R::IoCtx, _c2: &R, _io2: &R::IoCtx) {
    // The parent: data in objects 0..4, then a snapshot the clone hangs off.
    let mut parent = locked_image(io, "parent").await;
    let base = pattern(7, 4 * OBJ as usize);
    parent.write(0, base.clone()).await.unwrap();
    let snap = parent
        .snap_create("base", SnapshotNamespace::User)
        .await
        .unwrap();
    parent.write(0, pattern(9, OBJ as usize)).await.unwrap(); // after the snapshot
    let mut model = Model(vec![0; SIZE as usize]);
    model.0[..base.len()].copy_from_slice(&base);

    let mut child_spec = spec("child");
    child_spec.parent = Some(CloneOf {
        parent: ParentImageSpec {
            pool_id: io.pool_id(),
            pool_namespace: io.namespace().to_string(),
            image_id: parent.id().to_string(),
            snap_id: snap,
        },
        overlap: SIZE,
    });
    let id = create_non_primary(io, &child_spec).await.unwrap();
    assert_eq!(
        create_non_primary(io, &child_spec).await.unwrap(),
        id,
        "a rerun finishes the same clone"
    );
    let mut child = Image::open(io.clone(), &id).await.unwrap();
    child.acquire_lock().await.unwrap();
    assert_eq!(child.head_overlap(), SIZE);
    assert_eq!(children(io, &parent, snap).await, vec![id.clone()]);
    assert_eq!(
        whole(&child, None).await,
        model.0,
        "reads through the parent"
    );

    // Copy-up around a small write; a whole-object discard inside the overlap zeroes.
    let ops = [
        IoOp::Write {
            offset: OBJ + 10,
            data: pattern(1, 20),
        },
        IoOp::Discard {
            offset: 2 * OBJ,
            length: OBJ,
        },
    ];
    child.apply(&ops, 4).await.unwrap();
    ops.iter().for_each(|op| model.apply(op));
    assert_eq!(
        whole(&child, None).await,
        model.0,
        "copy-up keeps the parent's bytes"
    );

    // A snapshot of the clone keeps reading what it saw, before and after later writes.
    let before = model.0.clone();
    let csnap = child
        .snap_create("c1", SnapshotNamespace::User)
        .await
        .unwrap();
    let w = IoOp::Write {
        offset: 3 * OBJ + 1,
        data: pattern(2, 5),
    };
    child.apply(std::slice::from_ref(&w), 1).await.unwrap();
    model.apply(&w);
    assert_eq!(
        whole(&child, Some(csnap)).await,
        before,
        "the clone's snapshot"
    );
    assert_eq!(whole(&child, None).await, model.0);

    // A shrink lowers the overlap: growing again reads zeros there.
    child.resize(OBJ + OBJ / 2).await.unwrap();
    child.resize(SIZE).await.unwrap();
    model.0[(OBJ + OBJ / 2) as usize..].fill(0);
    assert_eq!(child.head_overlap(), OBJ + OBJ / 2);
    assert_eq!(whole(&child, None).await, model.0, "after shrink and grow");

    // Flatten: same bytes, no parent at HEAD; the snapshot still reads the parent, so the
    // child stays recorded unless deep-flatten freed the snapshots too.
    child.flatten().await.unwrap();
    assert_eq!(child.head_overlap(), 0);
    assert_eq!(whole(&child, None).await, model.0, "after flatten");
    assert_eq!(
        whole(&child, Some(csnap)).await,
        before,
        "snapshot after flatten"
    );
    assert!(
        children(io, &parent, snap).await.is_empty(),
        "deep-flatten detaches"
    );
    child.flatten().await.unwrap(); // again: nothing to do

    // Another clone, removed: its parent snapshot forgets it.
    let mut other = spec("child2");
    other.parent = child_spec.parent.clone();
    let id2 = create_non_primary(io, &other).await.unwrap();
    assert_eq!(children(io, &parent, snap).await, vec![id2.clone()]);
    parent.refresh().await.unwrap();
    parent
        .snap_remove("base", &SnapshotNamespace::User)
        .await
        .unwrap();
    let trashed = parent
        .snapshots()
        .iter()
        .find(|s| s.id == snap)
        .cloned()
        .unwrap();
    assert!(
        matches!(trashed.snapshot_namespace, SnapshotNamespace::Trash { ref original_name, .. } if original_name == "base"),
        "a snapshot clones read goes to the trash: {trashed:?}"
    );
    remove_image(io, &id2).await.unwrap();
    parent.refresh().await.unwrap();
    assert!(
        parent.snapshots().iter().all(|s| s.id != snap),
        "the last clone's removal purges the trashed snapshot"
    );
    remove_image(io, &id).await.unwrap();
    remove_image(io, parent.id()).await.unwrap();
}
