//! Pacing of reconnect attempts: exponential back-off with jitter, so that a fleet of agents
//! that lost the control plane together (a server restart, a cell tower) does not dial back in
//! lockstep, and a long outage costs a battery-powered box one attempt every half minute.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct ReconnectBackoff {
    base: Duration,
    max: Duration,
    next: Duration,
}

impl Default for ReconnectBackoff {
    fn default() -> Self {
        ReconnectBackoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl ReconnectBackoff {
    pub fn new(base: Duration, max: Duration) -> ReconnectBackoff {
        ReconnectBackoff {
            base,
            max,
            next: base,
        }
    }

    /// A link was established: the next failure starts over from the base delay.
    pub fn reset(&mut self) {
        self.next = self.base;
    }

    /// The wait before the next attempt: somewhere in the upper half of the current step
    /// (`unit` in [0, 1) says where), then the step doubles up to the maximum.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// `next_delay` with a random position in the window.
    pub fn next_jittered(&mut self) -> Duration {
        self.next_delay(random_unit())
    }
}

/// A number in [0, 1) from the standard library's per-instance random hash keys: enough to
/// spread reconnects, without a random-number crate.
fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_within_the_jitter_window_and_resets() {
        let mut b = ReconnectBackoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let lows: Vec<u64> = (0..6)
            .map(|_| b.next_delay(0.0).as_millis() as u64)
            .collect();
        assert_eq!(lows, vec![250, 500, 1000, 2000, 2000, 2000]);
        let mut b = ReconnectBackoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let highs: Vec<u64> = (0..5)
            .map(|_| b.next_delay(1.0).as_millis() as u64)
            .collect();
        assert_eq!(highs, vec![500, 1000, 2000, 4000, 4000]);
        b.reset();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_stays_in_the_window_and_varies() {
        let samples: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(samples.iter().all(|u| (0.0..1.0).contains(u)));
        let first = samples[0];
        assert!(samples.iter().any(|u| *u != first), "jitter must vary");
        let mut b = ReconnectBackoff::default();
        for _ in 0..20 {
            let d = b.next_jittered();
            assert!(d <= Duration::from_secs(30) && d >= Duration::from_millis(250));
        }
    }
}
