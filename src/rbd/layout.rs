//! Where image bytes live: image extent → data object extents (spec §5.1). Without
//! STRIPINGV2 (or with the default stripe unit = object size, count 1) byte `off` is in
//! object `off >> order` at `off & (object_size - 1)`. Fancy striping (count > 1) is
//! refused when an image is opened, so no write can ever go to the wrong object; it
//! replaces librbd's use of `Striper::file_to_extents` for the default layout.

/// One piece of an image extent inside one data object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectExtent {
    pub object_no: u64,
    /// Offset inside the object.
    pub offset: u64,
    pub length: u64,
    /// Offset of this piece inside the image extent (for slicing the caller's buffer).
    pub buffer_offset: u64,
}

impl ObjectExtent {
    /// Whether the piece covers its whole object.
    pub fn is_whole(&self, object_size: u64) -> bool {
        self.offset == 0 && self.length == object_size
    }

    /// Whether the piece runs to the end of its object.
    pub fn reaches_end(&self, object_size: u64) -> bool {
        self.offset + self.length == object_size
    }
}

/// Splits `[offset, offset + length)` at object boundaries, in image order.
pub fn object_extents(order: u8, offset: u64, length: u64) -> impl Iterator<Item = ObjectExtent> {
    let object_size = 1u64 << order;
    let end = offset.saturating_add(length);
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let object_no = at >> order;
        let in_object = at & (object_size - 1);
        let len = (object_size - in_object).min(end - at);
        let piece = ObjectExtent {
            object_no,
            offset: in_object,
            length: len,
            buffer_offset: at - offset,
        };
        at += len;
        Some(piece)
    })
}

/// Objects needed to hold `size` bytes.
pub fn object_count(order: u8, size: u64) -> u64 {
    size.div_ceil(1u64 << order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_at_object_boundaries() {
        let v: Vec<_> = object_extents(12, 4000, 5000).collect();
        assert_eq!(
            v,
            vec![
                ObjectExtent {
                    object_no: 0,
                    offset: 4000,
                    length: 96,
                    buffer_offset: 0
                },
                ObjectExtent {
                    object_no: 1,
                    offset: 0,
                    length: 4096,
                    buffer_offset: 96
                },
                ObjectExtent {
                    object_no: 2,
                    offset: 0,
                    length: 808,
                    buffer_offset: 4192
                },
            ]
        );
        assert!(v[1].is_whole(4096) && v[0].reaches_end(4096) && !v[2].reaches_end(4096));
        assert_eq!(object_extents(12, 10, 0).count(), 0);
        assert_eq!(object_count(22, 0), 0);
        assert_eq!(object_count(22, (4 << 20) + 1), 2);
    }

    proptest! {
        #[test]
        fn pieces_tile_the_extent(order in 9u8..25, offset in 0u64..1 << 30, length in 0u64..1 << 26) {
            let mut next = offset;
            for p in object_extents(order, offset, length) {
                prop_assert_eq!((p.object_no << order) + p.offset, next);
                prop_assert_eq!(p.buffer_offset, next - offset);
                prop_assert!(p.length > 0 && p.offset + p.length <= 1 << order);
                next += p.length;
            }
            prop_assert_eq!(next, offset + length);
        }
    }
}
