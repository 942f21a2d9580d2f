//! SSO end to end against a real OpenID provider (`oidc-provider` under node, see
//! `harness::oidc` and tests/oidc/README.md): `auth::oidc` discovers it, builds the authorize
//! URL, the harness signs in over HTTP, and `Oidc::finish` exchanges the code and validates the
//! ID token — or refuses it, with the specific error.

use rtconfig::auth::oidc::{
    map_roles, IdTokenRejection, Oidc, OidcError, OidcSettings, PendingLogin, ProviderCallError,
    RoleMap,
};
use rtconfig::auth::{Grants, Need, Role};
use serde_json::json;
use url::Url;

use crate::harness::oidc::{ClaimsIn, OidcProvider, ProviderConfig, TestUser};

const PUBLIC_URL: &str = "https://rtconfig.test";

const ROLE_MAP: &str = r#"
[groups]
"platform-admins" = ["admin"]
"payments-team" = ["editor:payments", "viewer"]
readers = ["viewer"]
"#;

fn redirect_uri() -> Url {
    Url::parse(&format!("{PUBLIC_URL}/auth/oidc/callback")).expect("url")
}

fn grants(list: &[&str]) -> Grants {
    Grants::new(list.iter().map(|s| s.parse().expect("grant")).collect())
}

fn start(users: Vec<TestUser>, claims_in: ClaimsIn) -> OidcProvider {
    let mut config = ProviderConfig::new(redirect_uri(), users);
    config.claims_in = claims_in;
    OidcProvider::start(config)
}

fn settings_for(provider: &OidcProvider) -> OidcSettings {
    let config = provider.config();
    let mut s = OidcSettings::new(
        provider.issuer(),
        config.client_id.clone(),
        Url::parse(PUBLIC_URL).expect("url"),
    );
    s.client_secret = config.client_secret.clone();
    s.role_map = RoleMap::from_toml(ROLE_MAP).expect("role map");
    s
}

async fn discover(provider: &OidcProvider) -> Oidc {
    match Oidc::discover(settings_for(provider)).await {
        Ok(o) => o,
        Err(e) => panic!("discovery failed: {e:?}\nprovider log:\n{}", provider.log()),
    }
}

/// `begin`, then the sign-in at the provider: the pending login and the callback's code/state.
async fn sign_in(
    provider: &OidcProvider,
    oidc: &Oidc,
    user: &TestUser,
) -> (PendingLogin, String, String) {
    let (url, pending) = oidc.begin();
    match provider.sign_in(&url, user).await {
        Ok(cb) => (pending, cb.code, cb.state),
        Err(e) => panic!(
            "sign-in of {} failed: {e}\nprovider log:\n{}",
            user.login,
            provider.log()
        ),
    }
}

#[tokio::test]
async fn a_sign_in_returns_who_signed_in_with_groups_from_the_id_token() {
    let alice = TestUser::new(
        "alice",
        json!(["platform-admins", "payments-team", "strangers"]),
    );
    let provider = start(vec![alice.clone()], ClaimsIn::IdToken);
    let oidc = discover(&provider).await;
    assert_eq!(
        oidc.issuer(),
        provider.issuer().as_str().trim_end_matches('/')
    );

    let (url, pending) = oidc.begin();
    let q: std::collections::BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "rtconfig-test");
    assert_eq!(q["redirect_uri"], redirect_uri().as_str());
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["state"], pending.state());
    assert!(q["state"].len() >= 43, "state has 256 bits: {}", q["state"]);
    assert!(q["nonce"].len() >= 43, "nonce has 256 bits");
    assert_eq!(q["scope"], "openid profile email groups");

    let cb = provider.sign_in(&url, &alice).await.expect("sign-in");
    assert_eq!(cb.state, pending.state());
    let identity = oidc
        .finish(pending, &cb.code, &cb.state)
        .await
        .expect("finish");
    assert_eq!(identity.issuer, oidc.issuer());
    assert_eq!(identity.subject, "sub-alice");
    assert_eq!(identity.username, "alice");
    assert_eq!(identity.email.as_deref(), Some("alice@example.com"));
    assert_eq!(
        identity.claim_values,
        ["platform-admins", "payments-team", "strangers"]
    );
    assert_eq!(identity.link().issuer, identity.issuer);
    assert_eq!(identity.link().subject, "sub-alice");
    assert_eq!(
        oidc.grants(&identity),
        grants(&["admin", "editor:payments", "viewer"])
    );
}

#[tokio::test]
async fn the_role_claim_falls_back_to_userinfo_and_may_be_a_single_string() {
    // No preferred_username: the username is the e-mail. `groups` is one string, and only
    // the userinfo endpoint has it (the provider's default, as OIDC Core says for the code flow).
    let bob = TestUser {
        preferred_username: None,
        ..TestUser::new("bob", json!("payments-team"))
    };
    let provider = start(vec![bob.clone()], ClaimsIn::UserInfo);
    let oidc = discover(&provider).await;
    let (pending, code, state) = sign_in(&provider, &oidc, &bob).await;
    let identity = oidc.finish(pending, &code, &state).await.expect("finish");
    assert_eq!(identity.subject, "sub-bob");
    assert_eq!(identity.username, "bob@example.com");
    assert_eq!(identity.claim_values, ["payments-team"]);
    let g = oidc.grants(&identity);
    assert_eq!(g, grants(&["editor:payments", "viewer"]));
    assert!(g.allows(&Need::InNamespace(Role::Editor, "payments".into())));
    assert!(!g.allows(&Need::InNamespace(Role::Editor, "orders".into())));
}

#[tokio::test]
async fn a_user_without_the_claim_gets_no_grants() {
    let dave = TestUser {
        preferred_username: None,
        email: None,
        ..TestUser::new("dave", serde_json::Value::Null)
    };
    let provider = start(vec![dave.clone()], ClaimsIn::UserInfo);
    let oidc = discover(&provider).await;
    let (pending, code, state) = sign_in(&provider, &oidc, &dave).await;
    let identity = oidc.finish(pending, &code, &state).await.expect("finish");
    assert_eq!(identity.username, "sub-dave", "falls back to the subject");
    assert!(identity.claim_values.is_empty());
    assert_eq!(oidc.grants(&identity), Grants::default());
}

#[tokio::test]
async fn a_wrong_state_is_refused_before_the_code_is_used() {
    let alice = TestUser::new("alice", json!(["readers"]));
    let provider = start(vec![alice.clone()], ClaimsIn::IdToken);
    let oidc = discover(&provider).await;
    let (pending, code, state) = sign_in(&provider, &oidc, &alice).await;

    let forged = format!("{}x", &state[..state.len() - 1]);
    for wrong in [forged.as_str(), "", "state-of-another-sign-in"] {
        let err = oidc
            .finish(pending.clone(), &code, wrong)
            .await
            .expect_err("wrong state");
        assert!(
            matches!(err, OidcError::StateMismatch),
            "{wrong:?}: {err:?}"
        );
    }
    // The code was never sent: the right state still works with it.
    let identity = oidc.finish(pending, &code, &state).await.expect("finish");
    assert_eq!(identity.subject, "sub-alice");
}

#[tokio::test]
async fn a_replayed_code_is_refused() {
    let alice = TestUser::new("alice", json!(["readers"]));
    let provider = start(vec![alice.clone()], ClaimsIn::IdToken);
    let oidc = discover(&provider).await;
    let (pending, code, state) = sign_in(&provider, &oidc, &alice).await;
    oidc.finish(pending.clone(), &code, &state)
        .await
        .expect("first use");

    let err = oidc
        .finish(pending, &code, &state)
        .await
        .expect_err("replay");
    match &err {
        OidcError::Exchange(ProviderCallError::Refused { error, .. }) => {
            assert_eq!(error, "invalid_grant", "{err:?}")
        }
        other => panic!("expected Exchange(Refused), got {other:?}"),
    }
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains(&code), "the code leaks into the error: {msg}");
}

#[tokio::test]
async fn bad_id_tokens_are_refused() {
    // (tamper mode at the provider, the check that must refuse it)
    let table = [
        ("expired", IdTokenRejection::Expired),
        ("audience", IdTokenRejection::Audience),
        ("nonce", IdTokenRejection::Nonce),
        ("issuer", IdTokenRejection::Issuer),
        ("signature", IdTokenRejection::Signature),
        ("hs256", IdTokenRejection::Signature),
        ("none", IdTokenRejection::Signature),
    ];
    let users: Vec<TestUser> = table
        .iter()
        .map(|(mode, _)| TestUser::tampered(&format!("tamper-{mode}"), mode))
        .collect();
    let provider = start(users.clone(), ClaimsIn::IdToken);
    let oidc = discover(&provider).await;
    for (user, (mode, want)) in users.iter().zip(table) {
        let (pending, code, state) = sign_in(&provider, &oidc, user).await;
        let err = oidc.finish(pending, &code, &state).await.expect_err(mode);
        match &err {
            OidcError::InvalidIdToken { reason, .. } => {
                assert_eq!(*reason, want, "{mode}: {err:?}")
            }
            other => panic!("{mode}: expected InvalidIdToken({want:?}), got {other:?}"),
        }
    }
}

#[tokio::test]
async fn roles_are_re_derived_at_every_sign_in_across_a_key_rotation() {
    let carol = TestUser::new("carol", json!(["platform-admins", "payments-team"]));
    let mut provider = start(vec![carol.clone()], ClaimsIn::IdToken);
    let map = RoleMap::from_toml(ROLE_MAP).expect("role map");
    let oidc = discover(&provider).await;
    let (pending, code, state) = sign_in(&provider, &oidc, &carol).await;
    let first = oidc.finish(pending, &code, &state).await.expect("first");
    assert_eq!(
        map_roles(&first.claim_values, &map),
        grants(&["admin", "editor:payments", "viewer"])
    );

    // At the provider, carol leaves platform-admins; the restarted provider also signs with a
    // new key (a key rotation the relying party learns of from the unknown key id).
    let carol = TestUser::new("carol", json!(["payments-team"]));
    provider.restart_with(vec![carol.clone()]);
    let (pending, code, state) = sign_in(&provider, &oidc, &carol).await;
    let second = oidc.finish(pending, &code, &state).await.expect("second");
    assert_eq!(second.subject, first.subject);
    let now = map_roles(&second.claim_values, &map);
    assert_eq!(now, grants(&["editor:payments", "viewer"]));
    assert!(
        !now.allows(&Need::Global(Role::Admin)),
        "the admin grant is gone"
    );
}

#[tokio::test]
async fn a_stale_sign_in_is_refused() {
    let alice = TestUser::new("alice", json!(["readers"]));
    let provider = start(vec![alice.clone()], ClaimsIn::IdToken);
    let oidc = discover(&provider).await;
    let (pending, code, state) = sign_in(&provider, &oidc, &alice).await;
    // The caller keeps the pending login as JSON (a sealed cookie): make it 20 minutes old.
    let mut json = serde_json::to_value(&pending).expect("json");
    json["created_at"] = json!(pending.created_at() - 20 * 60);
    let stale: PendingLogin = serde_json::from_value(json).expect("parse");
    let err = oidc.finish(stale, &code, &state).await.expect_err("stale");
    assert!(matches!(err, OidcError::LoginExpired), "{err:?}");
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_by_the_provider() {
    let alice = TestUser::new("alice", json!(["readers"]));
    let provider = start(vec![alice.clone()], ClaimsIn::IdToken);
    let mut settings = settings_for(&provider);
    settings.client_secret = Some("not-the-client-secret".into());
    let oidc = Oidc::discover(settings).await.expect("discover");
    let (pending, code, state) = sign_in(&provider, &oidc, &alice).await;
    let err = oidc
        .finish(pending, &code, &state)
        .await
        .expect_err("bad secret");
    match &err {
        OidcError::Exchange(ProviderCallError::Refused { error, .. }) => {
            assert_eq!(error, "invalid_client", "{err:?}")
        }
        other => panic!("expected Exchange(Refused), got {other:?}"),
    }
    assert!(!format!("{err:?}").contains("not-the-client-secret"));
}

#[tokio::test]
async fn discovery_refuses_a_wrong_issuer_or_an_unreachable_provider() {
    let provider = start(vec![], ClaimsIn::IdToken);

    // The same provider by another name: its document names another issuer.
    let mut settings = settings_for(&provider);
    let port = provider.issuer().port().expect("port");
    settings.issuer = Url::parse(&format!("http://localhost:{port}")).expect("url");
    let err = Oidc::discover(settings).await.err().expect("wrong issuer");
    assert!(
        matches!(
            &err,
            OidcError::Discovery {
                source: openidconnect::DiscoveryError::Validation(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("--oidc-issuer"), "{err}");

    // No provider at that path.
    let mut settings = settings_for(&provider);
    settings.issuer = provider.issuer().join("/realms/other").expect("url");
    let err = Oidc::discover(settings).await.err().expect("wrong path");
    assert!(matches!(err, OidcError::Discovery { .. }), "{err:?}");

    // Nothing listens there.
    let port = crate::harness::ports::free_port();
    let mut settings = settings_for(&provider);
    settings.issuer = Url::parse(&format!("http://127.0.0.1:{port}")).expect("url");
    let err = Oidc::discover(settings).await.err().expect("unreachable");
    assert!(matches!(err, OidcError::Discovery { .. }), "{err:?}");

    // A role map for another claim than --oidc-role-claim: refused before any request.
    let mut settings = settings_for(&provider);
    settings.role_claim = "roles".into();
    let err = Oidc::discover(settings)
        .await
        .err()
        .expect("claim mismatch");
    assert!(
        matches!(
            err,
            OidcError::InvalidSettings {
                flag: "--oidc-role-map",
                ..
            }
        ),
        "{err:?}"
    );
}
