//! What wakes a parked image replayer: a notification on either image's journal header.
//! Promotion, demotion and `rbd mirror image resync` all change a journal header (a new
//! tag, the image client's data) and notify it, so a parked replayer looks again at once
//! instead of on upstream's 30 s image state check.

use tokio::sync::watch;

use super::PoolCtx;
use crate::cls;
use crate::format::journal::header_oid;
use crate::rados::{AckMode, IoCtx, Watch};
use crate::rbd::Image;

/// Armed for one wait: the replayer re-arms after each wake-up (the local image may have
/// changed, a watch may have broken).
pub struct Wakers<I> {
    watches: Vec<(I, Watch)>,
}

impl<I: IoCtx> Wakers<I> {
    /// Watches the local image's journal header (when there is a local image) and, if
    /// `remote`, the remote's. A watch that cannot be set is left out: the pool watcher's
    /// kick still reaches the replayer.
    pub async fn arm(
        ctx: &PoolCtx<I>,
        global_id: &str,
        remote_image_id: &str,
        remote: bool,
    ) -> Self {
        let mut targets = Vec::new();
        if let Ok(id) = cls::mirror::image_get_image_id(&ctx.local_io, global_id).await {
            targets.push((ctx.local_io.clone(), header_oid(&id)));
        }
        if remote || targets.is_empty() {
            targets.push((ctx.remote_io.clone(), header_oid(remote_image_id)));
        }
        let mut watches = Vec::new();
        for (io, oid) in targets {
            // Bounded: a remote cluster that is down must not hold up the local look.
            match tokio::time::timeout(super::REMOTE_GRACE, io.watch_with(&oid, AckMode::Auto))
                .await
            {
                Ok(Ok(w)) => watches.push((io, w)),
                Ok(Err(e)) => tracing::debug!(%oid, %e, "watching a parked image's journal"),
                Err(_) => tracing::debug!(%oid, "watching a parked image's journal: timed out"),
            }
        }
        Wakers { watches }
    }

    /// Resolves on the next notification (or watch error) on any armed header; never
    /// resolves with nothing armed.
    pub async fn changed(&mut self) {
        if self.watches.is_empty() {
            return std::future::pending().await;
        }
        let nexts = self.watches.iter_mut().map(|(_, w)| Box::pin(w.next()));
        futures::future::select_all(nexts).await;
    }

    pub async fn disarm(self) {
        for (io, w) in self.watches {
            let _ = tokio::time::timeout(super::REMOTE_GRACE, io.unwatch(w.cookie)).await;
        }
    }
}

/// Disarms whatever is armed (nothing, outside a parked wait).
pub async fn disarm<I: IoCtx>(wakers: &mut Option<Wakers<I>>) {
    if let Some(w) = wakers.take() {
        w.disarm().await;
    }
}

/// Looks for `rbd mirror image resync` while replaying (librbd records the request in its
/// client's data and notifies the local journal's header). The notifications come through
/// the local image's lock, which watches that header already (for a promotion); a broken
/// watch loses the lock, which stops the replay by itself.
pub struct ResyncWatch<I> {
    io: I,
    image_id: String,
    notified: watch::Receiver<u64>,
}

impl<I: IoCtx> ResyncWatch<I> {
    pub fn arm(local: &Image<I>) -> Self {
        ResyncWatch {
            io: local.io().clone(),
            image_id: local.id().to_string(),
            notified: local.journal_notifications(),
        }
    }

    /// Resolves when a resync was requested, or when its client could not be read (the
    /// caller looks again). Cancel safe.
    pub async fn requested(&mut self) {
        loop {
            if self.notified.changed().await.is_err() {
                return std::future::pending().await;
            }
            match super::bootstrap::image_client(&self.io, &self.image_id).await {
                Ok((_, true)) | Err(_) => return,
                Ok((_, false)) => {}
            }
        }
    }
}
