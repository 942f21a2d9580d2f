//! The access layer shared by the admin JSON API and the web UI (DESIGN §6 "Auth").
//!
//! - [`bearer`]: the token of an `Authorization: Bearer …` header (case-insensitive scheme).
//! - [`role`]: roles, grants and the one permission decision ([`role::Grants::allows`]).
//! - [`store`]: users, sessions, API tokens, login failures and the audit log
//!   ([`store::AuthStore`]), embedded or on PostgreSQL.

pub mod bearer;
pub mod role;
pub mod store;

pub use role::{Grant, Grants, Need, Role};
pub use store::AuthStore;
