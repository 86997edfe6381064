//! Retry delays: exponential from `base` by `factor` up to `cap`, with jitter so that many
//! images retrying after one cluster fault do not retry in lockstep. One per peer or image,
//! `reset()` on progress.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    factor: u32,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(base: Duration, factor: u32, cap: Duration) -> Self {
        Backoff {
            base,
            factor: factor.max(1),
            cap,
            next: base,
        }
    }

    /// The delay before the next attempt: the current step with up to ±25% jitter.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * self.factor).min(self.cap);
        let quarter = step / 4;
        let jitter = quarter.mul_f64(rand::random::<f64>() * 2.0);
        (step - quarter + jitter).min(self.cap)
    }

    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), 2, Duration::from_secs(1));
        let delays: Vec<Duration> = (0..6).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(75) && delays[0] <= Duration::from_millis(125));
        assert!(delays[5] <= Duration::from_secs(1) && delays[5] >= Duration::from_millis(750));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }
}
