//! Random credentials and how they are stored: API tokens (`rtc_…`), session ids, ids of users
//! and tokens, and the SHA-256 digests the store keeps instead of the credential.
//!
//! Every credential is 256 bits from the operating system's CSPRNG, so a fast hash (SHA-256)
//! is enough to store it: there is nothing to brute-force. Passwords are different (low
//! entropy) and go through argon2id (`auth::password`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest as _, Sha256};

use super::store::Digest;

/// The prefix of every API token: lets secret scanners (and people) recognise one.
pub const TOKEN_PREFIX: &str = "rtc_";

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(&buf)
}

/// A new API token (`rtc_` + 43 base64url characters = 256 bits) and its digest. Show the token
/// once; store only the digest.
pub fn new_api_token() -> (String, Digest) {
    let token = format!("{TOKEN_PREFIX}{}", random_b64(32));
    let digest = digest(&token);
    (token, digest)
}

/// A new session id for the cookie (256 bits, base64url) and its digest.
pub fn new_session_id() -> (String, Digest) {
    let id = random_b64(32);
    let digest = digest(&id);
    (id, digest)
}

/// A random token for forms and headers (CSRF, OIDC state): 256 bits, base64url.
pub fn new_random_token() -> String {
    random_b64(32)
}

/// A new opaque id with a prefix (`u_` users, `tok_` tokens): 128 bits, hex.
pub fn new_id(prefix: &str) -> String {
    let mut buf = [0u8; 16];
    OsRng.fill_bytes(&mut buf);
    format!("{prefix}{}", hex::encode(buf))
}

/// The stored form of a credential: SHA-256, lower-case hex.
pub fn digest(credential: &str) -> Digest {
    hex::encode(Sha256::digest(credential.as_bytes()))
}

/// Compares two strings in time independent of where they differ (CSRF tokens, OIDC state).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_stored_as_digests() {
        let (a, da) = new_api_token();
        let (b, db) = new_api_token();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_ne!(da, db);
        assert_eq!(digest(&a), da);
        assert_eq!(da.len(), 64);
        assert!(!da.contains(&a[TOKEN_PREFIX.len()..]));
    }

    #[test]
    fn session_ids_and_ids() {
        let (id, d) = new_session_id();
        assert_eq!(id.len(), 43);
        assert_eq!(digest(&id), d);
        let u = new_id("u_");
        assert!(u.starts_with("u_") && u.len() == 34);
        assert_ne!(new_id("u_"), u);
    }

    #[test]
    fn constant_time_eq_compares() {
        for (a, b, want) in [
            ("abc", "abc", true),
            ("abc", "abd", false),
            ("abc", "ab", false),
            ("", "", true),
        ] {
            assert_eq!(constant_time_eq(a, b), want, "{a} {b}");
        }
    }
}
