//! Ceph's versioned binary encoding and the types rbd-relay reads and writes. Pure: bytes in,
//! values out; no I/O, no async, no dependency on the rest of the crate (the memory backend
//! implements its cls methods over these types; the cls client sends the same inputs).
//!
//! - [`codec`]: `Decoder`/`Encoder`, `Encode`/`Decode`, `DecodeError`, `UTime`, `ListInput`.
//! - [`entity`]: `entity_name_t`, `entity_addr_t`, `entity_inst_t`.
//! - [`mirror`]: `rbd_mirroring` records (peers, images, statuses, image map) and
//!   `rbd.mirror_*` inputs/outputs.
//! - [`image`]: image object names and header keys, snapshot namespaces and records, parent
//!   link, `rbd.*` image method inputs/outputs.
//! - [`object_map`]: the object map (`BitVector<2>`).
//! - [`journal`]: cls_journal positions, clients, tags, header keys, object naming, splay
//!   arithmetic and `journal.*` inputs.
//! - [`entry`]: journal record framing, CRC, and the data-object scanner.
//! - [`event`]: librbd's `EventEntry` (every journal event type).
//! - [`client_data`]: librbd's `ClientData` and `TagData` inside journal clients and tags.
//! - [`lock`]: cls_lock inputs and replies.
//! - [`notify`]: watch/notify payloads on `rbd_mirroring` and on image headers.
//!
//! Marks in docs: \[SRC\] = layout read from Ceph's sources only; everything else is checked
//! against bytes captured from Ceph 16.2.15 (the spec's Appendix A and inline examples).
pub mod client_data;
pub mod codec;
pub mod entity;
pub mod entry;
pub mod event;
pub mod image;
pub mod journal;
pub mod lock;
mod macros;
pub mod mirror;
pub mod notify;
pub mod object_map;
#[cfg(test)]
mod testutil;

pub use codec::{Decode, DecodeError, Decoder, Encode, Encoder, UTime};
