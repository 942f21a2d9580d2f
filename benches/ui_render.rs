//! Server-side render time of the web UI's configs page (`cargo bench --bench ui_render`), and
//! its page weight.
//!
//! - `configs_page/{8,1000,10000}`: building the page model (`ui::pages::configs::page_model`:
//!   one view per key with its editor, constraints, last change and search text) and rendering
//!   the askama template to HTML, for the demo schema (8 keys) and generated schemas of 1,000
//!   and 10,000 keys in groups of 50 (mixed types, half of them with a stored value changed
//!   by one of 1,000 recent changesets). The ledger reads are not part of it (in-memory here;
//!   PostgreSQL's are measured by `benches/pg_ledger.rs`).
//! - Before the timing it prints the page weight: the HTML of each page and the embedded CSS and
//!   JS, raw and gzip-compressed (what a browser downloads; the assets once, then cached).
//!
//! Figures are in docs/PERFORMANCE.md.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use askama::Template;
use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use rtconfig::admin::mask::Masker;
use rtconfig::auth::Principal;
use rtconfig::ledger::{CurrentValues, NamespaceState, StoredValue};
use rtconfig::schema::Schema;
use rtconfig::ui::assets::asset;
use rtconfig::ui::edit::KeyErrors;
use rtconfig::ui::pages::configs::{page_model, Authors, Inputs};

/// Stored values of a namespace: key → value.
type Stored = Vec<(String, Value)>;

fn demo_schema() -> Schema {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let text = std::fs::read_to_string(dir.join("demo.toml")).expect("demo.toml");
    Schema::parse(&dir.join("demo.toml"), &text).expect("demo schema")
}

/// `n` keys in groups of 50, cycling through string, int, bool, enum, float, json, duration.
fn generated(n: usize) -> (Schema, Stored) {
    let mut text = String::from("namespace = \"big\"\ndescription = \"generated\"\n");
    let names: Vec<String> = (0..n).map(|i| format!("KEY_{i:05}")).collect();
    for (g, chunk) in names.chunks(50).enumerate() {
        let list: Vec<String> = chunk.iter().map(|k| format!("{k:?}")).collect();
        text.push_str(&format!(
            "[[group]]\nname = \"Group {g}\"\nkeys = [{}]\n",
            list.join(",")
        ));
    }
    let mut stored = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (ty, default, extra, value) = match i % 7 {
            0 => (
                "string",
                "\"hello\"".to_owned(),
                "max_length = 200\n",
                json!(format!("value {i}")),
            ),
            1 => ("int", "5".to_owned(), "min = 0\nmax = 1000000\n", json!(i)),
            2 => ("bool", "false".to_owned(), "", json!(true)),
            3 => (
                "enum",
                "\"a\"".to_owned(),
                "choices = [\"a\", \"b\", \"c\"]\n",
                json!("b"),
            ),
            4 => ("float", "1.5".to_owned(), "min = 0.0\n", json!(2.5)),
            5 => ("json", "\"{\\\"a\\\": 1}\"".to_owned(), "", json!({"a": i})),
            _ => ("duration", "\"30s\"".to_owned(), "", json!("5m")),
        };
        let default = if ty == "json" {
            "{a = 1}".to_owned()
        } else {
            default
        };
        text.push_str(&format!(
            "[keys.{name}]\ntype = \"{ty}\"\ndefault = {default}\ndescription = \"The setting number {i}, for the benchmark\"\n{extra}"
        ));
        if i % 2 == 0 {
            stored.push((name.clone(), value));
        }
    }
    let schema = Schema::parse(Path::new("big.toml"), &text).expect("generated schema");
    (schema, stored)
}

fn current_of(stored: &[(String, Value)]) -> (CurrentValues, Authors) {
    let now = Utc::now();
    let values: BTreeMap<String, StoredValue> = stored
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            (
                k.clone(),
                StoredValue {
                    value: Some(v.clone()),
                    version: (i % 1000) as u64 + 1,
                },
            )
        })
        .collect();
    let authors: Authors = (1..=1000u64)
        .map(|v| {
            (
                v,
                (
                    format!("user{}", v % 7),
                    now - chrono::Duration::minutes(v as i64),
                ),
            )
        })
        .collect::<HashMap<_, _>>();
    (
        CurrentValues {
            state: NamespaceState {
                epoch: 1,
                version: 1000,
            },
            values,
        },
        authors,
    )
}

fn render(masker: &Masker, schema: &Schema, current: &CurrentValues, authors: &Authors) -> String {
    let errors = KeyErrors::new();
    let inputs = Inputs {
        masker,
        schema,
        current,
        authors,
        submitted: None,
        errors: &errors,
        now: Utc::now(),
    };
    let page = page_model(&inputs, &Principal::Bootstrap);
    page.render().expect("render")
}

fn gzip(bytes: &[u8]) -> usize {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip").len()
}

fn bench(c: &mut Criterion) {
    let masker = Masker::new([7; 32]);
    let demo = demo_schema();
    let demo_stored = vec![
        ("SITE_NAME".to_owned(), json!("Config Manager (bench)")),
        ("ITEMS_PER_PAGE".to_owned(), json!(7)),
    ];
    let cases: Vec<(usize, Schema, Stored)> = vec![
        (8, demo, demo_stored),
        {
            let (s, v) = generated(1000);
            (1000, s, v)
        },
        {
            let (s, v) = generated(10_000);
            (10_000, s, v)
        },
    ];
    let css = asset("app.css").expect("css").bytes;
    let js = asset("app.js").expect("js").bytes;
    println!(
        "page weight: app.css {} B raw, {} B gzip; app.js {} B raw, {} B gzip",
        css.len(),
        gzip(css),
        js.len(),
        gzip(js)
    );
    let mut group = c.benchmark_group("configs_page");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    for (n, schema, stored) in &cases {
        let (current, authors) = current_of(stored);
        let html = render(&masker, schema, &current, &authors);
        println!(
            "page weight: configs page, {n} keys: HTML {} B raw, {} B gzip; with CSS+JS {} B gzip",
            html.len(),
            gzip(html.as_bytes()),
            gzip(html.as_bytes()) + gzip(css) + gzip(js)
        );
        group.bench_with_input(BenchmarkId::from_parameter(n), n, |b, _| {
            b.iter(|| black_box(render(&masker, schema, &current, &authors)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
