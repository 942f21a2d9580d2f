//! The web UI's data pages over plain HTTP (issue 9, "Admin pages"): `/audit` with its filters
//! and paging, "Download export" (headers and body = the API's export), and the import flow
//! (paste → dry-run diff that writes nothing → "Apply import" = one changeset with the
//! comment; invalid values shown by key, nothing written; a namespace changed in between is a
//! conflict). Viewers are denied the import and the audit log; a forged POST is refused.

use reqwest::Method;
use serde_json::{json, Value};

use crate::auth_support::{Backend, Browser, Target};
use crate::support::hidden_inputs;

async fn version(t: &Target) -> u64 {
    let v: Value = t
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
    v["version"].as_u64().expect("version")
}

async fn page(t: &Target, b: &Browser, path: &str) -> (u16, String) {
    let resp = t
        .as_browser(b, Method::GET, path)
        .send()
        .await
        .expect("page answered");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("html"))
}

async fn post_form(
    t: &Target,
    b: &Browser,
    path: &str,
    fields: &[(String, String)],
) -> (u16, String, Option<String>) {
    let mut all = vec![("csrf_token".to_owned(), b.csrf.clone())];
    all.extend(fields.iter().filter(|(n, _)| n != "csrf_token").cloned());
    let resp = t
        .as_browser(b, Method::POST, path)
        .form(&all)
        .send()
        .await
        .expect("post answered");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, resp.text().await.expect("html"), location)
}

fn f(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

#[tokio::test]
async fn audit_page_filters_pages_and_is_for_admins_only() {
    let t = Target::start(Backend::Embedded, |_| {}).await;
    let admin = t.user("root", &["admin"], None).await;
    let viewer = t.user("vic", &["viewer:demo"], None).await;
    let a = t.session(&admin).await;
    let v = t.session(&viewer).await;
    // Something to audit: a refused request by the viewer and tokens made with the admin token.
    let (status, _) = page(&t, &v, "/audit").await;
    assert_eq!(status, 403, "a viewer may not read the audit log");
    for name in ["ci-1", "ci-2", "ci-3"] {
        let resp = t
            .with_token(t.bootstrap(), Method::POST, "/api/v1/tokens")
            .json(&json!({"name": name, "role": "viewer", "namespaces": ["demo"], "expires_in": 3600}))
            .send()
            .await
            .expect("token");
        assert!(
            resp.status().is_success(),
            "token {name}: {}",
            resp.status()
        );
    }

    let (status, html) = page(&t, &a, "/audit").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("<title>Audit log · rtconfig</title>"),
        "{html}"
    );
    assert!(
        html.contains("token_created") && html.contains("forbidden"),
        "{html}"
    );
    assert!(html.contains("<label for=\"f-actor\">Actor</label>"));
    assert!(
        html.contains("aria-current=\"page\""),
        "the Audit nav entry is current"
    );
    let first_created = html.find("token_created").expect("created");
    let first_forbidden = html.find("forbidden").expect("forbidden");
    assert!(first_created < first_forbidden, "newest first");
    assert!(html.contains("title=\"20"), "absolute time on hover");

    // A filtered view is a URL.
    let (status, html) = page(&t, &a, "/audit?action=forbidden&actor=vic").await;
    assert_eq!(status, 200);
    assert!(html.contains("Audit log (filtered)"));
    assert!(
        html.contains("forbidden") && !html.contains("<code>token_created</code>"),
        "{html}"
    );
    assert!(html.contains("value=\"vic\""), "the form keeps the filter");
    let (_, html) = page(&t, &a, "/audit?actor=nobody-at-all").await;
    assert!(html.contains("No event matches these filters."));

    // Paging: one per page, "Older" keeps the filters and moves on.
    let (_, html) = page(&t, &a, "/audit?action=token_created&limit=1").await;
    assert_eq!(html.matches("<code>token_created</code>").count(), 1);
    let older = html
        .split("rel=\"next\"")
        .next()
        .and_then(|h| h.rsplit("href=\"").next())
        .and_then(|h| h.split('"').next())
        .map(crate::support::unescape)
        .expect("an Older link");
    assert!(
        older.starts_with("/audit?action=token_created&limit=1&before="),
        "{older}"
    );
    let (_, page2) = page(&t, &a, &older).await;
    assert!(page2.contains("Newest") && page2.contains("<code>token_created</code>"));
    let id = |h: &str| {
        h.split("data-id=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(str::to_owned)
    };
    assert_ne!(id(&html), id(&page2), "the next page shows an older event");

    // A bad date is shown on the page, announced.
    let (status, html) = page(&t, &a, "/audit?since=soon").await;
    assert_eq!(status, 400);
    assert!(
        html.contains("role=\"alert\"") && html.contains("since"),
        "{html}"
    );
    t.stop().await;
}

#[tokio::test]
async fn export_download_is_the_api_export_as_an_attachment() {
    let t = Target::start(Backend::Embedded, |_| {}).await;
    let viewer = t.user("vic", &["viewer:demo"], None).await;
    let v = t.session(&viewer).await;
    t.with_token(
        t.bootstrap(),
        Method::PATCH,
        "/api/v1/namespaces/demo/configs",
    )
    .json(&json!({"changes": {"SITE_NAME": "Acme", "ITEMS_PER_PAGE": 7}}))
    .send()
    .await
    .expect("write");
    let (_, configs) = page(&t, &v, "/namespaces/demo").await;
    assert!(configs.contains("href=\"/namespaces/demo/export\" download>Download export</a>"));
    assert!(
        !configs.contains("/namespaces/demo/import"),
        "a viewer gets no Import link"
    );
    let resp = t
        .as_browser(&v, Method::GET, "/namespaces/demo/export")
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-disposition")
            .and_then(|h| h.to_str().ok()),
        Some("attachment; filename=\"demo-v1.json\"")
    );
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json")));
    let body: Value = resp.json().await.expect("json");
    let api: Value = t
        .with_token(t.bootstrap(), Method::GET, "/api/v1/namespaces/demo/export")
        .send()
        .await
        .expect("api export")
        .json()
        .await
        .expect("json");
    assert_eq!(body, api, "the download is the API's export");
    assert_eq!(body["values"]["SITE_NAME"], "Acme");
    t.stop().await;
}

#[tokio::test]
async fn import_previews_writes_nothing_then_applies_one_changeset() {
    let t = Target::start(Backend::Embedded, |_| {}).await;
    let editor = t.user("ed", &["editor:demo"], None).await;
    let viewer = t.user("vic", &["viewer:demo"], None).await;
    let b = t.session(&editor).await;
    let v = t.session(&viewer).await;
    let doc = json!({"namespace": "demo", "version": 9, "values": {"SITE_NAME": "Imported", "ITEMS_PER_PAGE": 42}}).to_string();

    let (status, html) = page(&t, &b, "/namespaces/demo/import").await;
    assert_eq!(status, 200);
    assert!(html.contains("<label for=\"document\">Export document</label>"));
    let (status, _) = page(&t, &v, "/namespaces/demo/import").await;
    assert_eq!(status, 403, "a viewer may not import");

    // The dry run: the diff, nothing written.
    let (status, html, _) = post_form(
        &t,
        &b,
        "/namespaces/demo/import",
        &[f("step", "preview"), f("document", &doc)],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<code>SITE_NAME</code>") && html.contains("Imported"),
        "{html}"
    );
    assert!(html.contains("<code>ITEMS_PER_PAGE</code>") && html.contains("42"));
    assert!(
        html.contains("<span class=\"badge\">default</span>"),
        "the old side is the default, marked"
    );
    assert!(
        html.contains(">Apply import</button>")
            && html.contains("<label for=\"comment\">Comment</label>")
    );
    assert_eq!(version(&t).await, 0, "a dry run writes nothing");

    // Someone writes after the preview: applying it is a conflict, nothing written, and the
    // fresh preview (against the new values) is offered.
    let mut stale: Vec<(String, String)> = hidden_inputs(&html);
    stale.push(f("comment", "import from staging"));
    t.with_token(
        t.bootstrap(),
        Method::PATCH,
        "/api/v1/namespaces/demo/configs",
    )
    .json(&json!({"changes": {"SITE_NAME": "Meanwhile"}}))
    .send()
    .await
    .expect("write");
    let (status, html, _) = post_form(&t, &b, "/namespaces/demo/import", &stale).await;
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("role=\"alert\"") && html.contains("changed after your preview"));
    assert!(
        html.contains("Meanwhile") && html.contains(">Apply import</button>"),
        "the fresh preview: {html}"
    );
    assert_eq!(version(&t).await, 1, "nothing written by the stale apply");

    // Apply the fresh preview: one changeset with the comment, then its page.
    let fields: Vec<(String, String)> = hidden_inputs(&html)
        .into_iter()
        .chain([f("comment", "import from staging")])
        .collect();
    let (status, _, location) = post_form(&t, &b, "/namespaces/demo/import", &fields).await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/namespaces/demo/changesets/2"));
    assert_eq!(version(&t).await, 2, "exactly one changeset");
    let cs: Value = t
        .with_token(
            t.bootstrap(),
            Method::GET,
            "/api/v1/namespaces/demo/changesets/2",
        )
        .send()
        .await
        .expect("changeset")
        .json()
        .await
        .expect("json");
    assert_eq!(cs["comment"], "import from staging", "{cs}");
    assert_eq!(cs["actor"], "ed", "{cs}");
    assert_eq!(cs["changes"].as_array().map(Vec::len), Some(2), "{cs}");
    t.stop().await;
}

#[tokio::test]
async fn import_shows_invalid_values_by_key_and_refuses_forged_posts() {
    let t = Target::start(Backend::Embedded, |_| {}).await;
    let editor = t.user("ed", &["editor:demo"], None).await;
    let b = t.session(&editor).await;
    let doc = json!({"values": {"ITEMS_PER_PAGE": 1000, "SITE_NAME": "ok"}}).to_string();
    let (status, html, _) = post_form(
        &t,
        &b,
        "/namespaces/demo/import",
        &[f("step", "preview"), f("document", &doc)],
    )
    .await;
    assert_eq!(status, 422, "{html}");
    assert!(
        html.contains("role=\"alert\"") && html.contains("nothing was written"),
        "{html}"
    );
    let row = html
        .split("<tr data-key=\"ITEMS_PER_PAGE\">")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the key's error row");
    assert!(row.contains("id=\"error-ITEMS_PER_PAGE\""), "{row}");
    assert!(!html.contains(">Apply import</button>"), "nothing to apply");
    let (status, html, _) = post_form(
        &t,
        &b,
        "/namespaces/demo/import",
        &[f("step", "preview"), f("document", "not json")],
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains("The document is not an export"));
    assert_eq!(version(&t).await, 0);

    // A forged POST (no CSRF token) is refused.
    let resp = t
        .request(Method::POST, "/namespaces/demo/import")
        .header("cookie", format!("__Host-rtconfig={}", b.cookie))
        .header("origin", t.origin())
        .form(&[("step", "preview"), ("document", doc.as_str())])
        .send()
        .await
        .expect("forged");
    assert_eq!(resp.status(), 403);
    // A tampered sealed document is refused too.
    let (status, html, _) = post_form(
        &t,
        &b,
        "/namespaces/demo/import",
        &[
            f("step", "apply"),
            f("sealed", "AAAA"),
            f("version", "0"),
            f("comment", "x"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains("preview it again"));
    assert_eq!(version(&t).await, 0);
    t.stop().await;
}
