//! Restart math for Daftka's supervisors: how often a supervisor may restart its children before it gives
//! up and escalates, and how long it waits before each restart.
//!
//! This is the pure half of `daftka_node::supervision`: the actor feeds every child failure into
//! [`RestartIntensity::on_failure`] together with the current time, and carries out the returned
//! [`RestartDecision`] (schedule a restart after `delay`, or stop itself so its own parent decides).
//! Nothing here reads a clock: `now` is a [`Duration`] since an arbitrary epoch chosen by the caller, so
//! the rules can be property-tested (`actors/core/tests/supervision_props.rs`).
//!
//! # The rule (OTP's restart intensity, plus exponential backoff)
//! - A failure at time `now` is recorded; failures recorded `window` or longer before `now` are forgotten.
//! - Let `n` be the number of failures remembered (including this one). If `n > max_restarts`, the
//!   decision is [`RestartDecision::Escalate`].
//! - Otherwise it is [`RestartDecision::Restart`] with `delay = min(backoff_base * 2^(n-1), backoff_max)`:
//!   the first restart of a burst waits `backoff_base`, each further one twice as long, never more than
//!   `backoff_max`. After a quiet period of at least `window`, the next failure starts a fresh burst.
//!
//! # Invariants
//! - At most `max_restarts + 1` timestamps are kept, whatever the input.
//! - `delay <= backoff_max`, and within a burst (no timestamp forgotten) delays never decrease.
//! - Time going backwards is tolerated: an earlier `now` counts as "no time elapsed".

use std::collections::VecDeque;
use std::time::Duration;

/// How many restarts a supervisor may perform, and how fast.
///
/// The default (5 restarts in 10 s, backoff 10 ms doubling up to 1 s) suits a node-local supervisor
/// whose children rebuild their state from disk in milliseconds: a crash loop is detected within a few
/// seconds and escalated, while an isolated crash is repaired after 10 ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Most restarts allowed inside `window`; one more failure inside the window escalates.
    /// `0` means "never restart: escalate on the first failure". Default 5.
    pub max_restarts: u32,
    /// Sliding window over which failures are counted; failures at least this old are forgotten.
    /// Default 10 s.
    pub window: Duration,
    /// Delay before the first restart of a burst; doubles with every further restart in the window.
    /// Default 10 ms. Use ~1 ms in tests.
    pub backoff_base: Duration,
    /// Upper bound on the restart delay. Default 1 s. If smaller than `backoff_base`, every delay is
    /// `backoff_max`.
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            max_restarts: 5,
            window: Duration::from_secs(10),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// What a supervisor does about a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Restart the affected children after `delay`.
    Restart {
        /// How long to wait before restarting (exponential backoff, capped).
        delay: Duration,
    },
    /// Too many restarts inside the window: stop the supervisor and let its parent decide.
    Escalate,
}

/// The restart history of one supervisor: the timestamps of the failures still inside the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartIntensity {
    /// The rule being applied.
    policy: RestartPolicy,
    /// Failure times still inside the window, oldest first; at most `max_restarts + 1` entries.
    recent: VecDeque<Duration>,
}

impl RestartIntensity {
    /// A fresh history (no failures) under `policy`.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// The policy this history applies.
    pub fn policy(&self) -> &RestartPolicy {
        &self.policy
    }

    /// Number of failures remembered as of the last call to [`Self::on_failure`].
    pub fn restarts_in_window(&self) -> usize {
        self.recent.len()
    }

    /// Records a failure at `now` (time since the caller's epoch) and decides what to do about it.
    pub fn on_failure(&mut self, now: Duration) -> RestartDecision {
        let window = self.policy.window;
        while let Some(&oldest) = self.recent.front() {
            if now.saturating_sub(oldest) >= window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        // Keep memory bounded even if a caller ignores `Escalate` and keeps reporting failures: the
        // decision only depends on whether the count exceeds `max_restarts`.
        let keep_max = usize::try_from(self.policy.max_restarts)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        while self.recent.len() > keep_max {
            self.recent.pop_front();
        }

        let n = self.recent.len();
        if u64::try_from(n).unwrap_or(u64::MAX) > u64::from(self.policy.max_restarts) {
            return RestartDecision::Escalate;
        }
        RestartDecision::Restart {
            delay: backoff(&self.policy, n),
        }
    }
}

/// `min(base * 2^(n-1), max)` for the `n`-th restart of a burst (`n >= 1`), without overflow.
fn backoff(policy: &RestartPolicy, n: usize) -> Duration {
    let exponent = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX);
    let factor = 1u32.checked_shl(exponent).unwrap_or(u32::MAX);
    policy
        .backoff_base
        .checked_mul(factor)
        .unwrap_or(policy.backoff_max)
        .min(policy.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    // The default policy's burst: 10, 20, 40, 80, 160 ms, then escalation on the 6th failure.
    #[test]
    fn default_policy_burst() {
        let mut i = RestartIntensity::new(RestartPolicy::default());
        let delays: Vec<_> = (0..6).map(|k| i.on_failure(ms(k))).collect();
        let expected: Vec<_> = [10, 20, 40, 80, 160]
            .iter()
            .map(|&d| RestartDecision::Restart { delay: ms(d) })
            .chain([RestartDecision::Escalate])
            .collect();
        assert_eq!(delays, expected);
    }

    // Delays are capped at backoff_max, and a failure exactly `window` after the last one starts afresh.
    #[test]
    fn cap_and_forget() {
        let policy = RestartPolicy {
            max_restarts: 10,
            window: ms(100),
            backoff_base: ms(10),
            backoff_max: ms(25),
        };
        let mut i = RestartIntensity::new(policy);
        assert_eq!(
            i.on_failure(ms(0)),
            RestartDecision::Restart { delay: ms(10) }
        );
        assert_eq!(
            i.on_failure(ms(1)),
            RestartDecision::Restart { delay: ms(20) }
        );
        assert_eq!(
            i.on_failure(ms(2)),
            RestartDecision::Restart { delay: ms(25) }
        );
        assert_eq!(
            i.on_failure(ms(102)),
            RestartDecision::Restart { delay: ms(10) }
        );
        assert_eq!(i.restarts_in_window(), 1);
    }

    // max_restarts = 0 escalates on the first failure.
    #[test]
    fn zero_restarts_escalates_at_once() {
        let policy = RestartPolicy {
            max_restarts: 0,
            ..RestartPolicy::default()
        };
        assert_eq!(
            RestartIntensity::new(policy).on_failure(ms(0)),
            RestartDecision::Escalate
        );
    }
}
