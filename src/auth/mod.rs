//! The access layer shared by the admin JSON API and the web UI (DESIGN §6 "Auth").
//!
//! - [`role`]: roles, grants and the one permission decision ([`role::Grants::allows`]).
//! - [`store`]: users, sessions, API tokens, login failures and the audit log
//!   ([`store::AuthStore`]), embedded or on PostgreSQL.
//! - [`embedded`]: the store in the data dir (a journal next to the embedded ledger);
//!   [`memory`] holds its state and the pure functions that change it.
//! - [`postgres`]: the store in the admin's PostgreSQL (`migrations/V2__auth.sql`).
//! - [`cli`]: `rtconfig user …` and `rtconfig token …`, straight against a store.
//! - [`secrets`]: random credentials (API tokens, session ids) and their stored digests.

pub mod cli;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod embedded;
pub mod memory;
pub mod postgres;
pub mod role;
pub mod secrets;
pub mod store;

pub use role::{Grant, Grants, Need, Role};
pub use store::AuthStore;
