//! The process heap: how a sidecar gives memory it no longer uses back to the kernel.
//!
//! A sidecar's live data is its snapshot; everything else it allocates is transient. At a large
//! schema (100k keys) loading the disk snapshot, a full fetch from Redis and each disk write
//! allocate tens of MiB that are freed a moment later, and glibc's allocator keeps freed memory
//! mapped: in the top of the `brk` heap only when the top chunk is free, and in up to 8 arenas
//! per core, one taken by each thread that allocates (tokio's workers and its blocking pool).
//! The RSS then counted what had been freed (`benches/coldstart.sh`, docs/PERFORMANCE.md
//! "Sidecar memory"). Two calls fix that, both no-ops off Linux glibc (musl and other systems
//! have their own allocators):
//!
//! - [`limit_arenas`], once, before the runtime's threads start: one arena ([`ARENAS`]: an
//!   arena other than the main one never gives back the free top of its heap, trimmed or not:
//!   9 MiB resident after a 100k-key restart) and a fixed mmap threshold ([`MMAP_THRESHOLD`]).
//!   glibc's default threshold grows to the largest mapped chunk freed (the 30 MB of a
//!   100k-key disk snapshot's file) and its trim threshold to twice that, after which the heap
//!   grows for buffers of megabytes (a `/v1/configs` document, a full fetch's reply) and keeps
//!   up to 60 MB of free top. Fixed, a buffer of 256 KiB or more that the heap's free space
//!   cannot hold is a mapping of its own, unmapped when freed, and a free top over 128 KiB goes
//!   back to the kernel as soon as it forms;
//! - [`release_free_memory`] (or [`release_free_memory_soon`]), after each of those one-off peaks:
//!   `malloc_trim(0)` returns every whole free page of every arena to the kernel
//!   (`MADV_DONTNEED`), not only the heap's top; one trim at a time per process.
//!
//! The read path allocates nothing per request (`http::fast_conn`), so fewer arenas cost it
//! nothing; a trim walks the allocator's free lists, on the blocking pool, and runs only after
//! those rare events (disk writes are debounced to one a second), never per read.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// Arenas a sidecar's allocator may use: one, glibc's main arena. The hot path does not
/// allocate, and each thread's tcache serves most small allocations without the arena's lock;
/// what one arena buys is a trim that gives everything back. `malloc_trim` returns the free
/// top of the main heap, but never the free top of another arena's heap: with two, which
/// thread took which arena decided whether the 10 MiB a 100k-key disk snapshot's decode leaves
/// free stayed resident (36 or 45 MiB after the same restart, `benches/coldstart.sh`).
pub const ARENAS: i32 = 1;

/// Allocations of at least this many bytes are mapped on their own (and unmapped when freed):
/// glibc's initial threshold (128 KiB) doubled, fixed.
pub const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Caps glibc's arenas at [`ARENAS`] and fixes its mmap threshold at [`MMAP_THRESHOLD`]. Call
/// before any thread is spawned (an arena is bound to the thread that first takes it). An
/// explicit `MALLOC_ARENA_MAX` or `MALLOC_MMAP_THRESHOLD_` (or the same in `GLIBC_TUNABLES`)
/// in the environment wins: an operator's setting is never overridden.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").ok();
        let set_by_operator = |env: &str, tunable: &str| {
            set_by_operator(
                std::env::var_os(env).is_some(),
                tunables.as_deref(),
                tunable,
            )
        };
        if !set_by_operator("MALLOC_MMAP_THRESHOLD_", "mmap_threshold") {
            // SAFETY: as below; M_MMAP_THRESHOLD with a value under 32 MiB is documented in
            // mallopt(3) and valid at any time.
            let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
            if ok != 1 {
                tracing::debug!(
                    "mallopt(M_MMAP_THRESHOLD) was refused; the allocator keeps its default"
                );
            }
        }
        if !set_by_operator("MALLOC_ARENA_MAX", "arena_max") {
            // SAFETY: mallopt only sets a parameter of glibc's allocator; M_ARENA_MAX with a
            // positive value is documented in mallopt(3) and valid at any time.
            let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
            if ok != 1 {
                tracing::debug!(
                    "mallopt(M_ARENA_MAX) was refused; the allocator keeps its default"
                );
            }
        }
    }
}

/// Whether the operator set an allocator parameter: its environment variable (`env_set`), or
/// `tunable` among `GLIBC_TUNABLES` (`glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=…`).
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn set_by_operator(env_set: bool, tunables: Option<&str>, tunable: &str) -> bool {
    env_set
        || tunables.is_some_and(|t| {
            t.split(':')
                .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
                .any(|k| k == format!("glibc.malloc.{tunable}"))
        })
}

/// A trim is running: one asked for meanwhile is not run beside it (one process may run many
/// sync loops, as the tests and `benches/propagation` do; their trims would repeat one another)
/// but once more after it, by the thread running it ([`AGAIN`]).
static TRIMMING: AtomicBool = AtomicBool::new(false);

/// A trim was asked for since the running one started: what was freed meanwhile is not yet
/// given back.
static AGAIN: AtomicBool = AtomicBool::new(false);

/// Returns the allocator's free pages to the kernel; true when this call released some memory.
/// When another trim is running, this one returns at once and that one runs once more when it
/// ends (so memory freed after it started is given back too). Blocks for the trim: call it off
/// the async workers, or use [`release_free_memory_soon`].
pub fn release_free_memory() -> bool {
    AGAIN.store(true, Ordering::SeqCst);
    let mut released = false;
    // The outer loop closes the gap between the runner's last look at `AGAIN` and its release
    // of `TRIMMING`: a request made then is seen here. Every access is `SeqCst`: a requester
    // stores `AGAIN` then reads `TRIMMING`, the runner stores `TRIMMING` then reads `AGAIN`, and
    // only a single total order guarantees that one of the two sees the other's store.
    while AGAIN.load(Ordering::SeqCst) {
        if TRIMMING.swap(true, Ordering::SeqCst) {
            return released;
        }
        while AGAIN.swap(false, Ordering::SeqCst) {
            released |= trim();
        }
        TRIMMING.store(false, Ordering::SeqCst);
    }
    released
}

/// [`release_free_memory`] on tokio's blocking pool (inline outside a runtime).
pub fn release_free_memory_soon() {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(release_free_memory);
        }
        Err(_) => {
            release_free_memory();
        }
    }
}

fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim(3) takes no pointers and is thread-safe (it locks each arena).
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Bytes the allocator has handed out and not had back (glibc's `mallinfo2`: the arenas'
/// allocated chunks plus the mmapped ones); `None` off Linux glibc. What live data takes,
/// whatever the allocator keeps resident around it (benches: `memory/100k`).
pub fn in_use_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallinfo2` takes no arguments and returns a plain struct by value.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks + info.hblkhd) as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_use_bytes_counts_live_allocations() {
        let Some(before) = in_use_bytes() else {
            // Only Linux glibc counts.
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            panic!("mallinfo2 gave nothing on glibc");
            #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
            return;
        };
        // One mmapped chunk, never touched (so cheap), far larger than what the other tests
        // running beside this one allocate or free meanwhile.
        let big = vec![0u8; 256 << 20];
        let during = in_use_bytes().expect("counted");
        assert!(during >= before + (192 << 20), "{before} -> {during}");
        drop(std::hint::black_box(big));
        let after = in_use_bytes().expect("counted");
        assert!(after + (192 << 20) <= during, "{during} -> {after}");
    }

    #[test]
    fn an_operators_allocator_setting_wins() {
        for (env_set, tunables, tunable, expected) in [
            (false, None, "arena_max", false),
            (true, None, "arena_max", true),
            (false, Some("glibc.malloc.arena_max=4"), "arena_max", true),
            (
                false,
                Some("glibc.malloc.mmap_threshold=65536"),
                "arena_max",
                false,
            ),
            (
                false,
                Some("glibc.malloc.arena_max=4:glibc.malloc.mmap_threshold=65536"),
                "mmap_threshold",
                true,
            ),
            (
                false,
                Some("glibc.malloc.tcache_count=0"),
                "mmap_threshold",
                false,
            ),
            (false, Some(""), "arena_max", false),
        ] {
            assert_eq!(
                set_by_operator(env_set, tunables, tunable),
                expected,
                "{env_set} {tunables:?} {tunable}"
            );
        }
    }

    #[test]
    fn freed_memory_goes_back_to_the_kernel() {
        limit_arenas();
        // 64 MiB in small pieces (below the mmap threshold, so they come from an arena),
        // freed: the allocator holds them until it is trimmed.
        let pieces: Vec<Vec<u8>> = (0..16 * 1024).map(|i| vec![i as u8; 4096]).collect();
        assert_eq!(pieces.iter().map(Vec::len).sum::<usize>(), 64 << 20);
        drop(pieces);
        // Take the one-trim-at-a-time flag, as `release_free_memory` does: another test's sync
        // loop may ask for a trim meanwhile, and that one must not run beside this one, only
        // be recorded for the runner to run after.
        while TRIMMING.swap(true, Ordering::SeqCst) {
            std::thread::yield_now();
        }
        AGAIN.store(false, Ordering::SeqCst);
        assert!(!release_free_memory(), "a second trim ran beside the first");
        assert!(
            AGAIN.load(Ordering::SeqCst),
            "the request was not left for the runner"
        );
        let released = trim();
        TRIMMING.store(false, Ordering::SeqCst);
        // The request left for the runner: run it, as the runner would have.
        release_free_memory();

        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(
                released,
                "malloc_trim found no free page after 64 MiB were freed"
            );
        } else {
            assert!(!released);
        }
    }
}
