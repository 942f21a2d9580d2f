//! The history pages in a real browser (`tests/browser/history.mjs`): on `rtconfig dev`, two
//! changesets made through the API, then history (old default values), filters, roll back with
//! a preview, compare, and a viewer who can neither see nor forge a rollback.

use serde_json::json;

use crate::browser::{run_script, seed_user};
use crate::support::{send, Dev};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_history_rollback_and_compare() {
    let dev = Dev::start().await;
    seed_user(&dev.auth(), "alice", &["editor:demo"]).await;
    seed_user(&dev.auth(), "victor", &["viewer:demo"]).await;
    for (changes, comment) in [
        (
            json!({"SITE_NAME": "Acme Shop", "ITEMS_PER_PAGE": 20}),
            "launch",
        ),
        (json!({"THEME_COLOR": "#e91e63"}), "pink"),
    ] {
        send(
            dev.client
                .patch(dev.ns_url("/configs"))
                .json(&json!({"changes": changes, "comment": comment})),
        )
        .await
        .expect_status(200);
    }
    run_script(
        "history.mjs",
        &dev.admin,
        "alice",
        &[("VIEWER", "victor".into())],
    )
    .await;
    // The rollback went through the write path: version 3, values back, by alice.
    assert_eq!(
        dev.admin_version().await,
        3,
        "the forged POST wrote nothing"
    );
    let values = dev.sidecar_values().await;
    assert_eq!(values["THEME_COLOR"], "#4a6cf7", "back to the default");
    assert_eq!(values["SITE_NAME"], "Acme Shop", "v1 kept");
    let last = &dev.history("?limit=1").await["changesets"][0];
    assert_eq!(
        (last["actor"].as_str(), last["comment"].as_str()),
        (Some("alice"), Some("undo pink"))
    );
}
