//! The access layer shared by the admin JSON API and the web UI (DESIGN §6 "Auth").
//!
//! - [`role`]: roles, grants and the one permission decision ([`role::Grants::allows`]).
//! - [`store`]: users, sessions, API tokens, login failures and the audit log
//!   ([`store::AuthStore`]), embedded or on PostgreSQL.
//! - [`password`]: the password policy ([`password::PasswordPolicy`]) and argon2id hashing behind
//!   a concurrency cap ([`password::Hasher`]).
//! - [`throttle`]: the login throttle decision ([`throttle::decide`]) and the per-IP state
//!   ([`throttle::IpThrottle`]).
//! - [`client_ip`]: who the client is behind `--trusted-proxy` hops ([`client_ip::client_ip`]).

pub mod client_ip;
pub mod password;
pub mod role;
pub mod store;
pub mod throttle;

pub use role::{Grant, Grants, Need, Role};
pub use store::AuthStore;
