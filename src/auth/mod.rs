//! The access layer shared by the admin JSON API and the web UI (DESIGN §6 "Auth").
//!
//! - [`bearer`]: the token of an `Authorization: Bearer …` header (case-insensitive scheme).
//! - [`role`]: roles, grants and the one permission decision ([`role::Grants::allows`]).
//! - [`store`]: users, sessions, API tokens, login failures and the audit log
//!   ([`store::AuthStore`]), embedded or on PostgreSQL.
//! - [`password`]: the password policy ([`password::PasswordPolicy`]) and argon2id hashing behind
//!   a concurrency cap ([`password::Hasher`]).
//! - [`throttle`]: the login throttle decision ([`throttle::decide`]) and the per-IP state
//!   ([`throttle::IpThrottle`]).
//! - [`client_ip`]: who the client is behind `--trusted-proxy` hops ([`client_ip::client_ip`]).
//! - [`secrets`]: random credentials (API tokens, session ids) and their stored digests.
//! - [`oidc`]: single sign-on with OpenID Connect (the relying party and the role map).
//! - [`secret_box`]: secrets at rest (TOTP secrets) sealed with XChaCha20-Poly1305 under the
//!   deployment's key ([`secret_box::SecretBox`]).
//! - [`totp`]: the TOTP second factor: enrolment, code checks with replay refusal, recovery
//!   codes.

pub mod bearer;
pub mod client_ip;
pub mod oidc;
pub mod password;
pub mod role;
pub mod secret_box;
pub mod secrets;
pub mod store;
pub mod throttle;
pub mod totp;

pub use role::{Grant, Grants, Need, Role};
pub use store::AuthStore;
