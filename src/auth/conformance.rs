//! The one behaviour suite every [`AuthStore`] implementation must pass: every trait method and
//! every invariant the trait documents.
//!
//! `run(fresh)` calls `fresh()` for a new, empty store before each check; the embedded store
//! runs it in its unit tests, the PostgreSQL store against a real server (tests/it).
//! [`reopen_keeps_everything`] checks that a store opened again shows what was written. A check
//! panics with a message naming the promise that broke.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

use super::role::{Grant, Grants};
use super::store::{
    ApiToken, AuditQuery, AuthStore, AuthStoreError, LoginFailures, NewAuditEvent, NewUser,
    OidcLink, Pending, Session, TotpState, UserUpdate,
};

/// Grants from strings (`["editor:demo", "viewer"]`).
pub fn grants(list: &[&str]) -> Grants {
    Grants::new(
        list.iter()
            .map(|s| s.parse::<Grant>().expect("grant"))
            .collect(),
    )
}

/// A local user to create, with a (fake) password hash.
pub fn new_user(name: &str, list: &[&str]) -> NewUser {
    NewUser {
        username: name.to_owned(),
        grants: grants(list),
        password_hash: Some(format!("$argon2id$fake${name}")),
        oidc: None,
    }
}

/// A whole-second time (every store keeps those exactly).
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0)
        .single()
        .expect("time")
}

/// A session of `user_id` with digest `digest`, started at `now`, for 12 hours.
pub fn session(user_id: &str, digest: &str, now: DateTime<Utc>) -> Session {
    Session {
        id_digest: digest.to_owned(),
        user_id: user_id.to_owned(),
        csrf_token: format!("csrf-{digest}"),
        created_at: now,
        last_seen_at: now,
        expires_at: now + Duration::hours(12),
        pending: None,
        ip: Some("127.0.0.1".into()),
        user_agent: Some("conformance".into()),
    }
}

/// An API token named `name` with digest `digest`.
pub fn token(id: &str, name: &str, digest: &str, created: DateTime<Utc>) -> ApiToken {
    ApiToken {
        id: id.to_owned(),
        name: name.to_owned(),
        digest: digest.to_owned(),
        grants: grants(&["editor:demo"]),
        created_by: None,
        created_at: created,
        expires_at: Some(created + Duration::days(30)),
        last_used_at: None,
        revoked_at: None,
    }
}

/// An audit event.
pub fn event(action: &str, actor: &str) -> NewAuditEvent {
    NewAuditEvent {
        at: at(0),
        action: action.to_owned(),
        actor: actor.to_owned(),
        target: None,
        ip: Some("10.0.0.1".into()),
        user_agent: None,
        request_id: Some("req-1".into()),
        details: json!({"why": "test"}),
    }
}

fn totp(last_step: Option<u64>, codes: &[&str]) -> TotpState {
    TotpState {
        secret_encrypted: "enc:secret".into(),
        confirmed: true,
        last_step,
        recovery_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// Runs every check, each on a fresh store from `fresh`.
pub async fn run<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn AuthStore>>,
{
    users_are_created_and_found(fresh().await).await;
    user_names_and_sso_links_are_unique(fresh().await).await;
    unknown_users_are_refused(fresh().await).await;
    password_grants_disable_and_mfa_reset_revoke_sessions(fresh().await).await;
    other_updates_keep_sessions(fresh().await).await;
    has_admin_ignores_disabled_and_namespace_admins(fresh().await).await;
    a_totp_step_is_accepted_once(fresh().await).await;
    concurrent_uses_of_one_totp_step_let_exactly_one_win(fresh().await).await;
    a_recovery_code_works_once(fresh().await).await;
    login_failures_count_roll_and_clear(fresh().await).await;
    sessions_are_created_touched_and_deleted(fresh().await).await;
    signing_out_everywhere_keeps_the_current_session(fresh().await).await;
    purge_ends_expired_and_idle_sessions(fresh().await).await;
    tokens_are_found_listed_and_named_uniquely(fresh().await).await;
    token_revocation_sticks(fresh().await).await;
    token_used_is_true_only_the_first_time(fresh().await).await;
    audit_ids_rise_without_gaps(fresh().await).await;
    audit_filters_and_pages_newest_first(fresh().await).await;
    audit_filters_by_target_and_time(fresh().await).await;
}

async fn users_are_created_and_found(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["editor:demo", "viewer"]))
        .await
        .expect("create alice");
    assert!(
        alice.id.starts_with("u_"),
        "ids are opaque u_…: {}",
        alice.id
    );
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.grants, grants(&["viewer", "editor:demo"]));
    assert!(!alice.disabled);
    assert_eq!(alice.password_hash.as_deref(), Some("$argon2id$fake$alice"));
    assert_eq!(alice.totp, None);
    assert_eq!(alice.failures, LoginFailures::default());
    let link = OidcLink {
        issuer: "https://idp.example".into(),
        subject: "sub-1".into(),
    };
    let sso = s
        .create_user(NewUser {
            username: "carol@example.com".into(),
            grants: grants(&["viewer"]),
            password_hash: None,
            oidc: Some(link.clone()),
        })
        .await
        .expect("create an SSO user");
    assert_ne!(sso.id, alice.id);
    assert_eq!(s.user(&alice.id).await.expect("by id"), Some(alice.clone()));
    assert_eq!(
        s.user_by_name("alice").await.expect("by name"),
        Some(alice.clone())
    );
    assert_eq!(
        s.user_by_name("Alice").await.expect("by name"),
        None,
        "names are case-sensitive"
    );
    assert_eq!(
        s.user_by_oidc(&link).await.expect("by link"),
        Some(sso.clone())
    );
    assert_eq!(
        s.user_by_oidc(&OidcLink {
            issuer: "https://other.example".into(),
            subject: "sub-1".into(),
        })
        .await
        .expect("by link"),
        None,
        "a link is the (issuer, subject) pair"
    );
    assert_eq!(s.user("u_missing").await.expect("unknown id"), None);
    let bob = s
        .create_user(new_user("bob", &[]))
        .await
        .expect("create bob");
    let names: Vec<String> = s
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(
        names,
        ["alice", "bob", "carol@example.com"],
        "users by name"
    );
    assert!(bob.grants.0.is_empty());
}

async fn user_names_and_sso_links_are_unique(s: Arc<dyn AuthStore>) {
    s.create_user(new_user("alice", &["viewer"]))
        .await
        .expect("create");
    match s.create_user(new_user("alice", &["admin"])).await {
        Err(AuthStoreError::UserExists(name)) => assert_eq!(name, "alice"),
        other => panic!("a second alice must be refused with UserExists, got {other:?}"),
    }
    let link = OidcLink {
        issuer: "https://idp.example".into(),
        subject: "s".into(),
    };
    let sso = |name: &str| NewUser {
        username: name.to_owned(),
        grants: Grants::default(),
        password_hash: None,
        oidc: Some(link.clone()),
    };
    s.create_user(sso("first")).await.expect("sso user");
    assert!(
        matches!(
            s.create_user(sso("second")).await,
            Err(AuthStoreError::UserExists(_))
        ),
        "one user per (issuer, subject)"
    );
    assert_eq!(
        s.users().await.expect("users").len(),
        2,
        "refusals wrote nothing"
    );
    // Concurrent creations of one name: exactly one wins.
    let tries = (0..6).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.create_user(new_user("racer", &[&format!("viewer:ns{i}")]))
                .await
        })
    });
    let won = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(_))))
        .count();
    assert_eq!(won, 1, "exactly one concurrent create of a name succeeds");
}

async fn unknown_users_are_refused(s: Arc<dyn AuthStore>) {
    assert!(
        matches!(
            s.update_user("u_missing", UserUpdate::Disabled(true)).await,
            Err(AuthStoreError::NoSuchUser(_))
        ),
        "update_user of an unknown id is NoSuchUser"
    );
    assert!(matches!(
        s.use_totp_step("u_missing", 1).await,
        Err(AuthStoreError::NoSuchUser(_))
    ));
    assert!(matches!(
        s.record_login_failure("u_missing", at(0)).await,
        Err(AuthStoreError::NoSuchUser(_))
    ));
    assert!(s.users().await.expect("users").is_empty());
}

async fn password_grants_disable_and_mfa_reset_revoke_sessions(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["editor"]))
        .await
        .expect("alice");
    let bob = s
        .create_user(new_user("bob", &["viewer"]))
        .await
        .expect("bob");
    s.create_session(session(&bob.id, "bob-1", at(0)))
        .await
        .expect("bob's session");
    let updates = [
        (
            "a password change",
            UserUpdate::Password("$argon2id$new".into()),
        ),
        ("a grant change", UserUpdate::Grants(grants(&["viewer"]))),
        ("disabling", UserUpdate::Disabled(true)),
        ("an MFA reset", UserUpdate::Totp(None)),
    ];
    for (i, (what, update)) in updates.into_iter().enumerate() {
        for n in 0..2 {
            s.create_session(session(&alice.id, &format!("a-{i}-{n}"), at(0)))
                .await
                .expect("session");
        }
        s.record_login_failure(&alice.id, at(1))
            .await
            .expect("failure");
        let after = s.update_user(&alice.id, update.clone()).await.expect(what);
        assert!(
            s.sessions_of(&alice.id).await.expect("sessions").is_empty(),
            "{what} must end all of the user's sessions in the same write"
        );
        assert!(
            s.session(&format!("a-{i}-0"))
                .await
                .expect("session")
                .is_none(),
            "{what}: the session is gone"
        );
        assert_eq!(
            s.user(&alice.id).await.expect("user").as_ref(),
            Some(&after),
            "update_user returns the user after the change"
        );
        match update {
            UserUpdate::Password(h) => {
                assert_eq!(after.password_hash, Some(h));
                assert_eq!(
                    after.failures,
                    LoginFailures::default(),
                    "a new password clears the login failures"
                );
            }
            UserUpdate::Grants(g) => assert_eq!(after.grants, g),
            UserUpdate::Disabled(d) => assert_eq!(after.disabled, d),
            UserUpdate::Totp(t) => assert_eq!(after.totp, t),
        }
        assert!(after.updated_at >= after.created_at);
    }
    assert_eq!(
        s.sessions_of(&bob.id).await.expect("bob").len(),
        1,
        "another user's sessions are untouched"
    );
}

async fn other_updates_keep_sessions(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["admin"]))
        .await
        .expect("alice");
    s.update_user(&alice.id, UserUpdate::Disabled(true))
        .await
        .expect("disable");
    let enabled = s
        .update_user(&alice.id, UserUpdate::Disabled(false))
        .await
        .expect("enable");
    assert!(!enabled.disabled);
    s.create_session(session(&alice.id, "s1", at(0)))
        .await
        .expect("session");
    let mut state = totp(None, &["rc1"]);
    state.confirmed = false;
    let enrolled = s
        .update_user(&alice.id, UserUpdate::Totp(Some(state.clone())))
        .await
        .expect("set up TOTP");
    assert_eq!(enrolled.totp, Some(state));
    let confirmed = s
        .update_user(&alice.id, UserUpdate::Totp(Some(totp(None, &["rc1"]))))
        .await
        .expect("confirm TOTP");
    assert!(confirmed.totp.as_ref().is_some_and(|t| t.confirmed));
    assert_eq!(
        s.sessions_of(&alice.id).await.expect("sessions").len(),
        1,
        "enabling, setting up and confirming TOTP keep sessions"
    );
}

async fn has_admin_ignores_disabled_and_namespace_admins(s: Arc<dyn AuthStore>) {
    assert!(!s.has_admin().await.expect("empty"));
    s.create_user(new_user("nsadmin", &["admin:demo", "editor"]))
        .await
        .expect("namespace admin");
    assert!(
        !s.has_admin().await.expect("has_admin"),
        "an admin of one namespace is not an admin"
    );
    let root = s
        .create_user(new_user("root", &["admin"]))
        .await
        .expect("admin");
    assert!(s.has_admin().await.expect("has_admin"));
    s.update_user(&root.id, UserUpdate::Disabled(true))
        .await
        .expect("disable");
    assert!(
        !s.has_admin().await.expect("has_admin"),
        "a disabled admin does not count"
    );
    s.update_user(&root.id, UserUpdate::Disabled(false))
        .await
        .expect("enable");
    assert!(s.has_admin().await.expect("has_admin"));
    s.update_user(&root.id, UserUpdate::Grants(grants(&["viewer"])))
        .await
        .expect("demote");
    assert!(!s.has_admin().await.expect("has_admin"));
}

async fn a_totp_step_is_accepted_once(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["admin"]))
        .await
        .expect("alice");
    assert!(
        !s.use_totp_step(&alice.id, 100).await.expect("no factor"),
        "no TOTP factor: no step is accepted"
    );
    s.update_user(&alice.id, UserUpdate::Totp(Some(totp(None, &[]))))
        .await
        .expect("totp");
    assert!(s.use_totp_step(&alice.id, 100).await.expect("first"));
    assert!(
        !s.use_totp_step(&alice.id, 100).await.expect("replay"),
        "a used time step is refused a second time"
    );
    assert!(
        !s.use_totp_step(&alice.id, 99).await.expect("older"),
        "an older step is refused"
    );
    assert!(s.use_totp_step(&alice.id, 101).await.expect("next"));
    let user = s.user(&alice.id).await.expect("user").expect("exists");
    assert_eq!(user.totp.and_then(|t| t.last_step), Some(101));
}

async fn concurrent_uses_of_one_totp_step_let_exactly_one_win(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["admin"]))
        .await
        .expect("alice");
    s.update_user(&alice.id, UserUpdate::Totp(Some(totp(Some(5), &[]))))
        .await
        .expect("totp");
    for step in [6u64, 7, 8] {
        let tries = (0..8).map(|_| {
            let (s, id) = (s.clone(), alice.id.clone());
            tokio::spawn(async move { s.use_totp_step(&id, step).await })
        });
        let wins = futures_util::future::join_all(tries)
            .await
            .into_iter()
            .map(|r| r.expect("task").expect("use_totp_step"))
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1, "step {step}: exactly one concurrent use wins");
    }
}

async fn a_recovery_code_works_once(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["admin"]))
        .await
        .expect("alice");
    assert!(!s
        .use_recovery_code(&alice.id, "rc1")
        .await
        .expect("no factor"));
    s.update_user(
        &alice.id,
        UserUpdate::Totp(Some(totp(None, &["rc1", "rc2"]))),
    )
    .await
    .expect("totp");
    assert!(s
        .use_recovery_code(&alice.id, "rc1")
        .await
        .expect("first use"));
    assert!(
        !s.use_recovery_code(&alice.id, "rc1")
            .await
            .expect("second use"),
        "a recovery code works once"
    );
    assert!(!s
        .use_recovery_code(&alice.id, "nope")
        .await
        .expect("unknown"));
    let user = s.user(&alice.id).await.expect("user").expect("exists");
    assert_eq!(
        user.totp.map(|t| t.recovery_codes),
        Some(vec!["rc2".to_owned()]),
        "only the unused code is left"
    );
    let tries = (0..6).map(|_| {
        let (s, id) = (s.clone(), alice.id.clone());
        tokio::spawn(async move { s.use_recovery_code(&id, "rc2").await })
    });
    let wins = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(true))))
        .count();
    assert_eq!(
        wins, 1,
        "concurrent uses of one recovery code: exactly one wins"
    );
}

async fn login_failures_count_roll_and_clear(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["viewer"]))
        .await
        .expect("alice");
    let mut last = LoginFailures::default();
    for i in 0..3 {
        last = s
            .record_login_failure(&alice.id, at(i * 60))
            .await
            .expect("failure");
    }
    assert_eq!(
        last,
        LoginFailures {
            consecutive: 3,
            last_at: Some(at(120)),
            window_start: Some(at(0)),
            in_window: 3,
        }
    );
    let rolled = s
        .record_login_failure(&alice.id, at(3600))
        .await
        .expect("an hour later");
    assert_eq!(rolled.consecutive, 4, "consecutive failures keep counting");
    assert_eq!(
        rolled.window_start,
        Some(at(3600)),
        "the hourly window rolls"
    );
    assert_eq!(rolled.in_window, 1);
    assert_eq!(
        s.user(&alice.id).await.expect("user").map(|u| u.failures),
        Some(rolled),
        "the user shows the counts"
    );
    let tries = (0..10).map(|_| {
        let (s, id) = (s.clone(), alice.id.clone());
        tokio::spawn(async move { s.record_login_failure(&id, at(3700)).await })
    });
    for r in futures_util::future::join_all(tries).await {
        r.expect("task").expect("failure");
    }
    let user = s.user(&alice.id).await.expect("user").expect("exists");
    assert_eq!(
        (user.failures.consecutive, user.failures.in_window),
        (14, 11),
        "concurrent failures are all counted"
    );
    s.clear_login_failures(&alice.id).await.expect("clear");
    assert_eq!(
        s.user(&alice.id).await.expect("user").map(|u| u.failures),
        Some(LoginFailures::default())
    );
    s.clear_login_failures(&alice.id)
        .await
        .expect("clearing nothing is fine");
}

async fn sessions_are_created_touched_and_deleted(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["viewer"]))
        .await
        .expect("alice");
    let mut sess = session(&alice.id, "d1", at(0));
    sess.pending = Some(Pending::Totp);
    s.create_session(sess.clone()).await.expect("create");
    assert_eq!(s.session("d1").await.expect("get"), Some(sess.clone()));
    assert_eq!(s.session("nope").await.expect("get"), None);
    s.touch_session("d1", at(120)).await.expect("touch");
    assert_eq!(
        s.session("d1").await.expect("get").map(|s| s.last_seen_at),
        Some(at(120)),
        "a touch refreshes last_seen_at"
    );
    s.touch_session("d1", at(30)).await.expect("older touch");
    s.touch_session("d1", at(150))
        .await
        .expect("touch within a minute");
    let seen = s.session("d1").await.expect("get").map(|s| s.last_seen_at);
    assert!(
        seen.is_some_and(|t| t >= at(120) && t <= at(150)),
        "last_seen_at never goes back (and may lag by up to a minute): {seen:?}"
    );
    s.touch_session("nope", at(200))
        .await
        .expect("touching an unknown session is a no-op");
    assert!(s.delete_session("d1").await.expect("delete"));
    assert!(!s.delete_session("d1").await.expect("delete twice"));
    assert_eq!(s.session("d1").await.expect("get"), None);
    assert!(matches!(
        s.create_session(session("u_missing", "d2", at(0))).await,
        Err(AuthStoreError::NoSuchUser(_))
    ));
}

async fn signing_out_everywhere_keeps_the_current_session(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["viewer"]))
        .await
        .expect("alice");
    let bob = s
        .create_user(new_user("bob", &["viewer"]))
        .await
        .expect("bob");
    for (i, d) in ["a1", "a2", "a3"].iter().enumerate() {
        s.create_session(session(&alice.id, d, at(i as i64)))
            .await
            .expect("session");
    }
    s.create_session(session(&bob.id, "b1", at(0)))
        .await
        .expect("bob's");
    let listed: Vec<String> = s
        .sessions_of(&alice.id)
        .await
        .expect("sessions_of")
        .into_iter()
        .map(|s| s.id_digest)
        .collect();
    assert_eq!(
        listed,
        ["a1", "a2", "a3"],
        "a user's sessions, oldest first"
    );
    assert_eq!(
        s.delete_sessions_of(&alice.id, Some("a2"))
            .await
            .expect("sign out everywhere"),
        2
    );
    let left: Vec<String> = s
        .sessions_of(&alice.id)
        .await
        .expect("sessions_of")
        .into_iter()
        .map(|s| s.id_digest)
        .collect();
    assert_eq!(left, ["a2"], "keep survives");
    assert_eq!(s.sessions_of(&bob.id).await.expect("bob").len(), 1);
    assert_eq!(s.delete_sessions_of(&alice.id, None).await.expect("all"), 1);
    assert_eq!(
        s.delete_sessions_of(&alice.id, None).await.expect("none"),
        0
    );
}

async fn purge_ends_expired_and_idle_sessions(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["viewer"]))
        .await
        .expect("alice");
    let mut expired = session(&alice.id, "expired", at(0));
    expired.expires_at = at(1000);
    expired.last_seen_at = at(990);
    let mut idle = session(&alice.id, "idle", at(0));
    idle.last_seen_at = at(100);
    let mut fresh = session(&alice.id, "fresh", at(0));
    fresh.last_seen_at = at(900);
    for sess in [expired, idle, fresh] {
        s.create_session(sess).await.expect("session");
    }
    // now = 1000, idle timeout 500 s → idle_before = 500.
    assert_eq!(
        s.purge_sessions(at(1000), at(500)).await.expect("purge"),
        2,
        "the expired and the idle session end"
    );
    assert!(s.session("fresh").await.expect("get").is_some());
    assert!(s.session("expired").await.expect("get").is_none());
    assert!(s.session("idle").await.expect("get").is_none());
    assert_eq!(s.purge_sessions(at(1000), at(500)).await.expect("again"), 0);
}

async fn tokens_are_found_listed_and_named_uniquely(s: Arc<dyn AuthStore>) {
    let alice = s
        .create_user(new_user("alice", &["admin"]))
        .await
        .expect("alice");
    let mut ci = token("tok_1", "ci", "dig1", at(10));
    ci.created_by = Some(alice.id.clone());
    let deploy = token("tok_2", "deploy", "dig2", at(20));
    s.create_token(ci.clone()).await.expect("ci");
    s.create_token(deploy.clone()).await.expect("deploy");
    assert_eq!(s.token("tok_1").await.expect("by id"), Some(ci.clone()));
    assert_eq!(
        s.token_by_digest("dig2").await.expect("by digest"),
        Some(deploy.clone())
    );
    assert_eq!(s.token_by_digest("nope").await.expect("by digest"), None);
    assert_eq!(s.token("tok_x").await.expect("by id"), None);
    assert_eq!(
        s.tokens().await.expect("tokens"),
        vec![deploy.clone(), ci.clone()],
        "tokens, newest first"
    );
    match s.create_token(token("tok_3", "ci", "dig3", at(30))).await {
        Err(AuthStoreError::TokenExists(name)) => assert_eq!(name, "ci"),
        other => panic!("a second live token named ci must be refused, got {other:?}"),
    }
    assert!(s.revoke_token("tok_1", at(40)).await.expect("revoke"));
    s.create_token(token("tok_3", "ci", "dig3", at(50)))
        .await
        .expect("a revoked token's name may be used again");
    assert_eq!(s.tokens().await.expect("tokens").len(), 3);
}

async fn token_revocation_sticks(s: Arc<dyn AuthStore>) {
    let t = token("tok_1", "ci", "dig1", at(0));
    s.create_token(t).await.expect("create");
    assert!(!s.revoke_token("tok_x", at(5)).await.expect("unknown"));
    assert!(s.revoke_token("tok_1", at(10)).await.expect("revoke"));
    assert!(
        !s.revoke_token("tok_1", at(20)).await.expect("again"),
        "revoking twice answers false"
    );
    let found = s
        .token_by_digest("dig1")
        .await
        .expect("by digest")
        .expect("a revoked token is still found (and refused by its revoked_at)");
    assert_eq!(
        found.revoked_at,
        Some(at(10)),
        "the first revocation time stays"
    );
    s.token_used("tok_1", at(30)).await.expect("used");
    assert_eq!(
        s.token("tok_1")
            .await
            .expect("get")
            .and_then(|t| t.revoked_at),
        Some(at(10)),
        "revocation sticks"
    );
}

async fn token_used_is_true_only_the_first_time(s: Arc<dyn AuthStore>) {
    s.create_token(token("tok_1", "ci", "dig1", at(0)))
        .await
        .expect("create");
    assert!(!s.token_used("tok_x", at(1)).await.expect("unknown"));
    let tries = (0..6).map(|_| {
        let s = s.clone();
        tokio::spawn(async move { s.token_used("tok_1", at(100)).await })
    });
    let firsts = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(true))))
        .count();
    assert_eq!(firsts, 1, "exactly one (concurrent) use is the first");
    assert_eq!(
        s.token("tok_1")
            .await
            .expect("get")
            .and_then(|t| t.last_used_at),
        Some(at(100))
    );
    assert!(!s.token_used("tok_1", at(300)).await.expect("later use"));
    assert_eq!(
        s.token("tok_1")
            .await
            .expect("get")
            .and_then(|t| t.last_used_at),
        Some(at(300)),
        "a use a minute or more later is recorded"
    );
}

async fn audit_ids_rise_without_gaps(s: Arc<dyn AuthStore>) {
    let first = s
        .append_audit(event("login_ok", "alice"))
        .await
        .expect("append");
    assert_eq!(first, 1, "the first event is 1");
    let tries = (0..20).map(|i| {
        let s = s.clone();
        tokio::spawn(async move {
            s.append_audit(event("login_failed", &format!("u{i}")))
                .await
        })
    });
    let mut ids: Vec<u64> = futures_util::future::join_all(tries)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("append"))
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (2..=21).collect::<Vec<u64>>(),
        "concurrent appends: gap-free ids"
    );
    let page = s
        .audit(&AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    let listed: Vec<u64> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(listed, (1..=21).rev().collect::<Vec<u64>>(), "newest first");
    assert_eq!(page.next, None);
    let oldest = page.events.last().expect("first event");
    assert_eq!(
        oldest.event,
        event("login_ok", "alice"),
        "an event is kept whole"
    );
}

async fn audit_filters_and_pages_newest_first(s: Arc<dyn AuthStore>) {
    for i in 0..7 {
        let action = if i % 2 == 0 {
            "login_ok"
        } else {
            "login_failed"
        };
        let actor = if i < 4 { "alice" } else { "bob" };
        let mut e = event(action, actor);
        e.target = Some(format!("t{i}"));
        s.append_audit(e).await.expect("append");
    }
    let ids = |page: &super::store::AuditPage| page.events.iter().map(|e| e.id).collect::<Vec<_>>();
    let q =
        |action: Option<&str>, actor: Option<&str>, before: Option<u64>, limit: usize| AuditQuery {
            action: action.map(str::to_owned),
            actor: actor.map(str::to_owned),
            before,
            limit,
            ..AuditQuery::default()
        };
    let page = s.audit(&q(None, None, None, 3)).await.expect("page 1");
    assert_eq!(ids(&page), [7, 6, 5]);
    assert_eq!(page.next, Some(5), "next is the before of the next page");
    let page = s.audit(&q(None, None, page.next, 3)).await.expect("page 2");
    assert_eq!(ids(&page), [4, 3, 2]);
    let page = s.audit(&q(None, None, page.next, 3)).await.expect("page 3");
    assert_eq!(ids(&page), [1]);
    assert_eq!(page.next, None, "the last page has no next");
    let page = s
        .audit(&q(Some("login_ok"), None, None, 10))
        .await
        .expect("by action");
    assert_eq!(ids(&page), [7, 5, 3, 1]);
    let page = s
        .audit(&q(Some("login_ok"), Some("alice"), None, 10))
        .await
        .expect("by action and actor");
    assert_eq!(ids(&page), [3, 1]);
    let page = s
        .audit(&q(None, Some("bob"), None, 2))
        .await
        .expect("by actor, paged");
    assert_eq!(ids(&page), [7, 6]);
    assert_eq!(page.next, Some(6));
    let page = s
        .audit(&q(None, Some("bob"), page.next, 2))
        .await
        .expect("next page");
    assert_eq!(ids(&page), [5]);
    assert_eq!(page.next, None, "no more bob events below 5");
    assert!(s
        .audit(&q(Some("logout"), None, None, 10))
        .await
        .expect("no match")
        .events
        .is_empty());
    let page = s
        .audit(&q(None, None, Some(1), 10))
        .await
        .expect("before 1");
    assert!(page.events.is_empty());
}

async fn audit_filters_by_target_and_time(s: Arc<dyn AuthStore>) {
    // Events 1..=6 at 0, 10, …, 50 s; targets alternate between carol and a token id.
    for i in 0..6 {
        let mut e = event(
            if i < 3 {
                "role_changed"
            } else {
                "token_revoked"
            },
            "admin",
        );
        e.at = at(i * 10);
        e.target = Some(if i % 2 == 0 {
            "carol".into()
        } else {
            "tok_1".into()
        });
        s.append_audit(e).await.expect("append");
    }
    let ids = |page: &super::store::AuditPage| page.events.iter().map(|e| e.id).collect::<Vec<_>>();
    let page = |q: AuditQuery| {
        let s = s.clone();
        async move {
            s.audit(&AuditQuery { limit: 10, ..q })
                .await
                .expect("audit")
        }
    };
    let carol = page(AuditQuery {
        target: Some("carol".into()),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(ids(&carol), [5, 3, 1]);
    let window = page(AuditQuery {
        since: Some(at(10)),
        until: Some(at(40)),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(
        ids(&window),
        [4, 3, 2],
        "since is inclusive, until exclusive"
    );
    let all = page(AuditQuery {
        action: Some("token_revoked".into()),
        target: Some("tok_1".into()),
        since: Some(at(30)),
        ..AuditQuery::default()
    })
    .await;
    assert_eq!(ids(&all), [6, 4], "every filter at once");
    let paged = s
        .audit(&AuditQuery {
            since: Some(at(10)),
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .expect("page 1");
    assert_eq!((ids(&paged), paged.next), (vec![6, 5], Some(5)));
    let paged = s
        .audit(&AuditQuery {
            since: Some(at(10)),
            before: paged.next,
            limit: 2,
            ..AuditQuery::default()
        })
        .await
        .expect("page 2");
    assert_eq!(ids(&paged), [4, 3], "paging keeps the filters");
    let none = page(AuditQuery {
        until: Some(at(0)),
        ..AuditQuery::default()
    })
    .await;
    assert!(none.events.is_empty(), "until is exclusive");
}

/// Writes one of everything, opens the store again with `open` (the first handle dropped
/// first), and checks that everything is there.
pub async fn reopen_keeps_everything<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn AuthStore>>,
{
    let s = open().await;
    let alice = s
        .create_user(new_user("alice", &["admin", "editor:demo"]))
        .await
        .expect("alice");
    let bob = s
        .create_user(new_user("bob", &["viewer"]))
        .await
        .expect("bob");
    s.update_user(
        &alice.id,
        UserUpdate::Totp(Some(totp(None, &["rc1", "rc2"]))),
    )
    .await
    .expect("totp");
    assert!(s.use_totp_step(&alice.id, 42).await.expect("step"));
    assert!(s.use_recovery_code(&alice.id, "rc1").await.expect("code"));
    s.record_login_failure(&bob.id, at(5))
        .await
        .expect("failure");
    s.update_user(&bob.id, UserUpdate::Disabled(true))
        .await
        .expect("disable bob");
    s.create_session(session(&alice.id, "a1", at(0)))
        .await
        .expect("session");
    s.create_session(session(&alice.id, "a2", at(0)))
        .await
        .expect("session");
    s.touch_session("a1", at(600)).await.expect("touch");
    assert!(s.delete_session("a2").await.expect("delete"));
    s.create_token(token("tok_1", "ci", "dig1", at(0)))
        .await
        .expect("token");
    s.create_token(token("tok_2", "old", "dig2", at(1)))
        .await
        .expect("token");
    assert!(s.token_used("tok_1", at(700)).await.expect("used"));
    assert!(s.revoke_token("tok_2", at(800)).await.expect("revoke"));
    s.append_audit(event("user_created", "cli"))
        .await
        .expect("audit");
    s.append_audit(event("token_created", "cli"))
        .await
        .expect("audit");
    let users = s.users().await.expect("users");
    let sessions = s.sessions_of(&alice.id).await.expect("sessions");
    let tokens = s.tokens().await.expect("tokens");
    let audit = s
        .audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit");
    drop(s);

    let s = open().await;
    assert_eq!(
        s.users().await.expect("users"),
        users,
        "users survive a reopen"
    );
    assert_eq!(
        s.sessions_of(&alice.id).await.expect("sessions"),
        sessions,
        "sessions survive a reopen"
    );
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].last_seen_at, at(600));
    assert_eq!(s.tokens().await.expect("tokens"), tokens, "tokens survive");
    assert_eq!(
        s.audit(&AuditQuery {
            limit: 10,
            ..AuditQuery::default()
        })
        .await
        .expect("audit"),
        audit
    );
    assert!(
        !s.use_totp_step(&alice.id, 42).await.expect("step"),
        "a used step stays used"
    );
    assert!(!s.use_recovery_code(&alice.id, "rc1").await.expect("code"));
    assert!(s.use_recovery_code(&alice.id, "rc2").await.expect("code"));
    assert!(
        !s.token_used("tok_1", at(710)).await.expect("used"),
        "first use was recorded"
    );
    assert!(!s.revoke_token("tok_2", at(900)).await.expect("revoked"));
    assert!(s.has_admin().await.expect("has_admin"));
    assert_eq!(
        s.append_audit(event("logout", "alice"))
            .await
            .expect("audit"),
        3,
        "audit ids continue"
    );
    assert_eq!(
        s.user_by_name("bob")
            .await
            .expect("bob")
            .map(|u| (u.disabled, u.failures.consecutive)),
        Some((true, 1))
    );
}

/// Waits (up to 5 s) until the session `digest` is gone.
pub async fn eventually_none(s: &dyn AuthStore, digest: &str) {
    for _ in 0..250 {
        if s.session(digest).await.expect("session").is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("session {digest} was not purged within 5 s");
}
