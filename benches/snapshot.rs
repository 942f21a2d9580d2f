//! Criterion benches of the read path and of snapshot rebuilds (`cargo bench --bench snapshot`).
//!
//! - `memory/100k` (printed, not timed): the RSS one 100k-key snapshot takes.
//! - `lookup/*`: one read against the demo schema's snapshot — `guard()` (the arc-swap load) +
//!   the hash lookup + `Bytes::clone` of the pre-encoded body, for a hit and for a miss; and
//!   `lookup/hit_100k`, a hit in a 100k-key snapshot (a deeper persistent vector), its body
//!   already built.
//! - `apply/{10k,100k}`: `Snapshot::apply` of a one-key change to a snapshot of that size (what
//!   the sync loop does for a one-key changeset; the old snapshot stays alive, as it does while
//!   the store serves it), and `apply/100k_publish`: the same followed by
//!   `SnapshotStore::publish` (delta taken from the apply, the swap, the wake-up, the drop of the
//!   replaced snapshot), then the first read of the changed key (its body built lazily).
//! - `build/{100,1k,10k,100k}`: `Snapshot::build` of a generated schema (mixed types), half of
//!   whose keys have a stored value (validated and encoded), the other half serving defaults.
//! - `publish/10k`: `SnapshotStore::publish` of a 10k-key snapshot with one changed value (the
//!   diff against the current snapshot, the recent-changes entry, the swap, the wake-up, and the
//!   drop of the replaced snapshot). The snapshot is built outside the timed part.
//! - `router/*`: one `GET /v1/configs/{key}` through the real read router (middleware, routing,
//!   handler, body collected), without sockets, on a current-thread runtime. Requests carry
//!   `Host: 127.0.0.1:7070`, checked by a loopback listener's `Host` policy as in production.
//! - `host/*`: the `Host` check alone (`http::host::HostPolicy::allows`) for the Host values a
//!   read typically carries.
//!
//! Sample counts and times are tuned so the whole run takes about 2–3 minutes; see
//! `docs/PERFORMANCE.md` for the figures.

use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode};
use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use rtconfig::http::host::HostPolicy;
use rtconfig::metrics::{Exposition, HttpMetrics, SnapshotMetrics};
use rtconfig::schema::{Schema, SchemaSet, ValueType};
use rtconfig::shutdown::Shutdown;
use rtconfig::sidecar::{read_router, LocalSync, SidecarState};
use rtconfig::snapshot::{Position, Snapshot, SnapshotStore, Source};

/// A generated schema with its stored values.
type Generated = (Schema, Vec<(String, Value)>);

/// The demo schema shipped in `config/`, as `rtconfig dev` loads it.
fn demo_schema() -> Arc<Schema> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let set = SchemaSet::load_dir(&dir).unwrap_or_else(|p| panic!("demo schema: {p:?}"));
    set.get("demo").cloned().expect("the demo namespace")
}

/// The demo snapshot with a couple of stored values, as after a few admin writes.
fn demo_store() -> Arc<SnapshotStore> {
    let schema = demo_schema();
    let stored = [
        ("SITE_NAME", json!("Config Manager (bench)")),
        ("ITEMS_PER_PAGE", json!(7)),
    ];
    let snap = Snapshot::build(&schema, Position::new(1, 3), Source::Local, stored);
    let store = Arc::new(SnapshotStore::new(snap, None, false));
    store.confirm();
    store
}

/// A generated schema of `n` keys cycling through string, int, bool and float.
fn generated_schema(n: usize) -> Schema {
    let names: Vec<String> = (0..n).map(|i| format!("KEY_{i:06}")).collect();
    let keys: Vec<(&str, ValueType, Value)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let (ty, default) = match i % 4 {
                0 => (ValueType::String, json!(format!("default value {i}"))),
                1 => (ValueType::Int, json!(i as i64)),
                2 => (ValueType::Bool, json!(i % 3 == 0)),
                _ => (ValueType::Float, json!(i as f64 + 0.5)),
            };
            (name.as_str(), ty, default)
        })
        .collect();
    Schema::from_keys("bench", &keys)
}

/// Stored values for every other key of a generated schema (same types as the defaults).
fn stored_values(schema: &Schema, generation: u64) -> Vec<(String, Value)> {
    schema
        .keys()
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(i, def)| {
            let v = match def.ty {
                ValueType::String => json!(format!("stored value {i} g{generation}")),
                ValueType::Int => json!(i as i64 * 10),
                ValueType::Bool => json!(i % 3 != 0),
                _ => json!(i as f64 * 2.0 + 0.25),
            };
            (def.name.to_string(), v)
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let store = demo_store();
    let mut g = c.benchmark_group("lookup");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // What `GET /v1/configs/{key}` does with the snapshot: load, look up, clone the body.
    g.bench_function("hit", |b| {
        b.iter(|| {
            let snap = store.guard();
            let entry = snap.get(black_box("SITE_NAME"));
            entry.map(|e| snap.key_body(e, false))
        })
    });
    g.bench_function("miss", |b| {
        b.iter(|| {
            let snap = store.guard();
            let entry = snap.get(black_box("NO_SUCH_KEY"));
            entry.map(|e| snap.key_body(e, false))
        })
    });
    g.finish();
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("build");
    g.sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1));
    for (label, n) in [
        ("100", 100),
        ("1k", 1_000),
        ("10k", 10_000),
        ("100k", 100_000),
    ] {
        // Generated on first use, so that a filtered run (`-- router`) skips the big schemas.
        let input: OnceLock<Generated> = OnceLock::new();
        let (samples, secs) = match n {
            100_000 => (10, 8),
            10_000 => (20, 5),
            _ => (40, 3),
        };
        g.sample_size(samples)
            .measurement_time(Duration::from_secs(secs));
        g.throughput(criterion::Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(label), &n, |b, &n| {
            let (schema, stored) = input.get_or_init(|| {
                let schema = generated_schema(n);
                let stored = stored_values(&schema, 0);
                (schema, stored)
            });
            b.iter(|| {
                Snapshot::build(
                    schema,
                    Position::new(1, 2),
                    Source::Local,
                    stored.iter().map(|(k, v)| (k.as_str(), v)),
                )
            })
        });
    }
    g.finish();
}

fn publish(c: &mut Criterion) {
    let input: OnceLock<(Generated, SnapshotStore)> = OnceLock::new();
    let mut version = 1;
    let mut g = c.benchmark_group("publish");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("10k", |b| {
        let ((schema, stored), store) = input.get_or_init(|| {
            let schema = generated_schema(10_000);
            let stored = stored_values(&schema, 0);
            let store = SnapshotStore::new(
                Snapshot::build(
                    &schema,
                    Position::new(1, 1),
                    Source::Local,
                    stored.iter().map(|(k, v)| (k.as_str(), v)),
                ),
                None,
                false,
            );
            ((schema, stored), store)
        });
        b.iter_batched(
            || {
                // One changed value per version, like a one-key changeset.
                version += 1;
                let mut next = stored.clone();
                next[0].1 = json!(format!("changed at {version}"));
                Snapshot::build(
                    schema,
                    Position::new(1, version),
                    Source::Local,
                    next.iter().map(|(k, v)| (k.as_str(), v)),
                )
            },
            |snap| store.publish(snap),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn router(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut registry = rtconfig::metrics::registry();
    let http = HttpMetrics::register(&mut registry);
    let snapshot = SnapshotMetrics::register(&mut registry);
    let state = SidecarState::new(
        demo_store(),
        Arc::new(Exposition::new(registry)),
        http,
        snapshot,
        Shutdown::new(),
        Arc::new(LocalSync),
        1024,
    );
    let app = read_router(state, HostPolicy::new(([127, 0, 0, 1], 7070).into(), &[]));
    let mut g = c.benchmark_group("router");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, path) in [
        ("get_key_hit", "/v1/configs/SITE_NAME"),
        ("get_key_miss", "/v1/configs/NO_SUCH_KEY"),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let req = Request::get(path)
                    .header(http::header::HOST, "127.0.0.1:7070")
                    .body(Body::empty())
                    .expect("request");
                let resp = app.clone().oneshot(req).await.expect("infallible");
                let status = resp.status();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                (status, body)
            })
        });
    }
    g.finish();
}

fn host(c: &mut Criterion) {
    let loopback = HostPolicy::new(([127, 0, 0, 1], 7070).into(), &[]);
    let listed = HostPolicy::new(
        ([0, 0, 0, 0], 7070).into(),
        &["config.example.com".to_owned(), "rtconfig".to_owned()],
    );
    let uri: http::Uri = "/v1/configs/SITE_NAME".parse().expect("uri");
    let mut g = c.benchmark_group("host");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (name, policy, host) in [
        ("loopback_ip", &loopback, "127.0.0.1:7070"),
        ("localhost", &loopback, "localhost:7070"),
        ("listed_name", &listed, "config.example.com"),
        ("refused", &loopback, "evil.example:7070"),
    ] {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, http::HeaderValue::from_static(host));
        g.bench_function(name, |b| {
            b.iter(|| black_box(policy).allows(black_box(&uri), black_box(&headers)))
        });
    }
    g.finish();
}

/// Resident memory of this process in bytes (`/proc/self/statm`), for the memory figure.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("rss")
        .parse()
        .expect("number");
    pages * 4096
}

/// A 100k-key snapshot (half the keys stored) and its schema.
fn snapshot_100k(schema: &Schema) -> Snapshot {
    let stored = stored_values(schema, 0);
    Snapshot::build(
        schema,
        Position::new(1, 2),
        Source::Local,
        stored.iter().map(|(k, v)| (k.as_str(), v)),
    )
}

/// `memory/100k` (printed, not timed): what one 100k-key snapshot takes. Five are built and
/// kept. Two measures: the allocator's count of bytes in use (`heap::in_use_bytes`, exact:
/// what the snapshot's live allocations take), and RSS growth — which reads 0 once a snapshot
/// fits in memory the allocator already holds (freed while the schema was generated), so its
/// figure is the median growth of the last three builds and only an upper bound of use.
fn memory(_: &mut Criterion) {
    let schema = generated_schema(100_000);
    let stored = stored_values(&schema, 0);
    let mut kept = Vec::new();
    let (mut growth, mut in_use) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let before = black_box(rss_bytes());
        let used_before = rtconfig::heap::in_use_bytes();
        kept.push(black_box(Snapshot::build(
            &schema,
            Position::new(1, 2),
            Source::Local,
            stored.iter().map(|(k, v)| (k.as_str(), v)),
        )));
        growth.push(black_box(rss_bytes()).saturating_sub(before));
        if let (Some(b), Some(a)) = (used_before, rtconfig::heap::in_use_bytes()) {
            in_use.push(a.saturating_sub(b));
        }
    }
    let mb = |xs: &[u64]| {
        xs.iter()
            .map(|g| (*g as f64 / 1e5).round() / 10.0)
            .collect::<Vec<_>>()
    };
    let mut last3 = growth[2..].to_vec();
    last3.sort_unstable();
    let mut used = in_use.clone();
    used.sort_unstable();
    eprintln!(
        "memory/100k: one snapshot of 100k keys allocates {} MB (per build: {:?} MB); RSS growth {:.1} MB (per build: {:?} MB)",
        used.get(used.len() / 2)
            .map_or("(no allocator count here)".to_owned(), |u| format!("{:.1}", *u as f64 / 1e6)),
        mb(&in_use),
        last3[1] as f64 / 1e6,
        mb(&growth)
    );
    black_box(&kept);
}

fn lookup_100k(c: &mut Criterion) {
    let schema = generated_schema(100_000);
    let store = SnapshotStore::new(snapshot_100k(&schema), None, false);
    let key = "KEY_054321";
    {
        let snap = store.guard();
        let e = snap.get(key).expect("key");
        snap.key_body(e, false);
    }
    let mut g = c.benchmark_group("lookup");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("hit_100k", |b| {
        b.iter(|| {
            let snap = store.guard();
            let entry = snap.get(black_box(key));
            entry.map(|e| snap.key_body(e, false))
        })
    });
    g.finish();
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (label, n) in [("10k", 10_000), ("100k", 100_000)] {
        let schema = generated_schema(n);
        let stored = stored_values(&schema, 0);
        let base = Snapshot::build(
            &schema,
            Position::new(1, 2),
            Source::Local,
            stored.iter().map(|(k, v)| (k.as_str(), v)),
        );
        let mut version = 2;
        g.bench_function(label, |b| {
            b.iter(|| {
                version += 1;
                let value = json!(format!("changed at {version}"));
                base.apply(
                    &schema,
                    Position::new(1, version),
                    Source::Local,
                    [("KEY_000000", Some(&value), version)],
                )
            })
        });
    }
    let schema = generated_schema(100_000);
    let store = SnapshotStore::new(snapshot_100k(&schema), None, false);
    let mut version = 2;
    g.bench_function("100k_publish", |b| {
        b.iter(|| {
            version += 1;
            let value = json!(format!("changed at {version}"));
            let next = store.load().apply(
                &schema,
                Position::new(1, version),
                Source::Local,
                [("KEY_050000", Some(&value), version)],
            );
            store.publish(next).expect("newer");
            let snap = store.guard();
            let e = snap.get("KEY_050000").expect("key");
            snap.key_body(e, false)
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    memory,
    lookup,
    lookup_100k,
    apply,
    build,
    publish,
    router,
    host
);
criterion_main!(benches);
