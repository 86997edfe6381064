//! Comparing two images byte for byte: size, snapshot names in order, then the head and
//! each snapshot's data. What the demo, the tests and `rbd-relay check-prefix` call equal;
//! the two images may live on different backends (a reference on the embedded one).

use super::{Image, RbdError};
use crate::rados::IoCtx;

/// `Ok(Err(why))` at the first difference: the size, the snapshot names, or the first
/// differing byte (its offset in the head or in a named snapshot).
pub async fn compare<A: IoCtx, B: IoCtx>(
    a: &Image<A>,
    b: &Image<B>,
) -> Result<Result<(), String>, RbdError> {
    if a.size() != b.size() {
        return Ok(Err(format!("size {} != {}", a.size(), b.size())));
    }
    let names_a: Vec<&str> = a.snapshots().iter().map(|s| s.name.as_str()).collect();
    let names_b: Vec<&str> = b.snapshots().iter().map(|s| s.name.as_str()).collect();
    if names_a != names_b {
        return Ok(Err(format!("snapshots {names_a:?} != {names_b:?}")));
    }
    let mut views = vec![(None, None, a.size(), "head".to_string())];
    for (sa, sb) in a.snapshots().iter().zip(b.snapshots()) {
        if sa.image_size != sb.image_size {
            return Ok(Err(format!(
                "snapshot {}: size {} != {}",
                sa.name, sa.image_size, sb.image_size
            )));
        }
        views.push((
            Some(sa.id),
            Some(sb.id),
            sa.image_size,
            format!("snapshot {}", sa.name),
        ));
    }
    let chunk = 1u64 << a.order();
    for (snap_a, snap_b, size, what) in views {
        let mut off = 0;
        while off < size {
            let len = chunk.min(size - off);
            let (x, y) = (
                a.read(off, len, snap_a).await?,
                b.read(off, len, snap_b).await?,
            );
            if let Some(i) = x.iter().zip(y.iter()).position(|(p, q)| p != q) {
                let at = off + i as u64;
                return Ok(Err(format!(
                    "{what}: first difference at byte offset {at} ({:#04x} != {:#04x})",
                    x[i], y[i]
                )));
            }
            off += len;
        }
    }
    Ok(Ok(()))
}
