//! rtconfig: realtime configuration.
//!
//! Apps read configuration over localhost HTTP from a **sidecar** that serves an immutable,
//! pre-encoded snapshot from memory; operators change values through the **admin**, which
//! records every change as a changeset in a **ledger** and distributes it.
//!
//! ```text
//!  operator ─▶ admin (admin::)  validate (schema::) → commit (ledger::) → distribute
//!                                   dev: local:: swaps the snapshot in-process
//!  app ─GET localhost:7070─▶ sidecar (sidecar::) → snapshot:: (ArcSwap, never waits)
//! ```
//!
//! - The **read path** is `sidecar::read` → `snapshot::SnapshotStore::guard` → `Bytes::clone`.
//! - The **write path** is `admin::api` → `admin::write::WritePath` → `ledger::Ledger::commit`
//!   → `admin::write::AfterCommit` (in `dev`: `local::LocalPublisher`).
//! - `app` holds the composition roots used by `main` and by the integration tests.
//!
//! Invariants: a snapshot never goes back in version within an epoch, nor in epoch; a write is
//! acknowledged only after it is durable; one changeset becomes visible all at once; secret
//! values never appear in logs, admin output or error bodies.

// API errors are built on cold paths only; boxing them would buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod app;
pub mod cli;
pub mod disk;
pub mod http;
pub mod leader;
pub mod ledger;
pub mod local;
pub mod metrics;
pub mod private_file;
pub mod redis;
pub mod relay;
pub mod schema;
pub mod settings;
pub mod shutdown;
pub mod sidecar;
pub mod snapshot;
pub mod sync;
pub mod telemetry;
