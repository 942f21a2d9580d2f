//! `rtconfig dev`'s first start: an `admin` user with a one-time password, and an admin API
//! token in `<data-dir>/dev-token` (mode 0600) for scripts and the README tour.
//!
//! - First start (no enabled global admin and no user named `admin`): create `admin` with a
//!   random password and a global `admin` grant; the password is returned once, for the start
//!   banner, and never stored in clear or logged. Later starts create nothing.
//! - The dev token: kept while `<data-dir>/dev-token` holds a token the store knows and has not
//!   revoked; otherwise (the file was deleted, or its token revoked) a new token named `dev` is
//!   made (any earlier live `dev` token is revoked: its value is lost) and the file rewritten,
//!   and the banner says so.
//!
//! Every step is audited with actor `dev`.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::audit::{record_local, Action};
use super::password::{Hasher, PasswordError};
use super::role::{Grant, Grants, Role};
use super::secrets;
use super::store::{ApiToken, AuthStore, AuthStoreError, NewUser};

/// The dev token's file in the data dir.
pub const TOKEN_FILE: &str = "dev-token";
/// The user dev creates at its first start.
pub const ADMIN_USER: &str = "admin";
/// The name of the dev token (its actor is `token:dev`).
pub const TOKEN_NAME: &str = "dev";
/// Characters of the one-time password (base64url: 6 bits each, so 144 bits).
const PASSWORD_CHARS: usize = 24;

/// What happened to the dev token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevToken {
    /// The file's token is still valid.
    Kept,
    /// First start (no dev token before): a new token was written.
    Created,
    /// The file was missing or its token no longer valid: a new one was written (and the old
    /// one revoked).
    Replaced,
}

/// What [`bootstrap_dev`] did, for the start banner.
#[derive(Debug)]
pub struct DevBootstrap {
    /// The `admin` user's one-time password, when it was created now (show it once).
    pub admin_password: Option<String>,
    pub token: DevToken,
    pub token_path: PathBuf,
}

/// Why the bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Store(#[from] AuthStoreError),
    #[error("cannot hash the admin password")]
    Hash(#[source] PasswordError),
    #[error("cannot write the dev token to {}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn admin_grants() -> Grants {
    Grants::new(vec![Grant::global(Role::Admin)])
}

async fn audit(
    store: &dyn AuthStore,
    action: Action,
    target: &str,
    details: serde_json::Value,
) -> Result<(), AuthStoreError> {
    record_local(store, "dev", action, target, details)
        .await
        .map(|_| ())
}

/// The admin user and the dev token (see the module docs).
pub async fn bootstrap_dev(
    store: &dyn AuthStore,
    data_dir: &Path,
) -> Result<DevBootstrap, BootstrapError> {
    let admin_password =
        if !store.has_admin().await? && store.user_by_name(ADMIN_USER).await?.is_none() {
            let password: String = secrets::new_random_token()
                .chars()
                .take(PASSWORD_CHARS)
                .collect();
            let hash = Hasher::default()
                .hash(&password)
                .await
                .map_err(BootstrapError::Hash)?;
            store
                .create_user(NewUser {
                    username: ADMIN_USER.to_owned(),
                    grants: admin_grants(),
                    password_hash: Some(hash),
                    oidc: None,
                })
                .await?;
            audit(
                store,
                Action::UserCreated,
                ADMIN_USER,
                json!({"roles": ["admin"], "bootstrap": true}),
            )
            .await?;
            Some(password)
        } else {
            None
        };

    let token_path = data_dir.join(TOKEN_FILE);
    let existing = std::fs::read_to_string(&token_path)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let valid = match &existing {
        Some(token) => store
            .token_by_digest(&secrets::digest(token))
            .await?
            .is_some_and(|t| {
                t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > super::memory::now())
            }),
        None => false,
    };
    if valid {
        return Ok(DevBootstrap {
            admin_password,
            token: DevToken::Kept,
            token_path,
        });
    }
    let now = super::memory::now();
    let mut had_one = false;
    for old in store.tokens().await? {
        had_one |= old.name == TOKEN_NAME;
        if old.name == TOKEN_NAME
            && old.revoked_at.is_none()
            && store.revoke_token(&old.id, now).await?
        {
            audit(
                store,
                Action::TokenRevoked,
                &old.id,
                json!({"name": TOKEN_NAME, "why": "dev-token file replaced"}),
            )
            .await?;
        }
    }
    let (token, digest) = secrets::new_api_token();
    let record = ApiToken {
        id: secrets::new_id("tok_"),
        name: TOKEN_NAME.to_owned(),
        digest,
        grants: admin_grants(),
        created_by: None,
        created_at: now,
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    };
    store.create_token(record.clone()).await?;
    audit(
        store,
        Action::TokenCreated,
        &record.id,
        json!({"name": TOKEN_NAME, "roles": ["admin"], "file": TOKEN_FILE}),
    )
    .await?;
    crate::private_file::write(&token_path, &[token.as_bytes(), b"\n"]).map_err(|source| {
        BootstrapError::Write {
            path: token_path.clone(),
            source,
        }
    })?;
    Ok(DevBootstrap {
        admin_password,
        token: if !had_one {
            DevToken::Created
        } else {
            DevToken::Replaced
        },
        token_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::conformance::new_user;
    use crate::auth::embedded::EmbeddedAuthStore;
    use crate::auth::store::UserUpdate;

    #[tokio::test]
    async fn the_first_start_creates_admin_and_the_token_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedAuthStore::open(dir.path()).expect("open");
        let first = bootstrap_dev(&store, dir.path()).await.expect("first");
        let password = first.admin_password.expect("a one-time password");
        assert_eq!(password.len(), PASSWORD_CHARS);
        assert!(crate::auth::password::PasswordPolicy::check(&password, ADMIN_USER).is_ok());
        assert_eq!(first.token, DevToken::Created);
        let admin = store
            .user_by_name(ADMIN_USER)
            .await
            .expect("read")
            .expect("admin created");
        assert_eq!(admin.grants, admin_grants());
        let hash = admin.password_hash.expect("a password");
        assert!(Hasher::default()
            .verify(&password, &hash)
            .await
            .expect("verify"));
        let token = std::fs::read_to_string(&first.token_path).expect("token file");
        let stored = store
            .token_by_digest(&secrets::digest(token.trim()))
            .await
            .expect("read")
            .expect("the file's token is in the store");
        assert_eq!(stored.name, TOKEN_NAME);
        assert_eq!(stored.grants, admin_grants());

        let again = bootstrap_dev(&store, dir.path()).await.expect("again");
        assert!(
            again.admin_password.is_none(),
            "the password is never made again"
        );
        assert_eq!(again.token, DevToken::Kept);
        assert_eq!(
            std::fs::read_to_string(&first.token_path).expect("kept"),
            token
        );

        // A revoked dev token is replaced, and the old one stays revoked.
        assert!(store
            .revoke_token(&stored.id, memory_now())
            .await
            .expect("revoke"));
        let replaced = bootstrap_dev(&store, dir.path()).await.expect("replaced");
        assert_eq!(replaced.token, DevToken::Replaced);
        let new = std::fs::read_to_string(&first.token_path).expect("new file");
        assert_ne!(new, token);
        // A deleted file is replaced; the token it held is revoked (its value is lost).
        std::fs::remove_file(&first.token_path).expect("delete");
        assert_eq!(
            bootstrap_dev(&store, dir.path())
                .await
                .expect("after delete")
                .token,
            DevToken::Replaced
        );
        let live: Vec<_> = store
            .tokens()
            .await
            .expect("tokens")
            .into_iter()
            .filter(|t| t.revoked_at.is_none())
            .collect();
        assert_eq!(live.len(), 1, "one live dev token");
        assert_eq!(store.users().await.expect("users").len(), 1);
    }

    fn memory_now() -> chrono::DateTime<chrono::Utc> {
        crate::auth::memory::now()
    }

    #[tokio::test]
    async fn an_existing_admin_or_a_user_named_admin_means_no_new_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedAuthStore::open(dir.path()).expect("open");
        store
            .create_user(new_user("root", &["admin"]))
            .await
            .expect("an admin made with the CLI");
        assert!(bootstrap_dev(&store, dir.path())
            .await
            .expect("bootstrap")
            .admin_password
            .is_none());

        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedAuthStore::open(dir.path()).expect("open");
        let admin = store
            .create_user(new_user(ADMIN_USER, &["admin"]))
            .await
            .expect("admin");
        store
            .update_user(&admin.id, UserUpdate::Disabled(true))
            .await
            .expect("disabled by the operator");
        assert!(
            bootstrap_dev(&store, dir.path())
                .await
                .expect("bootstrap")
                .admin_password
                .is_none(),
            "a disabled admin is not replaced behind the operator's back"
        );
        assert_eq!(store.users().await.expect("users").len(), 1);
    }
}
