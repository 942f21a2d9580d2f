//! Schema-level fields through the product: `require_comment = true` makes every write path of
//! the admin (PATCH, PUT, DELETE, rollback, import) refuse a changeset without a comment, and
//! the configs listing says so; an unknown schema-level field stops `rtconfig check` (and the
//! admin) but a sidecar logs a warning and serves.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::eventually;
use crate::harness::ports::free_port;
use crate::harness::redis::RedisServer;
use crate::pg_stack::{path_str, run_binary, ChildProcess};
use crate::support::{demo_schema_dir, send, Dev};

/// A schema dir with the demo schema and `top` added at its top level.
fn demo_with(top: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = std::fs::read_to_string(demo_schema_dir().join("demo.toml")).expect("demo.toml");
    let line = "namespace = \"demo\"\n";
    assert!(demo.contains(line), "demo.toml names its namespace");
    std::fs::write(
        dir.path().join("demo.toml"),
        demo.replacen(line, &format!("{line}{top}\n"), 1),
    )
    .expect("write schema");
    dir
}

#[tokio::test]
async fn require_comment_refuses_every_write_without_a_comment_and_writes_nothing() {
    let dev = Dev::start_with(Some(demo_with("require_comment = true")), |_| {}).await;
    let configs = dev
        .get(dev.ns_url("/configs"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(configs["require_comment"], true);
    let path = |p: &str| dev.ns_url(p);
    let refused: Vec<(Method, String, Value)> = vec![
        (
            Method::PATCH,
            path("/configs"),
            json!({"changes": {"SITE_NAME": "x"}}),
        ),
        (
            Method::PATCH,
            path("/configs"),
            json!({"changes": {"SITE_NAME": "x"}, "comment": "   "}),
        ),
        (
            Method::PUT,
            path("/configs/SITE_NAME"),
            json!({"value": "x"}),
        ),
        (Method::POST, path("/rollback"), json!({"to_version": 0})),
        (
            Method::POST,
            path("/import"),
            json!({"values": {"SITE_NAME": "x"}}),
        ),
    ];
    for (method, url, body) in refused {
        let resp = send(dev.request(method.clone(), &url).json(&body)).await;
        let err = resp.expect_error(422, "comment_required");
        assert!(
            err["message"]
                .as_str()
                .is_some_and(|m| m.contains("require_comment")),
            "{method} {url}: {err}"
        );
    }
    assert_eq!(dev.admin_version().await, 0, "nothing was written");
    // Previews write nothing and need no comment (it is asked for when applying).
    for url in [path("/import?dry_run=true"), path("/rollback?dry_run=true")] {
        let body = json!({"values": {"SITE_NAME": "x"}, "to_version": 0});
        let body = if url.contains("import") {
            json!({"values": body["values"]})
        } else {
            json!({"to_version": 0})
        };
        send(dev.request(Method::POST, &url).json(&body))
            .await
            .expect_status(200);
    }

    // With a comment each goes through.
    let ok = |resp: crate::support::Resp| resp.expect_status(200).json();
    ok(send(
        dev.request(Method::PATCH, path("/configs"))
            .json(&json!({"changes": {"SITE_NAME": "x"}, "comment": "rename"})),
    )
    .await);
    ok(send(
        dev.request(Method::PUT, path("/configs/SITE_NAME"))
            .json(&json!({"value": "y", "comment": "again"})),
    )
    .await);
    // DELETE takes its comment in the query.
    send(dev.request(Method::DELETE, path("/configs/SITE_NAME")))
        .await
        .expect_error(422, "comment_required");
    ok(send(dev.request(Method::DELETE, path("/configs/SITE_NAME?comment=reset"))).await);
    ok(send(
        dev.request(Method::POST, path("/rollback"))
            .json(&json!({"to_version": 1, "comment": "back to x"})),
    )
    .await);
    ok(send(
        dev.request(Method::POST, path("/import"))
            .json(&json!({"values": {"SITE_NAME": "z"}, "comment": "import z"})),
    )
    .await);
    assert_eq!(dev.admin_version().await, 5);
    let history = dev.history("?limit=5").await;
    let comments: Vec<&str> = history["changesets"]
        .as_array()
        .expect("changesets")
        .iter()
        .filter_map(|c| c["comment"].as_str())
        .collect();
    assert_eq!(
        comments,
        ["import z", "back to x", "reset", "again", "rename"]
    );
}

#[tokio::test]
async fn without_require_comment_writes_need_no_comment() {
    let dev = Dev::start().await;
    let configs = dev
        .get(dev.ns_url("/configs"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(configs["require_comment"], false);
    dev.write(json!({"SITE_NAME": "no comment"})).await;
}

#[tokio::test]
async fn an_unknown_schema_level_field_stops_check_but_a_sidecar_warns_and_serves() {
    let dir = demo_with("require_approval = true");
    let (code, out) = run_binary(&["check", "--schema-dir", path_str(dir.path())]);
    assert_eq!(code, 64, "{out}");
    assert!(
        out.contains("unknown top-level field \"require_approval\""),
        "{out}"
    );

    let redis = RedisServer::start();
    let (listen, probe) = (free_port(), free_port());
    let sidecar = ChildProcess::spawn(
        &[
            "sidecar",
            "--namespace",
            "demo",
            "--redis-url",
            &redis.url(),
            "--schema-dir",
            path_str(dir.path()),
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--probe-listen",
            &format!("127.0.0.1:{probe}"),
        ],
        &[],
    );
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{listen}/v1/configs/SITE_NAME");
    let served = eventually(Duration::from_secs(15), "the sidecar serves", || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let resp = client.get(&url).send().await.ok()?;
            (resp.status() == 200).then_some(())?;
            resp.json::<Value>().await.ok()
        }
    })
    .await;
    assert_eq!(served["value"], "Config Manager", "{served}");
    let log = std::fs::read_to_string(sidecar.log_path()).expect("sidecar log");
    assert!(
        log.contains("unknown top-level field \\\"require_approval\\\" ignored")
            || log.contains("unknown top-level field \"require_approval\" ignored"),
        "{log}"
    );
}

/// The web UI on a `require_comment` namespace: the review marks Comment required, and a
/// Commit without one shows the review again with the reason (422), nothing written; with a
/// comment it commits.
#[tokio::test]
async fn require_comment_in_the_web_ui_asks_for_a_comment_and_writes_nothing_without_one() {
    use crate::auth_support::{Backend, Target};
    let dir = demo_with("require_comment = true");
    let schema_dir = dir.path().to_owned();
    let t = Target::start(Backend::Embedded, |s| s.schema_dir = schema_dir).await;
    let user = t.user("ed", &["editor:demo"], None).await;
    let b = t.session(&user).await;
    let form = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![("csrf_token".into(), b.csrf.clone())];
        v.extend(
            pairs
                .iter()
                .map(|(k, val)| (k.to_string(), val.to_string())),
        );
        v
    };
    let review = t
        .as_browser(&b, Method::POST, "/namespaces/demo/review")
        .form(&form(&[("v.SITE_NAME", "Acme")]))
        .send()
        .await
        .expect("review answered");
    assert_eq!(review.status(), 200);
    let html = review.text().await.expect("review page");
    assert!(
        html.contains("required aria-required=\"true\"")
            && html.contains("Required in this namespace"),
        "the Comment field is marked required"
    );
    // The review's hidden fields (c.KEY, e.KEY, idempotency_key), sent back as the browser would.
    let hidden: Vec<(String, String)> = crate::support::hidden_inputs(&html)
        .into_iter()
        .filter(|(name, _)| name != "csrf_token")
        .collect();
    assert!(hidden.iter().any(|(n, _)| n == "c.SITE_NAME"), "{hidden:?}");
    let commit = |comment: &'static str| {
        let mut fields = form(&[("comment", comment)]);
        fields.extend(hidden.iter().cloned());
        t.as_browser(&b, Method::POST, "/namespaces/demo/commit")
            .form(&fields)
            .send()
    };
    let refused = commit("  ").await.expect("commit answered");
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.expect("page");
    assert!(
        html.contains("role=\"alert\"") && html.contains("Nothing was written"),
        "the review again, with the reason announced: {html}"
    );
    let configs: Value = t
        .with_token(
            t.bootstrap(),
            Method::GET,
            "/api/v1/namespaces/demo/configs",
        )
        .send()
        .await
        .expect("configs")
        .json()
        .await
        .expect("json");
    assert_eq!(configs["version"], 0, "nothing was written");
    let done = commit("rename for launch").await.expect("commit answered");
    assert_eq!(done.status(), 303, "committed, then the configs page");
    t.stop().await;
}
