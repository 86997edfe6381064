//! Typed calls to the Ceph object classes rbd-relay uses, over the [`rados`](crate::rados)
//! seam: `journal` (cls_journal on journal headers and data objects), `lock` (cls_lock, the
//! exclusive lock of image headers), `mirror` (cls_rbd's `rbd_mirroring` methods), `image`
//! (cls_rbd's image header methods) and `dir` (`rbd_directory` / `rbd_id.*`).
//!
//! Each call encodes its input with [`format`](crate::format), runs the method (a read op for
//! read-only methods, which return output; a write op for the rest) and decodes the reply.
//! Ceph's errno comes back untouched in [`ClsError::Rados`], so callers can match on
//! `ENOENT`, `EEXIST`, `ESTALE` ... exactly as Ceph defines them per method.

pub mod dir;
pub mod image;
pub mod journal;
pub mod lock;
pub mod mirror;

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::format::codec::ListInput;
use crate::format::{Decode, DecodeError, Encode};
use crate::rados::{Errno, IoCtx, RadosError, RadosOp, ReadReply, ReadResult};

#[derive(Debug, thiserror::Error)]
pub enum ClsError {
    #[error(transparent)]
    Rados(#[from] RadosError),
    #[error("{class}.{method} on {object}: undecodable reply: {source}")]
    Decode {
        class: &'static str,
        method: &'static str,
        object: String,
        source: DecodeError,
    },
}

impl ClsError {
    /// Ceph's errno, if the call failed in RADOS (not in decoding).
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ClsError::Rados(e) => Some(e.errno),
            ClsError::Decode { .. } => None,
        }
    }

    pub fn is(&self, errno: Errno) -> bool {
        self.errno() == Some(errno)
    }

    pub fn is_not_found(&self) -> bool {
        self.is(Errno::ENOENT)
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, ClsError::Rados(e) if e.is_transient())
    }

    /// Bounded label for metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ClsError::Rados(e) => e.code(),
            ClsError::Decode { .. } => "decode",
        }
    }
}

pub type ClsResult<T> = Result<T, ClsError>;

/// Runs a read-only method and decodes its whole output.
async fn read<I: IoCtx, T: Decode>(
    io: &I,
    oid: &str,
    class: &'static str,
    method: &'static str,
    input: Bytes,
) -> ClsResult<T> {
    let out = io.exec(oid, class, method, input).await?;
    decode_as(oid, class, method, out)
}

fn decode_as<T: Decode>(
    oid: &str,
    class: &'static str,
    method: &'static str,
    out: Bytes,
) -> ClsResult<T> {
    T::from_bytes(out).map_err(|source| ClsError::Decode {
        class,
        method,
        object: oid.to_string(),
        source,
    })
}

/// The outputs of a read op made only of method calls, one per call.
fn outputs<const N: usize>(
    oid: &str,
    methods: &[&'static str; N],
    reply: ReadReply,
) -> ClsResult<[Bytes; N]> {
    let data: Vec<Bytes> = reply
        .results
        .into_iter()
        .filter_map(|r| match r {
            ReadResult::Data(b) => Some(b),
            _ => None,
        })
        .collect();
    data.try_into()
        .map_err(|_| unexpected_reply(format!("{oid} {methods:?}")))
}

/// A reply without the results its op asked for: no OSD answers so.
fn unexpected_reply(what: String) -> ClsError {
    ClsError::Rados(RadosError::new(RadosOp::Exec, what, Errno::EIO))
}

/// Entries per call of a paged listing method, as `rbd` uses.
pub(super) const LIST_PAGE: u64 = 1024;

/// Every entry of a listing method that returns `map<string, V>` pages: asks again after the
/// last key while pages come back full.
async fn list_map<I: IoCtx, V: Decode>(
    io: &I,
    oid: &str,
    class: &'static str,
    method: &'static str,
) -> ClsResult<BTreeMap<String, V>> {
    list_rest(io, oid, class, method, BTreeMap::new(), true).await
}

/// The first page of a listing method, as a method input.
fn first_page() -> Bytes {
    enc(&ListInput {
        start_after: String::new(),
        max_return: LIST_PAGE,
    })
}

/// [`list_map`] after the pages already read into `all`; `more`: the last one came back
/// full (or none was read yet).
async fn list_rest<I: IoCtx, V: Decode>(
    io: &I,
    oid: &str,
    class: &'static str,
    method: &'static str,
    mut all: BTreeMap<String, V>,
    mut more: bool,
) -> ClsResult<BTreeMap<String, V>> {
    while more {
        let input = ListInput {
            start_after: all.keys().next_back().cloned().unwrap_or_default(),
            max_return: LIST_PAGE,
        };
        let page: BTreeMap<String, V> = read(io, oid, class, method, enc(&input)).await?;
        more = page.len() as u64 >= LIST_PAGE;
        all.extend(page);
    }
    Ok(all)
}

/// Runs a method with write rights.
async fn write<I: IoCtx>(
    io: &I,
    oid: &str,
    class: &'static str,
    method: &'static str,
    input: Bytes,
) -> ClsResult<()> {
    io.exec_write(oid, class, method, input).await?;
    Ok(())
}

/// The encoding of a value, as a method input.
fn enc<T: Encode + ?Sized>(v: &T) -> Bytes {
    v.to_bytes()
}
