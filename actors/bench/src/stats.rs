//! Latency histograms, percentiles, the node's CPU and memory, and the summary in text and JSON.

use std::time::{Duration, Instant};

use daftka_http::client::ClientError;

/// Values below `2^SUB_BITS` microseconds get a slot each; above, each power-of-two range is cut in
/// `2^(SUB_BITS - 1)` equal slots, so a slot's width is under 1/64 of its values (1.6 %).
const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
const HALF: u64 = SUB / 2;
/// Slots for every u64: the exact ones, then one group of `HALF` per power of two above them.
const SLOTS: usize = (SUB + (64 - SUB_BITS as u64) * HALF) as usize;

/// A log-linear histogram of latencies in microseconds: constant memory, cheap to record into and
/// to merge, with exact count, sum and max.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum: u128,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; SLOTS].into_boxed_slice(),
            count: 0,
            sum: 0,
            max: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("max", &self.max)
            .finish()
    }
}

/// The slot of value `v`.
fn slot(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - u64::from(v.leading_zeros());
    let shift = msb + 1 - u64::from(SUB_BITS); // >= 1
    let mantissa = v >> shift; // in [HALF, SUB)
    (SUB + (shift - 1) * HALF + (mantissa - HALF)) as usize
}

/// The largest value that falls in slot `i`.
fn slot_top(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i - SUB) / HALF + 1;
    let mantissa = (i - SUB) % HALF + HALF;
    // The top slot's end is u64::MAX itself.
    ((mantissa + 1) << shift).wrapping_sub(1)
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        self.counts[slot(micros)] += 1;
        self.count += 1;
        self.sum += u128::from(micros);
        self.max = self.max.max(micros);
    }

    pub fn record_duration(&mut self, d: Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The nearest-rank `p`-th percentile (0 < p <= 100): the top of the slot holding the value of
    /// rank ceil(p/100 * n), never above the exact max; 0 when empty. It overstates the exact
    /// percentile by less than a slot's width.
    pub fn percentile(&self, p: f64) -> u64 {
        let rank = nearest_rank(self.count, p);
        if rank == 0 {
            return 0;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return slot_top(i).min(self.max);
            }
        }
        self.max
    }
}

/// The 1-based nearest rank of the `p`-th percentile of `n` values: ceil(p/100 * n), at least 1;
/// 0 when there are no values.
pub fn nearest_rank(n: u64, p: f64) -> u64 {
    if n == 0 {
        return 0;
    }
    // In parts per million and integers: 99.9 % of 1,000 is rank 999, which floating point makes
    // 999.0000000000001 and so 1,000.
    let ppm = (p.clamp(0.0, 100.0) * 10_000.0).round() as u128;
    let rank = (ppm * u128::from(n)).div_ceil(1_000_000) as u64;
    rank.clamp(1, n)
}

/// The exact nearest-rank percentile of sorted values (for tests of the histogram).
#[cfg(test)]
pub fn percentile_sorted(sorted: &[u64], p: f64) -> u64 {
    match nearest_rank(sorted.len() as u64, p) {
        0 => 0,
        rank => sorted[rank as usize - 1],
    }
}

/// The user-mode clock ticks per second of `/proc/PID/stat` (USER_HZ: 100 on Linux, a fixed ABI).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// A reading of a process's CPU time, for [`NodeUsage`].
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pid: u32,
    ticks: u64,
    at: Instant,
}

/// The node's CPU use over the run and its resident memory at the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeUsage {
    /// CPU time over wall time, in percent of one core (200 = two cores busy).
    pub cpu_percent: f64,
    pub rss_bytes: Option<u64>,
}

impl CpuSample {
    /// Reads `/proc/PID/stat`; a pid that cannot be read is a usage error.
    pub fn take(pid: u32) -> Result<CpuSample, ClientError> {
        let path = format!("/proc/{pid}/stat");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ClientError::Usage(format!("--node-pid {pid}: cannot read {path}: {e}"))
        })?;
        let ticks = cpu_ticks(&text)
            .ok_or_else(|| ClientError::Usage(format!("--node-pid {pid}: cannot parse {path}")))?;
        Ok(CpuSample {
            pid,
            ticks,
            at: Instant::now(),
        })
    }

    /// The usage since this sample; `None` if the process can no longer be read.
    pub fn usage_since(&self) -> Option<NodeUsage> {
        let now = CpuSample::take(self.pid).ok()?;
        let wall = now.at.duration_since(self.at).as_secs_f64();
        let cpu = now.ticks.saturating_sub(self.ticks) as f64 / CLOCK_TICKS_PER_SEC;
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok();
        Some(NodeUsage {
            cpu_percent: if wall > 0.0 { cpu / wall * 100.0 } else { 0.0 },
            rss_bytes: status.as_deref().and_then(rss_bytes),
        })
    }
}

/// utime + stime of a `/proc/PID/stat` line, in clock ticks. The command name (field 2) is in
/// parentheses and may hold spaces, so fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // Field 3 (state) is the first after the name; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a `/proc/PID/status` text, in bytes.
fn rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(n * 1024),
        _ => None,
    }
}

/// What a bench did: its parameters and its results.
#[derive(Debug, Clone)]
pub struct Summary {
    pub workload: &'static str,
    pub transport: &'static str,
    /// Value bytes per record (for consume: the mean of what was read).
    pub record_size: u64,
    pub batch: u32,
    /// Concurrent producers (for consume: concurrent readers, one per partition).
    pub producers: u32,
    pub partitions: u32,
    pub rate: Option<f64>,
    pub replication_factor: u32,
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub latency: Histogram,
    /// For e2e: the produce requests' own latency (send to acknowledgement).
    pub produce_latency: Option<Histogram>,
    pub node: Option<NodeUsage>,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn per_sec(n: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n / seconds
    } else {
        0.0
    }
}

impl Summary {
    pub fn records_per_sec(&self) -> f64 {
        per_sec(self.records as f64, self.seconds)
    }

    /// Value megabytes (10^6 bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        per_sec(self.bytes as f64 / 1e6, self.seconds)
    }

    /// The summary for people, one measure per line.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let l = &self.latency;
        let rate = match self.rate {
            Some(r) => format!("open loop at {r} requests/s"),
            None => "closed loop".to_owned(),
        };
        let mut s = format!(
            "bench {} over {}: {}-byte records, batch {}, {} {}, {} partitions, replication factor {}, {}\n",
            self.workload,
            self.transport,
            self.record_size,
            self.batch,
            self.producers,
            if self.workload == "consume" { "readers" } else { "producers" },
            self.partitions,
            self.replication_factor,
            rate,
        );
        let _ = writeln!(s, "records      {}", self.records);
        let _ = writeln!(s, "seconds      {:.3}", self.seconds);
        let _ = writeln!(s, "records/s    {:.0}", self.records_per_sec());
        let _ = writeln!(s, "MB/s         {:.2}", self.mb_per_sec());
        let _ = writeln!(s, "requests     {}", self.requests);
        let _ = writeln!(s, "errors       {}", self.errors);
        let what = match self.workload {
            "consume" => "per fetch",
            "e2e" => "per record, produce to consume",
            _ => "per request",
        };
        let _ = writeln!(s, "latency ms   {} ({what})", percentiles(l));
        if let Some(p) = &self.produce_latency {
            let _ = writeln!(s, "produce ms   {} (per request)", percentiles(p));
        }
        if let Some(n) = &self.node {
            let _ = write!(s, "node         cpu {:.1} %", n.cpu_percent);
            if let Some(rss) = n.rss_bytes {
                let _ = write!(s, ", rss {:.1} MiB", rss as f64 / (1024.0 * 1024.0));
            }
            s.push('\n');
        }
        s
    }

    /// The summary as one JSON object (see the module documentation for its fields).
    pub fn json(&self) -> serde_json::Value {
        let l = &self.latency;
        let mut v = serde_json::json!({
            "workload": self.workload,
            "transport": self.transport,
            "record_size": self.record_size,
            "batch": self.batch,
            "producers": self.producers,
            "partitions": self.partitions,
            "rate": self.rate,
            "replication_factor": self.replication_factor,
            "records": self.records,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "records_per_sec": self.records_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": ms(l.percentile(50.0)),
            "p90_ms": ms(l.percentile(90.0)),
            "p99_ms": ms(l.percentile(99.0)),
            "p999_ms": ms(l.percentile(99.9)),
            "max_ms": ms(l.max()),
            "mean_ms": l.mean() / 1000.0,
        });
        if let Some(p) = &self.produce_latency {
            v["produce_p50_ms"] = ms(p.percentile(50.0)).into();
            v["produce_p99_ms"] = ms(p.percentile(99.0)).into();
        }
        if let Some(n) = &self.node {
            v["cpu_percent"] = n.cpu_percent.into();
            if let Some(rss) = n.rss_bytes {
                v["rss_bytes"] = rss.into();
            }
        }
        v
    }
}

/// `p50 1.234  p90 ...  p99 ...  p99.9 ...  max ...` in milliseconds.
fn percentiles(h: &Histogram) -> String {
    format!(
        "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        ms(h.percentile(50.0)),
        ms(h.percentile(90.0)),
        ms(h.percentile(99.0)),
        ms(h.percentile(99.9)),
        ms(h.max()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nearest_rank_follows_the_definition() {
        // ceil(p/100 * n), clamped to 1..=n.
        assert_eq!(nearest_rank(0, 50.0), 0);
        assert_eq!(nearest_rank(1, 0.1), 1);
        assert_eq!(nearest_rank(10, 50.0), 5);
        assert_eq!(nearest_rank(10, 51.0), 6);
        assert_eq!(nearest_rank(10, 100.0), 10);
        assert_eq!(nearest_rank(1000, 99.9), 999);
        assert_eq!(nearest_rank(1001, 99.9), 1000);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile_sorted(&v, 50.0), 50);
        assert_eq!(percentile_sorted(&v, 99.0), 99);
        assert_eq!(percentile_sorted(&v, 99.9), 100);
        assert_eq!(percentile_sorted(&[], 99.0), 0);
        assert_eq!(percentile_sorted(&[7], 1.0), 7);
    }

    #[test]
    fn slots_cover_every_value_in_order() {
        // Each value lands in a slot whose top is at least the value, tops increase, and a slot's
        // width is under 1/64 of its values.
        for v in [
            0,
            1,
            127,
            128,
            129,
            255,
            256,
            1000,
            65_535,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let i = slot(v);
            assert!(i < SLOTS, "{v}");
            assert!(slot_top(i) >= v, "{v}");
            if i > 0 {
                assert!(slot_top(i - 1) < v, "{v}");
            }
        }
        assert_eq!(slot(u64::MAX), SLOTS - 1);
        assert_eq!(slot_top(SLOTS - 1), u64::MAX);
        for i in 1..SLOTS {
            assert!(slot_top(i) > slot_top(i - 1));
            assert_eq!(slot(slot_top(i)), i);
        }
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(90.0), 90);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(99.9), 100);
        assert_eq!(h.max(), 100);
        assert_eq!(h.mean(), 50.5);
        assert_eq!(Histogram::default().percentile(99.0), 0);
    }

    #[test]
    fn merging_adds_up() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(10);
        b.record(5_000);
        b.record(20);
        a.merge(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max(), 5_000);
        assert_eq!(a.percentile(50.0), 20);
        assert_eq!(a.percentile(100.0), 5_000);
    }

    proptest! {
        #[test]
        fn percentiles_are_close_to_exact_and_ordered(
            mut values in proptest::collection::vec(0u64..10_000_000, 1..500),
        ) {
            // Never below the exact nearest-rank value, above it by less than 1/64, never above
            // the max, and monotone in p.
            let mut h = Histogram::default();
            for v in &values {
                h.record(*v);
            }
            values.sort_unstable();
            let mut last = 0;
            for p in [1.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
                let exact = percentile_sorted(&values, p);
                let got = h.percentile(p);
                prop_assert!(got >= exact, "p{p}: {got} < {exact}");
                prop_assert!(got <= exact + exact / 64, "p{p}: {got} vs {exact}");
                prop_assert!(got <= h.max());
                prop_assert!(got >= last);
                last = got;
            }
            prop_assert_eq!(h.max(), *values.last().expect("non-empty"));
        }
    }

    #[test]
    fn proc_files_parse() {
        // utime + stime after the parenthesised name (which may hold spaces and parentheses).
        let stat = "4242 (daftka (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
        let status = "Name:\tdaftka\nVmPeak:\t  999 kB\nVmRSS:\t   2048 kB\nThreads:\t9\n";
        assert_eq!(rss_bytes(status), Some(2048 * 1024));
        assert_eq!(rss_bytes("Name:\tx\n"), None);
    }

    #[test]
    fn node_usage_of_this_process_is_readable() {
        // This test process stands in for the node: its CPU use is known and its RSS positive.
        let pid = std::process::id();
        let before = CpuSample::take(pid).expect("own /proc");
        let usage = before.usage_since().expect("still running");
        assert!(usage.cpu_percent >= 0.0);
        assert!(usage.rss_bytes.is_some_and(|b| b > 0));
        assert!(matches!(
            CpuSample::take(u32::MAX),
            Err(ClientError::Usage(_))
        ));
    }

    #[test]
    fn summary_json_has_every_field() {
        let mut latency = Histogram::default();
        for v in [1_000, 2_000, 3_000, 10_000] {
            latency.record(v);
        }
        let s = Summary {
            workload: "produce",
            transport: "http",
            record_size: 100,
            batch: 10,
            producers: 2,
            partitions: 4,
            rate: None,
            replication_factor: 1,
            records: 40,
            bytes: 4_000,
            seconds: 2.0,
            requests: 4,
            errors: 1,
            latency,
            produce_latency: None,
            node: Some(NodeUsage {
                cpu_percent: 50.0,
                rss_bytes: Some(1 << 20),
            }),
        };
        let v = s.json();
        assert_eq!(v["records"], 40);
        assert_eq!(v["records_per_sec"], 20.0);
        assert_eq!(v["mb_per_sec"], 0.002);
        // 2,000 us is in the slot 1,984..=2,015.
        assert_eq!(v["p50_ms"], 2.015);
        assert_eq!(v["p99_ms"], 10.0);
        assert_eq!(v["max_ms"], 10.0);
        assert_eq!(v["rate"], serde_json::Value::Null);
        assert_eq!(v["cpu_percent"], 50.0);
        assert_eq!(v["rss_bytes"], 1 << 20);
        for key in [
            "workload",
            "transport",
            "record_size",
            "batch",
            "producers",
            "partitions",
            "replication_factor",
            "seconds",
            "requests",
            "errors",
            "p90_ms",
            "p999_ms",
        ] {
            assert!(!v[key].is_null(), "{key}");
        }
        let text = s.text();
        assert!(text.contains("records/s    20\n"), "{text}");
        assert!(text.contains("p50 2.015  p90 10.000"), "{text}");
        assert!(text.contains("cpu 50.0 %, rss 1.0 MiB"), "{text}");
    }
}
