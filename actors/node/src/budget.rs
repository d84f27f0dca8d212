//! The node-wide budget of request bytes in flight (`limits.inflight_bytes_max`), and the
//! node-wide rate of a move's catch-up bytes (`rebalance.move_bytes_per_sec`, [`Throttle`]).
//!
//! Every request that brings data reserves its size before the node holds it: the Gateway
//! reserves a body's declared length (or `limits.body_bytes_max` when undeclared) before reading
//! it and hands over to the Router once the records are decoded; the Router reserves a produce's
//! record bytes for as long as it is in flight, whichever path it came by. A request that does not
//! fit is refused at once with `unavailable` (retryable: 503 over HTTP) instead of queueing, so
//! memory stays bounded under any number of producers. Reservations are released when dropped.

use std::sync::Arc;

use daftka_protocol::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A token bucket of bytes per second, shared by every sender that takes from it: at most a
/// second's worth is saved up, and a taker may overdraw by one message (so a message larger than
/// a second's worth still goes, then the bucket pays it back).
pub struct Throttle {
    per_sec: f64,
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Self {
        let per_sec = bytes_per_sec.max(1) as f64;
        Throttle {
            per_sec,
            state: std::sync::Mutex::new((per_sec, std::time::Instant::now())),
        }
    }

    /// Whether `bytes` may go now (then they are taken from the bucket).
    pub fn take(&self, bytes: u64) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.per_sec;
        s.0 = (s.0 + refill).min(self.per_sec);
        s.1 = now;
        if s.0 <= 0.0 {
            return false;
        }
        s.0 -= bytes as f64;
        true
    }
}

/// Bytes per permit: permits are counted in KiB so a `u32` covers any single request.
const UNIT: u64 = 1024;

/// A shared budget of bytes. Cheap to clone.
#[derive(Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    max: u64,
    rejected: prometheus::IntCounter,
}

/// Bytes reserved from a [`ByteBudget`] until dropped.
pub struct Reservation {
    _permit: OwnedSemaphorePermit,
}

impl ByteBudget {
    /// A budget of `max` bytes; refusals are counted in `rejected`.
    pub fn new(max: u64, rejected: prometheus::IntCounter) -> Self {
        let units = usize::try_from(max.div_ceil(UNIT)).unwrap_or(usize::MAX);
        ByteBudget {
            permits: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
            max,
            rejected,
        }
    }

    /// Reserves `bytes` now, or answers `unavailable` if the budget has not that much left.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, Error> {
        let units = u32::try_from(bytes.max(1).div_ceil(UNIT)).unwrap_or(u32::MAX);
        match self.permits.clone().try_acquire_many_owned(units) {
            Ok(permit) => Ok(Reservation { _permit: permit }),
            Err(_) => {
                self.rejected.inc();
                Err(Error::unavailable(format!(
                    "the node is overloaded: {bytes} more bytes in flight would exceed \
                     limits.inflight_bytes_max ({}); retry later",
                    self.max
                )))
            }
        }
    }

    /// Bytes reserved now.
    #[cfg(test)]
    fn in_use(&self) -> u64 {
        let free = self.permits.available_permits() as u64 * UNIT;
        self.max
            .div_ceil(UNIT)
            .saturating_mul(UNIT)
            .saturating_sub(free)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max: u64) -> ByteBudget {
        let c = prometheus::IntCounter::new("rejected", "test").expect("counter");
        ByteBudget::new(max, c)
    }

    /// What does not fit is refused at once and counted; a dropped reservation frees its bytes.
    #[test]
    fn reserve_refuse_release() {
        let b = budget(10 * UNIT);
        let first = b.reserve(6 * UNIT).expect("fits");
        assert_eq!(b.in_use(), 6 * UNIT);
        let refused = b.reserve(5 * UNIT).err().expect("does not fit");
        assert_eq!(refused.code, daftka_protocol::ErrorCode::Unavailable);
        assert_eq!(b.rejected.get(), 1);
        let small = b.reserve(1).expect("one byte takes one unit");
        assert_eq!(b.in_use(), 7 * UNIT);
        drop(first);
        drop(small);
        assert_eq!(b.in_use(), 0);
        assert!(
            b.reserve(10 * UNIT).is_ok(),
            "the whole budget fits when free"
        );
        assert!(
            b.reserve(11 * UNIT).is_err(),
            "more than the budget never fits"
        );
    }
}
