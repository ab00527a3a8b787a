//! How soon a failed watch is tried again: the cluster view's streams and the NacosBinding watcher.
//!
//! The cap is low on purpose. While a watch is down its stream is unsynced, and unsynced means no
//! evidence, so no removals at all: stale instances stay registered until the watch is back, and
//! every second of backoff past the fault is a second of them. A failing list (refused, unreachable)
//! costs the API server little, so retrying every few seconds is cheap; kube's `DefaultBackoff`
//! (0.8 s doubling up to 30 s) left stale instances for over a minute after RBAC was restored.
//!
//! The backoff starts over once a watch has run `QUIET` without error, not on its first good item:
//! a watch whose list succeeds and whose watch then fails at once would otherwise relist every
//! quarter second, and a full list is not cheap.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// The first retry comes after about this long.
pub const FIRST: Duration = Duration::from_millis(250);
/// No retry waits longer than this.
pub const CAP: Duration = Duration::from_secs(5);
/// A watch that ran this long without error starts the backoff over.
pub const QUIET: Duration = Duration::from_secs(30);
/// Each delay is shortened by up to this fraction, so streams that failed together retry apart.
const JITTER: f64 = 0.25;

/// Exponential backoff: `FIRST`, doubling, at most `CAP`, with jitter; reset after a `QUIET` run.
#[derive(Debug, Clone, Default)]
pub struct RetryBackoff {
    /// Failures since the last reset.
    attempt: u32,
    /// When the last delay ended, i.e. when the attempt that just failed started.
    retry_at: Option<Instant>,
}

impl RetryBackoff {
    /// The delay before the next attempt, the current one having failed at `now`; `unit` in [0, 1)
    /// picks the jitter (0: the full delay).
    pub fn next_delay(&mut self, now: Instant, unit: f64) -> Duration {
        let ran = self
            .retry_at
            .map(|at| now.saturating_duration_since(at))
            .unwrap_or_default();
        if ran >= QUIET {
            self.attempt = 0;
        }
        let base = FIRST.saturating_mul(1u32 << self.attempt.min(16)).min(CAP);
        self.attempt = self.attempt.saturating_add(1);
        let delay = base.mul_f64(1.0 - JITTER * unit.clamp(0.0, 1.0));
        self.retry_at = Some(now + delay);
        delay
    }
}

/// A number in [0, 1) for the jitter. `RandomState` is seeded randomly per thread and changes with
/// every call: random enough to spread retries, without a dependency.
pub fn jitter_unit() -> f64 {
    let hash = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// For `WatchStreamExt::backoff` (kube's `StreamBackoff`).
impl Iterator for RetryBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_delay(Instant::now(), jitter_unit()))
    }
}

impl kube::runtime::utils::Backoff for RetryBackoff {
    /// Deliberately keeps the state: `StreamBackoff` calls this on every `Ok` item, and a watcher
    /// yields `Ok(Init)` before each list attempt, so a refused list would never back off. The
    /// `QUIET` rule in `next_delay` resets instead.
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Delays of back-to-back failures (each attempt fails as soon as its delay is over).
    fn failing(
        b: &mut RetryBackoff,
        start: Instant,
        n: usize,
        unit: f64,
    ) -> (Vec<Duration>, Instant) {
        let mut now = start;
        let mut out = Vec::new();
        for _ in 0..n {
            let d = b.next_delay(now, unit);
            now += d;
            out.push(d);
        }
        (out, now)
    }

    #[test]
    fn starts_at_a_quarter_second_doubles_and_caps_at_five_seconds() {
        let (delays, _) = failing(&mut RetryBackoff::default(), Instant::now(), 8, 0.0);
        assert_eq!(
            delays,
            [
                ms(250),
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(5000),
                ms(5000),
                ms(5000)
            ]
        );
    }

    #[test]
    fn jitter_only_shortens_and_never_passes_the_cap() {
        for unit in [0.0, 0.3, 0.999_999, 1.0, 7.0, -1.0] {
            let (delays, _) = failing(&mut RetryBackoff::default(), Instant::now(), 40, unit);
            assert!(
                delays[0] <= FIRST && delays[0] >= FIRST.mul_f64(0.75),
                "{unit}: {delays:?}"
            );
            assert!(
                delays.iter().all(|d| *d <= CAP && *d >= ms(187)),
                "{unit}: {delays:?}"
            );
        }
        let (jittered, _) = failing(&mut RetryBackoff::default(), Instant::now(), 1, 0.5);
        assert_eq!(jittered, [Duration::from_micros(218_750)]);
    }

    #[test]
    fn a_long_outage_keeps_retrying_every_five_seconds() {
        // Ten minutes of refused lists: the cap is reached within 8 s and kept.
        let start = Instant::now();
        let (delays, end) = failing(&mut RetryBackoff::default(), start, 125, 0.0);
        assert_eq!(delays[..5].iter().sum::<Duration>(), ms(7750));
        assert!(delays[5..].iter().all(|d| *d == CAP));
        assert_eq!(end - start, ms(7750) + CAP * 120);
    }

    #[test]
    fn a_quiet_run_starts_over_a_short_one_does_not() {
        let mut b = RetryBackoff::default();
        let (_, now) = failing(&mut b, Instant::now(), 5, 0.0);
        // The watch ran 29 s before failing: still flapping, keep backing off.
        assert_eq!(b.next_delay(now + Duration::from_secs(29), 0.0), CAP);
        // It ran 30 s: a new fault, retried quickly.
        let now = now + Duration::from_secs(29) + CAP + QUIET;
        assert_eq!(b.next_delay(now, 0.0), FIRST);
        assert_eq!(b.next_delay(now + FIRST, 0.0), ms(500));
    }

    #[test]
    fn stream_backoff_resets_do_not_undo_the_backoff() {
        let mut b = RetryBackoff::default();
        let first = b.next().unwrap();
        b.reset();
        let second = b.next().unwrap();
        assert!(first <= FIRST);
        assert!(second > FIRST && second <= ms(500), "{second:?}");
    }

    #[test]
    fn jitter_units_are_in_range_and_vary() {
        let units: Vec<f64> = (0..64).map(|_| jitter_unit()).collect();
        assert!(units.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(units.windows(2).any(|w| w[0] != w[1]));
    }
}
