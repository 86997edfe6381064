//! An operator's hold on one image replayer: rbd-mirror's per-image `stop`, `start`,
//! `restart` and `flush` admin commands. Shared by the replayer (which obeys it between
//! and inside its cycles) and the admin socket (which finds it in the registry).
//!
//! ```text
//!  stop    ──► held; the running cycle is cancelled (finish the batch, commit, release the
//!              lock) ──► the replayer shows `stopped` and waits, ignoring image updates,
//!              until start (or shutdown); stop returns once it waits
//!  start   ──► not held ──► a new cycle (STARTING_REPLAY)
//!  restart ──► not held; the running cycle is cancelled ──► a new cycle
//!  flush   ──► while replaying: the replay loop stores the commit position of everything
//!              applied and answers; a cycle that ends first answers with an error
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;

/// How long `stop` and `flush` wait for the replayer before giving up.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

type FlushReply = oneshot::Sender<Result<(), String>>;

pub struct Control {
    /// `true` from an operator's stop until a start.
    held: watch::Sender<bool>,
    /// `true` while the replayer waits in its hold (what `stop` waits for).
    waiting: watch::Sender<bool>,
    /// The running cycle's token: stop and restart cancel it.
    cycle: Mutex<CancellationToken>,
    flushes: Mutex<Vec<FlushReply>>,
    flush_wake: Notify,
}

impl Control {
    /// `held`: starts stopped (its pool or the whole daemon was stopped by an operator).
    pub fn new(held: bool) -> Self {
        Control {
            held: watch::Sender::new(held),
            waiting: watch::Sender::new(false),
            cycle: Mutex::new(CancellationToken::new()),
            flushes: Mutex::new(Vec::new()),
            flush_wake: Notify::new(),
        }
    }

    // ---- the operator's side ----

    /// Stops the replayer and holds it; returns once it is stopped.
    pub async fn stop(&self) -> Result<(), String> {
        self.held.send_replace(true);
        self.cancel_cycle();
        let mut waiting = self.waiting.subscribe();
        match tokio::time::timeout(ANSWER_WITHIN, waiting.wait_for(|w| *w)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(format!("not stopped within {ANSWER_WITHIN:?}")),
        }
    }

    pub fn start(&self) {
        self.held.send_replace(false);
    }

    pub fn restart(&self) {
        self.held.send_replace(false);
        self.cancel_cycle();
    }

    /// Returns once the commit position of everything applied is stored on the primary.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.lock_flushes().push(tx);
        self.flush_wake.notify_one();
        match tokio::time::timeout(ANSWER_WITHIN, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err("the image replayer went away".into()),
            Err(_) => Err(format!("not flushed within {ANSWER_WITHIN:?}")),
        }
    }

    // ---- the replayer's side ----

    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits while held; `false` when `cancel` fired meanwhile (shut down).
    pub async fn released(&self, cancel: &CancellationToken) -> bool {
        let mut held = self.held.subscribe();
        self.waiting.send_replace(true);
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = held.wait_for(|h| !*h) => {}
        }
        self.waiting.send_replace(false);
        !cancel.is_cancelled()
    }

    /// The token for a new cycle (a child of `parent`); already cancelled if a stop raced
    /// ahead of it. Flushes still pending from the last cycle fail.
    pub fn cycle(&self, parent: &CancellationToken) -> CancellationToken {
        let token = parent.child_token();
        *self.cycle.lock().unwrap_or_else(PoisonError::into_inner) = token.clone();
        if self.is_held() {
            token.cancel();
        }
        self.answer_flushes(Err("the image is not replaying".into()));
        token
    }

    /// Resolves when a flush was asked for. Cancel safe (a `Notify` keeps the request).
    pub async fn flush_requested(&self) {
        self.flush_wake.notified().await
    }

    /// Answers every pending flush.
    pub fn answer_flushes(&self, answer: Result<(), String>) {
        for reply in self.lock_flushes().drain(..) {
            let _ = reply.send(answer.clone());
        }
    }

    fn cancel_cycle(&self) {
        self.cycle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel();
    }

    fn lock_flushes(&self) -> std::sync::MutexGuard<'_, Vec<FlushReply>> {
        self.flushes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn stop_cancels_the_cycle_and_holds_until_start() {
        let control = Arc::new(Control::new(false));
        let root = CancellationToken::new();
        let cycle = control.cycle(&root);
        let c = control.clone();
        let stop = tokio::spawn(async move { c.stop().await });
        cycle.cancelled().await;
        assert!(control.is_held());
        let c = control.clone();
        let r = root.clone();
        let held = tokio::spawn(async move { c.released(&r).await });
        stop.await.unwrap().unwrap();
        // A cycle begun while held is cancelled from the start.
        assert!(control.cycle(&root).is_cancelled());
        control.start();
        assert!(held.await.unwrap());
        assert!(!control.cycle(&root).is_cancelled());
    }

    #[tokio::test]
    async fn shutdown_ends_the_hold_and_restart_does_not_hold() {
        let control = Control::new(true);
        let root = CancellationToken::new();
        root.cancel();
        assert!(!control.released(&root).await);
        let control = Control::new(false);
        let root = CancellationToken::new();
        let cycle = control.cycle(&root);
        control.restart();
        assert!(cycle.is_cancelled() && !control.is_held());
    }

    #[tokio::test]
    async fn a_flush_is_answered_by_the_replayer_or_failed_by_a_new_cycle() {
        let control = Arc::new(Control::new(false));
        let root = CancellationToken::new();
        let c = control.clone();
        let flush = tokio::spawn(async move { c.flush().await });
        control.flush_requested().await;
        tokio::task::yield_now().await;
        control.answer_flushes(Ok(()));
        assert_eq!(flush.await.unwrap(), Ok(()));
        let c = control.clone();
        let flush = tokio::spawn(async move { c.flush().await });
        control.flush_requested().await;
        control.cycle(&root);
        assert!(flush.await.unwrap().is_err());
    }
}
