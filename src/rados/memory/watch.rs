//! Watch/notify of the embedded backend, with RADOS' semantics: every watch of an object
//! (any client, the notifier's own included) receives each notify; a notify completes when
//! all watchers acked or its timeout passed, and reports the acks with their payloads and
//! the watchers that timed out. A watch that goes away while a notify waits for it (unwatch,
//! disconnect, blocklist) is dropped from that notify, neither acked nor timed out, as the
//! OSD's `Notify::complete_watcher_remove` does (measured on 16.2.15: the notify completes
//! at once). A broken watch reports an error on its stream and stops receiving;
//! `watch_check` then fails with that error. A watch whose stream was dropped is acked by
//! the backend while its client lives (as librados does); once the client is gone too (a
//! killed process) the watch expires at the next notify, neither acked nor timed out,
//! which is where the OSD ends up once `osd_client_watch_timeout` passes.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::cls::Caller;
use crate::rados::{AckMode, Errno, Notification, NotifyAck, NotifyReply, Watch, WatchSender};

/// Identifies an object across pools and namespaces.
pub(super) type ObjKey = (i64, String, String);

struct WatchEntry {
    key: ObjKey,
    caller: Caller,
    sender: WatchSender,
    /// The watching client's liveness (see `MemoryRados::alive`).
    client: Weak<()>,
    /// Set once the watch broke; it then receives nothing.
    error: Option<Errno>,
}

struct PendingNotify {
    waiting: HashSet<(u64, u64)>,
    acks: Vec<NotifyAck>,
    done: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct State {
    watches: HashMap<u64, WatchEntry>,
    notifies: HashMap<u64, PendingNotify>,
    next_id: u64,
}

#[derive(Default)]
pub(super) struct Watches {
    state: Mutex<State>,
}

impl State {
    /// Stops every pending notify from waiting for watch `cookie`; completes those that
    /// waited for nothing else.
    fn forget(&mut self, cookie: u64) {
        for n in self.notifies.values_mut() {
            n.waiting.retain(|(_, c)| *c != cookie);
            if n.waiting.is_empty()
                && let Some(done) = n.done.take()
            {
                let _ = done.send(());
            }
        }
    }
}

impl Watches {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn watch(
        &self,
        key: ObjKey,
        caller: Caller,
        client: Weak<()>,
        ack: AckMode,
    ) -> Watch {
        let mut st = self.lock();
        st.next_id += 1;
        let cookie = st.next_id;
        let (sender, watch) = Watch::channel(cookie, ack);
        st.watches.insert(
            cookie,
            WatchEntry {
                key,
                caller,
                sender,
                client,
                error: None,
            },
        );
        watch
    }

    /// `ENOENT` for an unknown cookie (librados would crash; we answer), and for a broken
    /// watch, which the OSD no longer knows (it is forgotten all the same).
    pub(super) fn unwatch(&self, gid: u64, cookie: u64) -> Result<(), Errno> {
        let mut st = self.lock();
        match st.watches.get(&cookie) {
            Some(w) if w.caller.gid == gid => {
                let broken = w.error.is_some();
                st.watches.remove(&cookie);
                st.forget(cookie);
                if broken { Err(Errno::ENOENT) } else { Ok(()) }
            }
            _ => Err(Errno::ENOENT),
        }
    }

    pub(super) fn check(&self, gid: u64, cookie: u64) -> Result<Duration, Errno> {
        let st = self.lock();
        match st.watches.get(&cookie) {
            Some(w) if w.caller.gid == gid => match w.error {
                Some(e) => Err(e),
                // In-process delivery is never behind: confirmed just now.
                None => Ok(Duration::ZERO),
            },
            _ => Err(Errno::ENOENT),
        }
    }

    /// The live watchers of an object (cls_rbd asks for them).
    pub(super) fn watchers(&self, key: &ObjKey) -> Vec<Caller> {
        let st = self.lock();
        st.watches
            .values()
            .filter(|w| &w.key == key && w.error.is_none())
            .map(|w| w.caller)
            .collect()
    }

    /// Breaks every watch of a client (a disconnect or a blocklist).
    pub(super) fn break_client(&self, gid: u64, errno: Errno) {
        self.break_where(|w| w.caller.gid == gid, errno);
    }

    /// Breaks every watch of an object that was just removed (the OSD cancels them and
    /// librados reports `ENOTCONN`).
    pub(super) fn break_object(&self, key: &ObjKey) {
        self.break_where(|w| &w.key == key, Errno::ENOTCONN);
    }

    fn break_where(&self, hit: impl Fn(&WatchEntry) -> bool, errno: Errno) {
        let mut st = self.lock();
        let mut broken = Vec::new();
        for (cookie, w) in st.watches.iter_mut() {
            if hit(w) && w.error.is_none() {
                w.error = Some(errno);
                w.sender.error(errno);
                broken.push(*cookie);
            }
        }
        for cookie in broken {
            st.forget(cookie);
        }
    }

    pub(super) async fn notify(
        &self,
        key: ObjKey,
        notifier: u64,
        payload: Bytes,
        timeout: Duration,
    ) -> NotifyReply {
        let (id, rx) = {
            let mut st = self.lock();
            st.next_id += 1;
            let id = st.next_id;
            for w in st.watches.values_mut() {
                let dead = w.sender.is_closed() && w.client.strong_count() == 0;
                if w.key == key && w.error.is_none() && dead {
                    w.error = Some(Errno::ENOTCONN);
                }
            }
            let (tx, rx) = oneshot::channel();
            let mut pending = PendingNotify {
                waiting: HashSet::new(),
                acks: Vec::new(),
                done: Some(tx),
            };
            for (cookie, w) in st
                .watches
                .iter()
                .filter(|(_, w)| w.key == key && w.error.is_none())
            {
                let n = Notification {
                    notify_id: id,
                    cookie: *cookie,
                    notifier_id: notifier,
                    payload: payload.clone(),
                };
                if w.sender.offer(n) {
                    pending.waiting.insert((w.caller.gid, *cookie));
                } else {
                    // The consumer is behind (or gone): the backend acks for it.
                    pending.acks.push(NotifyAck {
                        notifier_id: w.caller.gid,
                        cookie: *cookie,
                        payload: Bytes::new(),
                    });
                }
            }
            if pending.waiting.is_empty() {
                return NotifyReply {
                    acks: pending.acks,
                    timeouts: Vec::new(),
                };
            }
            st.notifies.insert(id, pending);
            (id, rx)
        };
        let _ = tokio::time::timeout(timeout, rx).await;
        let pending = self.lock().notifies.remove(&id);
        let Some(p) = pending else {
            return NotifyReply::default();
        };
        let mut timeouts: Vec<(u64, u64)> = p.waiting.into_iter().collect();
        timeouts.sort_unstable();
        NotifyReply {
            acks: p.acks,
            timeouts,
        }
    }

    pub(super) fn ack(
        &self,
        gid: u64,
        notify_id: u64,
        cookie: u64,
        reply: Bytes,
    ) -> Result<(), Errno> {
        let mut st = self.lock();
        let Some(p) = st.notifies.get_mut(&notify_id) else {
            return Ok(()); // late ack of a finished notify: harmless, as on Ceph
        };
        if p.waiting.remove(&(gid, cookie)) {
            p.acks.push(NotifyAck {
                notifier_id: gid,
                cookie,
                payload: reply,
            });
        }
        if p.waiting.is_empty()
            && let Some(done) = p.done.take()
        {
            let _ = done.send(());
        }
        Ok(())
    }
}
