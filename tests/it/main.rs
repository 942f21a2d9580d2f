//! The one integration-test binary: real processes, real sockets.
//!
//! - `harness`: real redis-server / PostgreSQL processes, a fault proxy, polling helpers.
//! - `support`: `rtconfig dev` started through its composition root on port 0, an HTTP client
//!   and an SSE reader.
//! - `dev_*`: the core in `dev` mode, end to end (`cargo test --test it dev_`).
//! - `stack`, `redis_*`: admin + sidecars on a spawned redis-server; the fault suite; `fleet`:
//!   the fleet view on such a deployment; `ofrep_versions`: OFREP's per-flag versions, in `dev`
//!   and on a sidecar.
//! - `pg_*`, `admin_embedded`: the PostgreSQL ledger, several admins, PostgreSQL faults.
//! - `rbac`, `auth_http` (with `auth_support`): the access layer through HTTP, on the embedded
//!   store and on PostgreSQL.
//! - `admin_events`: the admin's SSE stream of commits and its end on revocation.
//! - `pg_auth`, `cli_users`, `dev_bootstrap`: the auth stores on PostgreSQL, the `user`/`token`
//!   commands, `dev`'s first start.
//! - `schema_fields`: `require_comment` on every write path; unknown schema-level fields (check
//!   refuses, a sidecar warns).
//! - `security`: the bearer scheme, the `Host` check, secrets' equality, security headers, TLS.
//! - `boundaries`: the dependency direction, checked on the source tree.
//! - `oidc`: SSO against a real OpenID provider (`oidc-provider` under node).

mod boundaries;
mod harness;
mod harness_selftest;
mod support;

mod dev_admin_api;
mod dev_binary;
mod dev_bootstrap;
mod dev_persistence;
mod dev_read_api;
mod dev_watch;
mod history_api;
mod openapi_conformance;
mod strict_input;

mod schema_fields;
mod security;

mod disk_faults;
mod fleet;
mod hint;
mod ofrep_versions;
mod redis_cluster;
mod redis_faults;
mod redis_sync;
mod redis_tls;
mod stack;
mod staleness;

mod auth_http;
mod auth_sso;
mod auth_support;
mod browser;
mod browser_admin;
mod browser_history;
mod rbac;

mod admin_embedded;
mod admin_events;
mod cli_users;
mod pg_admin;
mod pg_auth;
mod pg_faults;
mod pg_ledger;
mod pg_stack;
mod pg_tls;
mod ui_data;

mod docker;
mod k8s;

mod oidc;
mod ui_people;

mod python_client;
