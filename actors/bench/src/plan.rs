//! What each request of a run carries and when it is due, the run's shared counters, and the
//! progress line.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// When a run ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// After exactly this many records.
    Records(u64),
    /// After this long: no request starts (or, with a rate, is scheduled) later.
    Time(Duration),
}

/// The schedule of a run's requests: request `i` of the whole run (all producers draw from one
/// counter) carries [`Plan::ticket`]'s records and, with a rate, is due at `i / rate` seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    pub limit: Limit,
    /// Records per request.
    pub batch: u32,
    /// Requests per second in total; `None`: closed loop.
    pub rate: Option<f64>,
}

/// One request to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ticket {
    /// Its number in the run, from 0.
    pub index: u64,
    /// How many records it carries (the last one of a `Records` run may carry fewer).
    pub records: u32,
    /// When it is due, from the start of the run (open loop only).
    pub due: Option<Duration>,
}

/// When request `i` of a run at `rate` requests/s is due, from the start.
pub fn due_at(i: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(i as f64 / rate)
}

impl Plan {
    /// Request `i`, if the run has one, `elapsed` after its start (which ends a closed-loop
    /// `Time` run).
    pub fn ticket(&self, i: u64, elapsed: Duration) -> Option<Ticket> {
        let due = self.rate.map(|r| due_at(i, r));
        let records = match self.limit {
            Limit::Records(total) => {
                let first = i.checked_mul(u64::from(self.batch))?;
                if first >= total {
                    return None;
                }
                (total - first).min(u64::from(self.batch)) as u32
            }
            Limit::Time(d) => {
                if due.unwrap_or(elapsed) >= d {
                    return None;
                }
                self.batch
            }
        };
        Some(Ticket {
            index: i,
            records,
            due,
        })
    }
}

/// Where a request's latency is measured from. A request due at `due` whose producer was free
/// (`free_at`) before then, and so sent it when its timer fired (`sent`), counts from `sent`: the
/// timer's lateness is the generator's, not the node's. One whose producer was still busy with an
/// earlier request counts from `due`, so time spent queued behind a slow node is not hidden
/// (coordinated omission).
pub fn latency_origin(due: Instant, free_at: Instant, sent: Instant) -> Instant {
    if free_at <= due {
        sent
    } else {
        due
    }
}

/// The counters every worker of a run adds to, and the run's stop flag.
#[derive(Debug)]
pub struct Shared {
    pub start: Instant,
    pub plan: Plan,
    next: AtomicU64,
    /// Records acknowledged (produce) or read (consume).
    pub records: AtomicU64,
    /// Value bytes of those records.
    pub bytes: AtomicU64,
    pub requests: AtomicU64,
    /// Failed attempts, retried or not.
    pub errors: AtomicU64,
    /// Records read back (e2e).
    pub consumed: AtomicU64,
    /// Producers still running (e2e readers drain once it is 0).
    pub producing: AtomicU64,
    /// Records readers may still claim (consume): a `Records` run's total, else unlimited.
    budget: AtomicU64,
    stop: AtomicBool,
    /// Wakes producers waiting for their request's due time when the run stops.
    stopping: Notify,
}

impl Shared {
    pub fn new(plan: Plan, producers: u64) -> Arc<Shared> {
        Arc::new(Shared {
            start: Instant::now(),
            plan,
            next: AtomicU64::new(0),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            producing: AtomicU64::new(producers),
            budget: AtomicU64::new(match plan.limit {
                Limit::Records(n) => n,
                Limit::Time(_) => u64::MAX,
            }),
            stop: AtomicBool::new(false),
            stopping: Notify::new(),
        })
    }

    /// The next request of the run, if there is one and the run was not stopped.
    pub fn next_ticket(&self) -> Option<Ticket> {
        if self.stopped() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.plan.ticket(i, self.start.elapsed())
    }

    /// Takes up to `want` records of the budget for one fetch; 0 when it is spent.
    pub fn claim(&self, want: u64) -> u64 {
        let mut taken = 0;
        let _ = self
            .budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                taken = left.min(want);
                (taken > 0).then(|| left - taken)
            });
        taken
    }

    /// Gives back what a fetch claimed but did not read.
    pub fn unclaim(&self, n: u64) {
        if n > 0 {
            self.budget.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Asks every worker to finish its request in flight and stop.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.stopping.notify_waiters();
    }

    /// Waits until `at`; false if the run was stopped first.
    pub async fn wait_until(&self, at: Instant) -> bool {
        let stopping = self.stopping.notified();
        if self.stopped() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => !self.stopped(),
            () = stopping => false,
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether a `Time` run is over.
    pub fn out_of_time(&self) -> bool {
        matches!(self.plan.limit, Limit::Time(d) if self.start.elapsed() >= d)
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// How often the progress line is rewritten.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// Rewrites `\r<seconds>s  <records> records  <rate> records/s  <errors> errors` on stderr every
/// [`PROGRESS_INTERVAL`] until aborted; the rate is over the last interval; e2e adds the records
/// read back.
pub async fn progress(shared: Arc<Shared>, e2e: bool) {
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    tick.tick().await;
    let mut last = (0, Instant::now());
    loop {
        tick.tick().await;
        let done = Shared::get(&shared.records);
        let now = Instant::now();
        let rate = (done - last.0) as f64 / now.duration_since(last.1).as_secs_f64().max(1e-9);
        last = (done, now);
        let mut line = format!(
            "\r{:>7.1}s  {done} records  {rate:.0} records/s  {} errors",
            shared.start.elapsed().as_secs_f64(),
            Shared::get(&shared.errors),
        );
        if e2e {
            line.push_str(&format!("  {} read back", Shared::get(&shared.consumed)));
        }
        line.push_str("   ");
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn records_runs_split_exactly_into_batches() {
        // 2,500 records in batches of 1,000: 1,000, 1,000, 500, then nothing.
        let plan = Plan {
            limit: Limit::Records(2_500),
            batch: 1_000,
            rate: None,
        };
        let got: Vec<u32> = (0..5)
            .map_while(|i| plan.ticket(i, Duration::ZERO))
            .map(|t| t.records)
            .collect();
        assert_eq!(got, vec![1_000, 1_000, 500]);
        assert_eq!(plan.ticket(3, Duration::ZERO), None);
        assert_eq!(plan.ticket(u64::MAX, Duration::ZERO), None);
        assert_eq!(plan.ticket(0, Duration::ZERO).map(|t| t.due), Some(None));
    }

    #[test]
    fn rates_schedule_requests_evenly_from_the_start() {
        // At 1,000 requests/s request i is due at i ms; at 3/s, request 2 at 666.67 ms.
        assert_eq!(due_at(0, 1_000.0), Duration::ZERO);
        assert_eq!(due_at(1, 1_000.0), Duration::from_millis(1));
        assert_eq!(due_at(1_500, 1_000.0), Duration::from_millis(1_500));
        let d = due_at(2, 3.0).as_secs_f64();
        assert!((d - 2.0 / 3.0).abs() < 1e-9, "{d}");
        assert_eq!(due_at(10, 0.5), Duration::from_secs(20));
        let plan = Plan {
            limit: Limit::Records(10),
            batch: 1,
            rate: Some(100.0),
        };
        let t = plan.ticket(7, Duration::ZERO).expect("request 7");
        assert_eq!(t.due, Some(Duration::from_millis(70)));
        assert_eq!(t.records, 1);
    }

    #[test]
    fn time_runs_end_at_the_deadline() {
        // Open loop: the last request is the last one due before the end, whatever the clock says;
        // closed loop: no request starts after the end.
        let open = Plan {
            limit: Limit::Time(2 * S),
            batch: 5,
            rate: Some(10.0),
        };
        assert_eq!(open.ticket(19, 10 * S).map(|t| t.records), Some(5));
        assert_eq!(open.ticket(20, Duration::ZERO), None);
        let closed = Plan { rate: None, ..open };
        assert!(closed.ticket(1_000_000, S).is_some());
        assert_eq!(closed.ticket(0, 2 * S), None);
    }

    #[test]
    fn latency_counts_queueing_but_not_timer_slack() {
        let t0 = Instant::now();
        let due = t0 + Duration::from_millis(10);
        // Free before its time: measured from when it was actually sent.
        let sent = due + Duration::from_micros(900);
        assert_eq!(latency_origin(due, t0, sent), sent);
        assert_eq!(latency_origin(due, due, sent), sent);
        // Busy past its time: measured from when it was due.
        let late = due + Duration::from_millis(5);
        assert_eq!(latency_origin(due, late, late), due);
    }

    #[test]
    fn shared_hands_out_each_request_once_and_stops() {
        let shared = Shared::new(
            Plan {
                limit: Limit::Records(3),
                batch: 1,
                rate: None,
            },
            1,
        );
        let got: Vec<u64> = std::iter::from_fn(|| shared.next_ticket())
            .map(|t| t.index)
            .collect();
        assert_eq!(got, vec![0, 1, 2]);
        let shared = Shared::new(
            Plan {
                limit: Limit::Records(3),
                batch: 1,
                rate: None,
            },
            1,
        );
        shared.stop();
        assert_eq!(shared.next_ticket(), None);
        assert!(!shared.out_of_time());
    }

    #[tokio::test]
    async fn stopping_wakes_a_producer_waiting_for_its_due_time() {
        let shared = Shared::new(
            Plan {
                limit: Limit::Records(1),
                batch: 1,
                rate: Some(1e-6),
            },
            1,
        );
        assert!(shared.wait_until(Instant::now()).await);
        let waiting = {
            let shared = shared.clone();
            tokio::spawn(async move {
                shared
                    .wait_until(Instant::now() + Duration::from_secs(3600))
                    .await
            })
        };
        shared.stop();
        assert!(!waiting.await.expect("the waiter ends"));
        assert!(!shared.wait_until(Instant::now()).await);
    }

    #[test]
    fn readers_claim_the_budget_exactly() {
        // 250 records: 100, 100, 50, then nothing until some is given back.
        let shared = Shared::new(
            Plan {
                limit: Limit::Records(250),
                batch: 100,
                rate: None,
            },
            0,
        );
        assert_eq!(
            [shared.claim(100), shared.claim(100), shared.claim(100)],
            [100, 100, 50]
        );
        assert_eq!(shared.claim(100), 0);
        shared.unclaim(30);
        assert_eq!(shared.claim(100), 30);
        let unlimited = Shared::new(
            Plan {
                limit: Limit::Time(Duration::from_secs(1)),
                batch: 1,
                rate: None,
            },
            0,
        );
        assert_eq!(unlimited.claim(u64::MAX - 1), u64::MAX - 1);
    }
}
