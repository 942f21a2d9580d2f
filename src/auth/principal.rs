//! Who is making a request, once the guard (`auth::guard`) has authenticated it: a signed-in
//! user with a session, an API token (with the user who created it), or the bootstrap
//! `--admin-token`.
//!
//! A principal's [`Principal::grants`] are what authorization asks; its [`Principal::actor`]
//! is what changesets and audit events record.

use super::role::{Grant, Grants, Role};
use super::store::{ApiToken, Session, User};

/// The actor recorded for the bootstrap `--admin-token`.
pub const BOOTSTRAP_ACTOR: &str = "admin-token";

/// An authenticated caller.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A user signed in with a session cookie.
    User { user: User, session: Session },
    /// An API token (`Authorization: Bearer rtc_…`) and its creator as the store has them
    /// *now* (`None`: made with the CLI, or the creator no longer exists — see
    /// [`Principal::grants`]).
    Token {
        token: ApiToken,
        creator: Option<User>,
    },
    /// The bootstrap `--admin-token`: a global admin, every use audited.
    Bootstrap,
}

impl Principal {
    /// The name recorded on changesets and audit events: the user name, `token:NAME`, or
    /// `admin-token`.
    pub fn actor(&self) -> String {
        match self {
            Principal::User { user, .. } => user.username.clone(),
            Principal::Token { token, .. } => format!("token:{}", token.name),
            Principal::Bootstrap => BOOTSTRAP_ACTOR.to_owned(),
        }
    }

    /// The effective grants: a user's own (none when disabled); a token's scope limited by
    /// its creator's *current* grants (none when the creator is disabled or gone; a CLI token,
    /// which has no creator, keeps its scope); the bootstrap token is a global admin.
    pub fn grants(&self) -> Grants {
        match self {
            Principal::User { user, .. } => user_grants(user),
            Principal::Token { token, creator } => match (&token.created_by, creator) {
                (None, _) => token.grants.clone(),
                (Some(_), Some(creator)) => token.grants.limited_by(&user_grants(creator)),
                // The creator was deleted: nothing to limit by, so nothing.
                (Some(_), None) => Grants::default(),
            },
            Principal::Bootstrap => Grants::new(vec![Grant::global(Role::Admin)]),
        }
    }

    /// The API token's id, when the principal is one (recorded in `ChangeMeta::token_id`).
    pub fn token_id(&self) -> Option<&str> {
        match self {
            Principal::Token { token, .. } => Some(&token.id),
            _ => None,
        }
    }

    /// The signed-in user (sessions only).
    pub fn session_user(&self) -> Option<(&User, &Session)> {
        match self {
            Principal::User { user, session } => Some((user, session)),
            _ => None,
        }
    }

    /// The user on whose behalf this acts: a session's user or a token's creator.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Principal::User { user, .. } => Some(&user.id),
            Principal::Token { token, .. } => token.created_by.as_deref(),
            Principal::Bootstrap => None,
        }
    }

    /// `session`, `token` or `bootstrap` (whoami, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::User { .. } => "session",
            Principal::Token { .. } => "token",
            Principal::Bootstrap => "bootstrap",
        }
    }
}

fn user_grants(user: &User) -> Grants {
    if user.disabled {
        Grants::default()
    } else {
        user.grants.clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::auth::store::LoginFailures;

    fn grants(list: &[&str]) -> Grants {
        Grants::new(list.iter().map(|s| s.parse().expect("grant")).collect())
    }

    pub(crate) fn user(name: &str, list: &[&str], disabled: bool) -> User {
        let at = Utc.timestamp_opt(1_700_000_000, 0).single().expect("time");
        User {
            id: format!("u_{name}"),
            username: name.to_owned(),
            grants: grants(list),
            disabled,
            password_hash: None,
            oidc: None,
            totp: None,
            failures: LoginFailures::default(),
            created_at: at,
            updated_at: at,
        }
    }

    fn token(scope: &[&str], created_by: Option<&str>) -> ApiToken {
        let at = Utc.timestamp_opt(1_700_000_000, 0).single().expect("time");
        ApiToken {
            id: "tok_1".into(),
            name: "ci".into(),
            digest: "d".into(),
            grants: grants(scope),
            created_by: created_by.map(str::to_owned),
            created_at: at,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn effective_grants() {
        let alice = user("alice", &["editor:demo"], false);
        let session = Session {
            id_digest: "x".into(),
            user_id: alice.id.clone(),
            csrf_token: "c".into(),
            created_at: alice.created_at,
            last_seen_at: alice.created_at,
            expires_at: alice.created_at,
            pending: None,
            ip: None,
            user_agent: None,
        };
        // (principal, effective grants, actor)
        let table: Vec<(Principal, Grants, &str)> = vec![
            (
                Principal::User {
                    user: alice.clone(),
                    session: session.clone(),
                },
                grants(&["editor:demo"]),
                "alice",
            ),
            (
                Principal::User {
                    user: user("alice", &["admin"], true),
                    session,
                },
                grants(&[]),
                "alice",
            ),
            (
                Principal::Token {
                    token: token(&["admin"], Some("u_alice")),
                    creator: Some(alice.clone()),
                },
                grants(&["editor:demo"]),
                "token:ci",
            ),
            (
                Principal::Token {
                    token: token(&["viewer"], Some("u_alice")),
                    creator: Some(user("alice", &["admin"], true)),
                },
                grants(&[]),
                "token:ci",
            ),
            (
                Principal::Token {
                    token: token(&["viewer"], Some("u_gone")),
                    creator: None,
                },
                grants(&[]),
                "token:ci",
            ),
            (
                Principal::Token {
                    token: token(&["editor:ops"], None),
                    creator: None,
                },
                grants(&["editor:ops"]),
                "token:ci",
            ),
            (Principal::Bootstrap, grants(&["admin"]), "admin-token"),
        ];
        for (p, want, actor) in table {
            assert_eq!(p.grants(), want, "{p:?}");
            assert_eq!(p.actor(), actor);
        }
    }
}
