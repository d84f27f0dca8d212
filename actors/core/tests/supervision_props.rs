//! Property tests of the supervisors' restart math (`daftka_core::supervision`).
//!
//! A reference model (count of failures at times `t` with `now - t < window`) is compared with
//! `RestartIntensity` over random policies and random non-decreasing failure times.

use std::time::Duration;

use daftka_core::supervision::{RestartDecision, RestartIntensity, RestartPolicy};
use proptest::prelude::*;

fn policy() -> impl Strategy<Value = RestartPolicy> {
    (0u32..8, 1u64..500, 0u64..50, 0u64..2_000).prop_map(|(max, window, base, cap)| RestartPolicy {
        max_restarts: max,
        window: Duration::from_millis(window),
        backoff_base: Duration::from_millis(base),
        backoff_max: Duration::from_millis(cap),
    })
}

/// Absolute failure times (ms) built from random gaps, so they are non-decreasing.
fn times() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(0u64..200, 1..60).prop_map(|gaps| {
        gaps.iter()
            .scan(0u64, |t, g| {
                *t += g;
                Some(*t)
            })
            .collect()
    })
}

/// Failures remembered at `now` by the reference model: all failures in `(now - window, now]`.
fn model_count(history: &[u64], now: u64, window: u64) -> usize {
    history.iter().filter(|&&t| now - t < window).count()
}

proptest! {
    // Every delay is at most backoff_max, and delays never decrease within a burst.
    #[test]
    fn delays_capped_and_monotonic_in_burst(p in policy(), ts in times()) {
        let mut intensity = RestartIntensity::new(p);
        let mut last: Option<Duration> = None;
        let mut prev_count = 0usize;
        for &t in &ts {
            let decision = intensity.on_failure(Duration::from_millis(t));
            let count = intensity.restarts_in_window();
            // A burst continues while nothing was forgotten: the count grew by exactly one.
            let same_burst = count == prev_count + 1;
            if let RestartDecision::Restart { delay } = decision {
                prop_assert!(delay <= p.backoff_max, "delay {:?} > max {:?}", delay, p.backoff_max);
                if let (true, Some(prev)) = (same_burst, last) {
                    prop_assert!(delay >= prev, "delay went down from {:?} to {:?}", prev, delay);
                }
                if count == 1 {
                    prop_assert_eq!(delay, p.backoff_base.min(p.backoff_max));
                }
                last = Some(delay);
            }
            prev_count = count;
        }
    }

    // Escalation happens exactly when the number of failures inside the window exceeds max_restarts.
    #[test]
    fn escalates_exactly_when_over_max(p in policy(), ts in times()) {
        let mut intensity = RestartIntensity::new(p);
        let window = u64::try_from(p.window.as_millis()).unwrap_or(u64::MAX);
        for (i, &t) in ts.iter().enumerate() {
            let decision = intensity.on_failure(Duration::from_millis(t));
            let expected = model_count(&ts[..=i], t, window);
            let escalated = decision == RestartDecision::Escalate;
            prop_assert_eq!(escalated, expected > p.max_restarts as usize,
                "failure #{} at {} ms: {} in window, max {}", i, t, expected, p.max_restarts);
        }
    }

    // After a quiet period of at least one window, a failure is restarted with the base delay.
    #[test]
    fn quiet_period_allows_restarts_again(p in policy(), ts in times(), extra in 0u64..1_000) {
        let mut intensity = RestartIntensity::new(p);
        for &t in &ts {
            intensity.on_failure(Duration::from_millis(t));
        }
        let last = ts.last().copied().unwrap_or(0);
        let quiet = u64::try_from(p.window.as_millis()).unwrap_or(u64::MAX) + extra;
        let decision = intensity.on_failure(Duration::from_millis(last + quiet));
        if p.max_restarts == 0 {
            prop_assert_eq!(decision, RestartDecision::Escalate);
        } else {
            prop_assert_eq!(
                decision,
                RestartDecision::Restart { delay: p.backoff_base.min(p.backoff_max) }
            );
            prop_assert_eq!(intensity.restarts_in_window(), 1);
        }
    }

    // Time going backwards never panics and never escalates below the limit.
    #[test]
    fn backwards_time_is_tolerated(p in policy(), ts in prop::collection::vec(0u64..10_000, 1..40)) {
        let mut intensity = RestartIntensity::new(p);
        for &t in &ts {
            let _ = intensity.on_failure(Duration::from_millis(t));
            prop_assert!(intensity.restarts_in_window() <= p.max_restarts as usize + 1);
        }
    }
}
