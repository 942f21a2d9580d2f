//! The history pages in a real browser (`tests/browser/history.mjs`): on `rtconfig dev`, two
//! changesets made through the API, then history (old default values), filters, roll back with
//! a preview (and a commit in between, which shows the new preview instead of writing), compare,
//! and a viewer who can neither see nor forge a rollback.

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
        &[
            ("VIEWER", "victor".into()),
            ("DEV_TOKEN", dev.token.clone()),
        ],
    )
    .await;
    // The rollback went through the write path: version 4 (after the commit made meanwhile),
    // values back, by alice.
    assert_eq!(
        dev.admin_version().await,
        4,
        "the forged POST wrote nothing"
    );
    let values = dev.sidecar_values().await;
    assert_eq!(values["THEME_COLOR"], "#4a6cf7", "back to the default");
    assert_eq!(values["SITE_NAME"], "Acme Shop", "v1 kept");
    assert_eq!(
        values["WELCOME_MESSAGE"], "You can see real-time configs and their values here",
        "the commit made meanwhile was in the confirmed (second) preview, and is undone too"
    );
    let last = &dev.history("?limit=1").await["changesets"][0];
    assert_eq!(
        (last["actor"].as_str(), last["comment"].as_str()),
        (Some("alice"), Some("undo pink"))
    );
}
