//! The one integration-test binary: real processes, real sockets.

mod harness;
mod harness_selftest;
mod redis_faults;
mod redis_sync;
mod stack;
