//! [`Auth`]: the access layer as one running thing — the store, the settings, the audit
//! trail, the key TOTP secrets are sealed with, the password hasher and the per-IP throttle —
//! shared by the guard (`auth::guard`) and the sign-in, user, token and audit routes.

use std::sync::Arc;

use ipnet::IpNet;
use sha2::{Digest as _, Sha256};

use super::audit::Audit;
use super::csrf::Origins;
use super::oidc::Oidc;
use super::password::Hasher;
use super::revocation::{Announcing, Revocations};
use super::secret_box::SecretBox;
use super::session_policy::SessionPolicy;
use super::store::AuthStore;
use super::throttle::IpThrottle;

/// The access layer's settings (from `settings::AuthSettings`).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub sessions: SessionPolicy,
    /// Users with an `admin` grant must have a second factor (`--require-mfa-for-admins`).
    pub require_mfa_for_admins: bool,
    pub origins: Origins,
    /// Peers whose `X-Forwarded-For` is believed (`--trusted-proxy`).
    pub trusted_proxies: Vec<IpNet>,
    /// The bootstrap `--admin-token`, if any.
    pub bootstrap_token: Option<String>,
}

/// The access layer.
pub struct Auth {
    /// The store, wrapped so that every revoking write is announced on [`Auth::revocations`].
    pub store: Arc<dyn AuthStore>,
    /// Sessions, users and tokens that stopped being good in this process (open SSE streams
    /// listen, `auth::revocation`).
    pub revocations: Revocations,
    pub config: AuthConfig,
    pub audit: Audit,
    /// Seals TOTP secrets at rest.
    pub secret_box: SecretBox,
    /// argon2id behind a concurrency cap (a login flood cannot starve the rest).
    pub hasher: Hasher,
    /// Failed sign-ins per client IP (this process's; the per-account counts are in the store).
    pub ip_throttle: IpThrottle,
    /// Single sign-on, when `--oidc-issuer` is given (discovered at start).
    pub oidc: Option<Oidc>,
    /// SHA-256 of the bootstrap token (compared in constant time).
    bootstrap_digest: Option<[u8; 32]>,
}

impl Auth {
    pub fn new(
        store: Arc<dyn AuthStore>,
        secret_box: SecretBox,
        oidc: Option<Oidc>,
        mut config: AuthConfig,
    ) -> Arc<Auth> {
        let bootstrap_digest = config
            .bootstrap_token
            .take()
            .map(|t| Sha256::digest(t.as_bytes()).into());
        let revocations = Revocations::new();
        let store: Arc<dyn AuthStore> = Arc::new(Announcing::new(store, revocations.clone()));
        Arc::new(Auth {
            audit: Audit::new(store.clone()),
            store,
            revocations,
            config,
            secret_box,
            hasher: Hasher::default(),
            ip_throttle: IpThrottle::new(),
            oidc,
            bootstrap_digest,
        })
    }

    /// Whether `token` is the bootstrap `--admin-token` (constant time).
    pub fn is_bootstrap(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        let Some(want) = &self.bootstrap_digest else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        bool::from(given.ct_eq(want))
    }

    pub fn has_bootstrap(&self) -> bool {
        self.bootstrap_digest.is_some()
    }
}
