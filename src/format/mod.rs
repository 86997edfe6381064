//! Ceph's versioned binary encoding and the types rbd-relay reads and writes. Pure: bytes in,
//! values out; no I/O, no async, no dependency on the rest of the crate.
//!
//! - [`codec`]: `Decoder`/`Encoder`, the `Encode`/`Decode` traits, `DecodeError`, `UTime`.
//! - [`entity`]: `entity_name_t`, `entity_addr_t`, `entity_inst_t`.
pub mod client_data;
pub mod codec;
pub mod entity;
pub mod entry;
pub mod event;
pub mod image;
pub mod journal;
pub mod lock;
pub mod mirror;
pub mod notify;
pub mod object_map;

pub use codec::{Decode, DecodeError, Decoder, Encode, Encoder, UTime};
