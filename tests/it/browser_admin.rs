//! The admin pages of the web UI in a real browser (`tests/browser/*.mjs`, see
//! [`crate::browser`]): the fleet page and the namespaces list's fleet columns; export, import
//! and the audit log (`data.mjs`); second-factor enrolment at sign-in (`mfa.mjs`).

use crate::browser::{run_script, seed_user};
use crate::support::Dev;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_fleet_page_and_namespace_fleet_columns() {
    let dev = Dev::start().await;
    seed_user(&dev.auth(), "alice", &["editor:demo"]).await;
    run_script("fleet.mjs", &dev.admin, "alice", &[]).await;
}

/// The export / import pages and the audit log (`tests/browser/data.mjs`), as a global admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_data_export_import_and_audit() {
    let dev = Dev::start().await;
    seed_user(&dev.auth(), "root", &["admin"]).await;
    run_script("data.mjs", &dev.admin, "root", &[]).await;
}

/// Second-factor enrolment at sign-in (`tests/browser/mfa.mjs`): an admin who must enrol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_mfa_enrolment_at_sign_in() {
    let dev = Dev::start_with(None, |s| s.auth.require_mfa_for_admins = true).await;
    seed_user(&dev.auth(), "root", &["admin"]).await;
    run_script("mfa.mjs", &dev.admin, "root", &[]).await;
}
