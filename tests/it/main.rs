//! The one integration-test binary: real processes, real sockets.

mod admin_embedded;
mod harness;
mod harness_selftest;
mod pg_admin;
mod pg_faults;
mod pg_ledger;
mod pg_stack;
