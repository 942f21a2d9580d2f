//! rtconfig: realtime configuration.
//!
//! Apps read configuration over localhost HTTP from a **sidecar** that serves an immutable,
//! pre-encoded snapshot from memory; operators change values through the **admin**, which
//! records every change as a changeset in a **ledger** and distributes it.
//!
//! `rtconfig dev` — one process, distribution in-process:
//!
//! ```text
//!  operator ─▶ admin (admin::)  validate (schema::) → commit (ledger::embedded) → AfterCommit
//!                                                      local::LocalPublisher swaps the snapshot
//!  app ─GET localhost:7070─▶ sidecar (sidecar::) → snapshot:: (ArcSwap, never waits)
//! ```
//!
//! Production — `rtconfig admin` (N replicas) and one `rtconfig sidecar` per pod, Redis between:
//!
//! ```text
//!  operator ─▶ admin (admin::)  validate (schema::) → commit (ledger::postgres: PostgreSQL,
//!                    │                                  COMMIT + NOTIFY; or ledger::embedded)
//!                    │ AfterCommit: relay::RelayKick
//!                    ▼
//!              relay (relay::, run by the one leader:: per ledger, fenced by its term)
//!                    │ ledger changes_since → Lua APPLY / SWAP (redis::scripts)
//!                    ▼
//!              Redis (redis::keys)  rtconfig:{ns}:items | :log | :meta, PUBLISH :changes
//!                    │ Pub/Sub hint, resync timer → SYNC_READ / FULL_READ
//!                    ▼
//!              sync loop (sync::) ─ the only writer ─▶ snapshot:: ─▶ disk:: (--snapshot-path)
//!                                                      │ guard() (ArcSwap, never waits)
//!  app ─GET localhost:7070─▶ sidecar (sidecar::) ◀─────┘ read API
//! ```
//!
//! - The **read path** is `sidecar::read` → `snapshot::SnapshotStore::guard` → `Bytes::clone`,
//!   the same in both shapes.
//! - The **write path** is `admin::api` → `admin::write::WritePath` → `ledger::Ledger::commit`
//!   → `admin::write::AfterCommit` (in `dev`: `local::LocalPublisher`; in production:
//!   `relay::RelayKick`, which wakes the relay; the other admins' commits wake it by `NOTIFY`).
//! - The **sync path** (production only): the relay projects every committed changeset into
//!   Redis, then the sidecar's sync loop reads it and swaps in a new snapshot. Redis is a
//!   rebuildable projection of the ledger; the sidecar keeps serving its last snapshot (or its
//!   disk copy) while Redis is away.
//! - `app` holds the composition roots used by `main` and by the integration tests.
//!
//! Invariants: a snapshot never goes back in version within an epoch, nor in epoch; a write is
//! acknowledged only after it is durable; one changeset becomes visible all at once; secret
//! values never appear in logs, admin output or error bodies.

// API errors are built on cold paths only; boxing them would buy nothing measurable.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod constance;
pub mod content_hash;
pub mod disk;
pub mod heap;
pub mod http;
pub mod journal;
pub mod key_file;
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
pub mod ui;
