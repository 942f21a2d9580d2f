//! The access layer shared by the admin JSON API and the web UI (DESIGN §6 "Auth").
//!
//! - [`bearer`]: the token of an `Authorization: Bearer …` header (case-insensitive scheme).
//! - [`role`]: roles, grants and the one permission decision ([`role::Grants::allows`]).
//! - [`store`]: users, sessions, API tokens, login failures and the audit log
//!   ([`store::AuthStore`]), embedded or on PostgreSQL.
//! - [`embedded`]: the store in the data dir (a journal next to the embedded ledger);
//!   [`memory`] holds its state and the pure functions that change it.
//! - [`postgres`]: the store in the admin's PostgreSQL (`migrations/V2__auth.sql`).
//! - [`bootstrap`]: `rtconfig dev`'s first start (the `admin` user, `<data-dir>/dev-token`).
//! - [`purge`]: the admin's periodic purge of ended sessions.
//! - [`revocation`]: notices of ended sessions, changed users and revoked tokens
//!   ([`revocation::Revocations`]), announced by the store wrapper [`revocation::Announcing`].
//! - [`cli`]: `rtconfig user …` and `rtconfig token …`, straight against a store.
//! - [`password`]: the password policy ([`password::PasswordPolicy`]) and argon2id hashing behind
//!   a concurrency cap ([`password::Hasher`]).
//! - [`throttle`]: the login throttle decision ([`throttle::decide`]) and the per-IP state
//!   ([`throttle::IpThrottle`]).
//! - [`client_ip`]: who the client is behind `--trusted-proxy` hops ([`client_ip::client_ip`]).
//! - [`secrets`]: random credentials (API tokens, session ids) and their stored digests.
//! - [`principal`]: who a request is ([`Principal`]): a user's session, a token, the bootstrap
//!   token; its actor name and effective grants.
//! - [`guard`]: the one place requests are authenticated and authorized (the middleware every
//!   admin route runs in, with the route's [`guard::Needs`] from the route table).
//! - [`csrf`], [`cookie`], [`session_policy`]: the pure parts of sessions: CSRF checks, the
//!   `__Host-rtconfig` cookie, idle timeout and lifetime.
//! - [`audit`]: the audit trail (store + structured log).
//! - [`service`]: [`Auth`], the access layer as one running thing.
//! - [`oidc`]: single sign-on with OpenID Connect (the relying party and the role map).
//! - [`secret_box`]: secrets at rest (TOTP secrets) sealed with XChaCha20-Poly1305 under the
//!   deployment's key ([`secret_box::SecretBox`]).
//! - [`totp`]: the TOTP second factor: enrolment, code checks with replay refusal, recovery
//!   codes.

pub mod audit;
pub mod bearer;
pub mod bootstrap;
pub mod cli;
pub mod client_ip;
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod cookie;
pub mod csrf;
pub mod embedded;
pub mod guard;
pub mod login;
pub mod memory;
pub mod oidc;
pub mod password;
pub mod postgres;
pub mod principal;
pub mod purge;
pub mod revocation;
pub mod role;
pub mod secret_box;
pub mod secrets;
pub mod service;
pub mod session_policy;
pub mod store;
pub mod throttle;
pub mod totp;

pub use principal::Principal;
pub use role::{Grant, Grants, Need, Role};
pub use service::{Auth, AuthConfig};
pub use store::AuthStore;
