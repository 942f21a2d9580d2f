//! INTERIM: stand-ins for `auth::password` and `auth::throttle` (the `pw` branch) until they
//! land; replaced at that merge. Same shapes the callers expect.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

fn argon() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

/// argon2id of `password` (PHC string).
pub async fn hash(password: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        argon()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| HashError)
    })
    .await
    .map_err(|_| HashError)?
}

/// Whether `password` matches `phc`.
pub async fn verify(phc: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .is_ok_and(|h| argon().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// Spends a verification's time on nothing (unknown users).
pub async fn verify_dummy(password: String) {
    let _ = verify(
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0f9Vd6R7eYlY3vR9B8dHzN8jvD2bq8cQ1kF3u1nJxXk".into(),
        password,
    )
    .await;
}

/// The password rules (length only here).
pub fn policy_problem(password: &str) -> Option<String> {
    (password.chars().count() < 12).then(|| "a password needs at least 12 characters".into())
}
