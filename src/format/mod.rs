//! Ceph's versioned binary encoding and the types rbd-relay reads and writes. Pure: bytes in,
//! values out; no I/O, no async.
