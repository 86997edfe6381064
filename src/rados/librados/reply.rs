//! Decoding librados' notify reply buffer into [`NotifyReply`].
//!
//! The buffer is Ceph's encoding of `map<pair<u64 gid, u64 cookie>, bufferlist> acks`
//! followed by `set<pair<u64 gid, u64 cookie>> timeouts` (little-endian, u32 counts and
//! lengths). A malformed buffer is `EBADMSG`, never a panic.

use bytes::Bytes;

use crate::rados::{Errno, NotifyAck, NotifyReply};

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Errno> {
        if self.0.len() < n {
            return Err(Errno::EBADMSG);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| Errno::EBADMSG)?,
        ))
    }
    fn u64(&mut self) -> Result<u64, Errno> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| Errno::EBADMSG)?,
        ))
    }
}

/// An empty buffer (no watchers, nothing encoded) is an empty reply.
pub(super) fn decode_notify_reply(buf: &[u8]) -> Result<NotifyReply, Errno> {
    if buf.is_empty() {
        return Ok(NotifyReply::default());
    }
    let mut c = Cursor(buf);
    let mut reply = NotifyReply::default();
    for _ in 0..c.u32()? {
        let (notifier_id, cookie) = (c.u64()?, c.u64()?);
        let len = c.u32()? as usize;
        let payload = Bytes::copy_from_slice(c.take(len)?);
        reply.acks.push(NotifyAck {
            notifier_id,
            cookie,
            payload,
        });
    }
    for _ in 0..c.u32()? {
        reply.timeouts.push((c.u64()?, c.u64()?));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(acks: &[(u64, u64, &[u8])], timeouts: &[(u64, u64)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(acks.len() as u32).to_le_bytes());
        for (gid, cookie, payload) in acks {
            b.extend_from_slice(&gid.to_le_bytes());
            b.extend_from_slice(&cookie.to_le_bytes());
            b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            b.extend_from_slice(payload);
        }
        b.extend_from_slice(&(timeouts.len() as u32).to_le_bytes());
        for (gid, cookie) in timeouts {
            b.extend_from_slice(&gid.to_le_bytes());
            b.extend_from_slice(&cookie.to_le_bytes());
        }
        b
    }

    #[test]
    fn decodes_acks_and_timeouts() {
        let buf = encode(&[(4100, 77, b"pong"), (4200, 78, b"")], &[(4300, 79)]);
        let r = decode_notify_reply(&buf).unwrap();
        assert_eq!(r.acks.len(), 2);
        assert_eq!(
            r.acks[0],
            NotifyAck {
                notifier_id: 4100,
                cookie: 77,
                payload: Bytes::from_static(b"pong")
            }
        );
        assert_eq!(r.acks[1].payload, Bytes::new());
        assert_eq!(r.timeouts, vec![(4300, 79)]);
    }

    #[test]
    fn empty_buffer_is_empty_reply() {
        assert_eq!(decode_notify_reply(&[]).unwrap(), NotifyReply::default());
    }

    #[test]
    fn truncation_is_ebadmsg_at_every_cut() {
        let buf = encode(&[(1, 2, b"abc")], &[(3, 4)]);
        for cut in 1..buf.len() {
            assert_eq!(
                decode_notify_reply(&buf[..cut]),
                Err(Errno::EBADMSG),
                "cut at {cut}"
            );
        }
    }
}
