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
//! - [`limit_arenas`], once, before the runtime's threads start: at most [`ARENAS`] arenas, and
//!   a fixed mmap threshold ([`MMAP_THRESHOLD`]): glibc's default one grows to the largest
//!   mapped chunk freed (the 30 MB of a 100k-key disk snapshot's file), after which buffers of
//!   megabytes (a `/v1/configs` document, a full fetch's reply) come from an arena, and an
//!   arena other than the main one never gives back the free top of its heap, trimmed or not
//!   (9 MiB resident after a 100k-key restart). Fixed, every buffer of 256 KiB or more is a
//!   mapping of its own, unmapped when freed;
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
        let set_by_operator = |env: &str, tunable: &str| {
            std::env::var_os(env).is_some()
                || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains(tunable))
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
    // of `TRIMMING`: a request made then is seen here.
    while AGAIN.load(Ordering::SeqCst) {
        if TRIMMING.swap(true, Ordering::AcqRel) {
            return released;
        }
        while AGAIN.swap(false, Ordering::SeqCst) {
            released |= trim();
        }
        TRIMMING.store(false, Ordering::Release);
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
    fn a_large_buffer_is_a_mapping_of_its_own_from_any_thread() {
        limit_arenas();
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            return;
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        std::thread::spawn(|| {
            let mapped = || {
                // SAFETY: as in `in_use_bytes`.
                unsafe { libc::mallinfo2() }.hblkhd
            };
            // What glibc's default threshold would have grown to after a 16 MiB buffer was
            // freed; fixed, the next 8 MiB buffer is still mapped (not taken from an arena).
            drop(std::hint::black_box(vec![1u8; 16 << 20]));
            let before = mapped();
            let buffer = std::hint::black_box(vec![1u8; 8 << 20]);
            let during = mapped();
            drop(buffer);
            // Other tests map and unmap meanwhile: compare with a margin.
            assert!(during >= before + (6 << 20), "{before} -> {during}");
        })
        .join()
        .expect("thread");
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
        while TRIMMING.swap(true, Ordering::AcqRel) {
            std::thread::yield_now();
        }
        AGAIN.store(false, Ordering::SeqCst);
        assert!(!release_free_memory(), "a second trim ran beside the first");
        assert!(
            AGAIN.load(Ordering::SeqCst),
            "the request was not left for the runner"
        );
        let released = trim();
        TRIMMING.store(false, Ordering::Release);

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
