//! The machine a suite runs on, measured before and after its rows: how long a 100-byte append
//! followed by `fdatasync` takes on the disk the nodes write to, and how long a fixed piece of
//! arithmetic takes on one core. On a virtual machine the host shares both with others; a run whose
//! probes are far off the usual ones was made on a busy or slow machine, which the rows' figures
//! alone cannot tell from a regression of the broker.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::stats::Histogram;

/// Appends timed by the fsync probe.
pub const FSYNC_SAMPLES: u32 = 2_000;
/// Rounds of the CPU probe's arithmetic (about a third of a second on the development machine).
pub const CPU_ROUNDS: u64 = 100_000_000;
/// Bytes of each probe append, the size of a benchmark record.
const APPEND_BYTES: usize = 100;

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    pub fsync_p50_ms: f64,
    pub fsync_p99_ms: f64,
    pub fsync_max_ms: f64,
    /// Milliseconds the CPU probe took.
    pub cpu_ms: f64,
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

/// Times `samples` appends of [`APPEND_BYTES`], each followed by `fdatasync`, to a new file in
/// `dir` (removed afterwards).
pub fn fsync_latency(dir: &Path, samples: u32) -> std::io::Result<Histogram> {
    let path = dir.join(format!("probe-{}.bin", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let record = [b'x'; APPEND_BYTES];
    let mut latency = Histogram::default();
    let timed = (0..samples).try_for_each(|_| {
        let started = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        latency.record_duration(started.elapsed());
        Ok::<_, std::io::Error>(())
    });
    drop(file);
    let removed = std::fs::remove_file(&path);
    timed?;
    removed?;
    Ok(latency)
}

/// How long `rounds` steps of a xorshift generator take on this thread.
pub fn cpu_time(rounds: u64) -> Duration {
    let started = Instant::now();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..rounds {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = std::hint::black_box(x);
    }
    std::hint::black_box(x);
    started.elapsed()
}

/// Both probes, the disk's in `dir`.
pub fn measure(dir: &Path, samples: u32, rounds: u64) -> std::io::Result<Probe> {
    let fsync = fsync_latency(dir, samples)?;
    let cpu = cpu_time(rounds);
    Ok(Probe {
        fsync_p50_ms: ms(fsync.percentile(50.0)),
        fsync_p99_ms: ms(fsync.percentile(99.0)),
        fsync_max_ms: ms(fsync.max()),
        cpu_ms: cpu.as_secs_f64() * 1000.0,
    })
}

impl Probe {
    pub fn json(&self) -> Value {
        json!({
            "fsync_p50_ms": self.fsync_p50_ms,
            "fsync_p99_ms": self.fsync_p99_ms,
            "fsync_max_ms": self.fsync_max_ms,
            "fsync_samples": FSYNC_SAMPLES,
            "cpu_probe_ms": self.cpu_ms,
            "cpu_probe_rounds": CPU_ROUNDS,
        })
    }

    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "fdatasync of {APPEND_BYTES} B p50 {:.2}, p99 {:.2}, max {:.2} ms; CPU probe {:.0} ms",
            self.fsync_p50_ms, self.fsync_p99_ms, self.fsync_max_ms, self.cpu_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The disk probe times every append, leaves no file behind, and orders its percentiles.
    #[test]
    fn probes_measure_the_disk_and_the_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let h = fsync_latency(dir.path(), 50).unwrap();
        assert_eq!(h.count(), 50);
        assert!(h.max() > 0);
        assert!(h.percentile(50.0) <= h.percentile(99.0));
        assert!(h.percentile(99.0) <= h.max());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let p = measure(dir.path(), 20, 1_000_000).unwrap();
        assert!(p.fsync_p50_ms <= p.fsync_p99_ms && p.fsync_p99_ms <= p.fsync_max_ms);
        assert!(p.cpu_ms > 0.0);
        assert!(
            p.line().starts_with("fdatasync of 100 B p50"),
            "{}",
            p.line()
        );
        assert_eq!(p.json()["fsync_samples"], FSYNC_SAMPLES);
    }

    /// A directory that does not exist is an error, not a panic.
    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        assert!(fsync_latency(&gone, 1).is_err());
    }
}
