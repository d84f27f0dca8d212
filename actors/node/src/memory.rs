//! Hands the heap memory the allocator keeps after a burst back to the OS.
//!
//! glibc's malloc keeps memory that was freed: after a burst of large requests (or a refused
//! flood) the node's resident size stays at its peak although the live heap is small again, and
//! a later burst fragments it further, so resident memory creeps up with the bytes written (seen
//! under `tests/overload.rs`: live heap at most ~70 MiB by valgrind massif, resident 170-270
//! MiB). Every `limits.memory_trim_interval` the node asks how much the allocator holds free
//! (`mallinfo2`) and, when it is at least `limits.memory_trim_free_bytes_min`, calls
//! `malloc_trim(0)`, which returns whole free pages from every arena. Both walk the allocator's
//! arenas under their locks (a few ms on a busy heap), so they run on a blocking thread, never on
//! a runtime worker. Not glibc: nothing to do.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

/// Bytes the allocator holds free (not handed back to the OS), if it can tell.
pub fn free_heap_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        let info = unsafe { libc::mallinfo2() };
        Some(info.fordblks as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Returns the allocator's free pages to the OS; true if any memory was released.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes the arena locks itself; 0 keeps no padding.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Trims every `interval` while at least `free_min` bytes are free (the node's `memory` service).
pub async fn trim_loop(interval: Duration, free_min: u64, metrics: Arc<Metrics>) {
    if interval.is_zero() || free_heap_bytes().is_none() {
        return;
    }
    let mut every = tokio::time::interval(interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let released = tokio::task::spawn_blocking(move || {
            let free = free_heap_bytes().unwrap_or(0);
            free >= free_min && trim()
        })
        .await;
        if matches!(released, Ok(true)) {
            metrics.memory_trims.inc();
        }
    }
}
