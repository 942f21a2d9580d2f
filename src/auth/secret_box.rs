//! Secrets at rest (TOTP secrets): authenticated encryption with XChaCha20-Poly1305.
//!
//! [`SecretBox::seal`] encrypts a secret under the deployment's 32-byte key with a fresh random
//! 24-byte nonce and returns one string, base64url (no padding) of `nonce ‖ ciphertext ‖ tag`,
//! to store. A *context* — the user id for a TOTP secret — is bound in as associated data:
//! [`SecretBox::open`] refuses a sealed value that was changed, sealed under another key, or
//! copied to another user's row.
//!
//! Where the key comes from:
//! - the embedded admin (`--data-dir`, `rtconfig dev`): [`SecretBox::load_or_create`] on
//!   `<data-dir>/auth.key` ([`KEY_FILE`]), 32 random bytes, mode 0600, created once. A file
//!   that cannot be read or is not a key stops the start ([`KeyFileError`]) and is never
//!   replaced: a new key would make every stored TOTP secret unreadable.
//! - the PostgreSQL admin: [`SecretBox::derive`] from the cluster's stored random key
//!   (`rtconfig_cluster.mask_key`, `PgLedger::mask_key()`), with the purpose
//!   [`TOTP_KEY_PURPOSE`], so every replica derives the same key and the fingerprint key is
//!   never used for encryption directly.
//!
//! ```
//! use rtconfig::auth::secret_box::SecretBox;
//! let secret_box = SecretBox::new([7; 32]);
//! let sealed = secret_box.seal(b"totp secret", "u_alice");
//! assert_eq!(secret_box.open(&sealed, "u_alice").unwrap(), b"totp secret");
//! assert!(secret_box.open(&sealed, "u_bob").is_err());
//! ```

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;

/// The length of a key, and of `auth.key`.
pub const KEY_BYTES: usize = 32;

/// The length of the random nonce that starts every sealed value.
pub const NONCE_BYTES: usize = 24;

/// The length of the authentication tag that ends every sealed value.
const TAG_BYTES: usize = 16;

/// The key file's name in the embedded admin's data dir.
pub const KEY_FILE: &str = "auth.key";

/// The [`SecretBox::derive`] purpose of the TOTP-secret key (PostgreSQL admin). Changing it
/// makes every stored TOTP secret unreadable.
pub const TOTP_KEY_PURPOSE: &str = "rtconfig totp secrets v1";

/// Why a sealed value does not open. Neither says which byte was wrong, nor shows the value.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretBoxError {
    /// Not base64url, or too short to hold a nonce and a tag: the stored value was damaged.
    #[error(
        "a stored secret is not a sealed value: it was damaged; reset the user's second factor"
    )]
    Malformed,
    /// The authentication failed: changed, sealed for another context, or under another key.
    #[error(
        "a stored secret does not open: it was changed, belongs to another user, or was sealed \
         under another key (was the data dir's auth.key replaced?); reset the user's second factor"
    )]
    Rejected,
}

pub use crate::key_file::KeyFileError;

/// The embedded admin's `auth.key`.
pub const ENCRYPTION_KEY: crate::key_file::KeyKind = crate::key_file::KeyKind {
    name: "secret-encryption key",
    if_unreadable: "without it no stored TOTP secret can be read",
    if_replaced: "every user's TOTP must then be reset and enrolled again",
};

/// Seals and opens secrets under one key. Cheap to clone; its `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: [u8; KEY_BYTES]) -> SecretBox {
        SecretBox {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// A key derived from `master` for one `purpose` (HKDF-SHA256, RFC 5869: no salt, `master`
    /// as input key material, `purpose` as info). `master` must be a random key of at least
    /// 32 bytes, e.g. `PgLedger::mask_key()` with [`TOTP_KEY_PURPOSE`]; the same inputs always
    /// give the same key, different purposes independent keys.
    pub fn derive(master: &[u8], purpose: &str) -> SecretBox {
        let mut key = [0u8; KEY_BYTES];
        Hkdf::<Sha256>::new(None, master)
            .expand(purpose.as_bytes(), &mut key)
            // HKDF-SHA256 gives up to 255 × 32 bytes; 32 is always within.
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SecretBox::new(key)
    }

    /// Loads the key from `path` (the embedded admin's `<data-dir>/auth.key`), creating it
    /// (32 random bytes, mode 0600, written atomically) when there is no such file. A file that
    /// cannot be read or is not a key is an error naming the file, never replaced.
    pub fn load_or_create(path: &Path) -> Result<SecretBox, KeyFileError> {
        crate::key_file::load_or_create(path, ENCRYPTION_KEY).map(SecretBox::new)
    }

    /// Encrypts `plaintext` bound to `context` (e.g. the user id) with a fresh random nonce:
    /// base64url (no padding) of `nonce ‖ ciphertext ‖ tag`, 40 bytes longer than `plaintext`
    /// before encoding. Sealing the same secret twice gives different strings.
    ///
    /// # Panics
    /// Only for a plaintext over 256 GiB (XChaCha20's limit), which no secret is.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("a secret is far below XChaCha20-Poly1305's 256 GiB message limit");
        let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// Decrypts what [`seal`](Self::seal) returned for the same `context` under the same key.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SecretBoxError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SecretBoxError::Malformed)?;
        if bytes.len() < NONCE_BYTES + TAG_BYTES {
            return Err(SecretBoxError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretBoxError::Rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_with_the_same_key_and_context() {
        let b = SecretBox::new([7; 32]);
        for plaintext in [&b""[..], b"12345678901234567890", &[0xff; 1000][..]] {
            let sealed = b.seal(plaintext, "u_alice");
            assert_eq!(b.open(&sealed, "u_alice").expect("opens"), plaintext);
            let raw = URL_SAFE_NO_PAD.decode(&sealed).expect("base64url");
            assert_eq!(raw.len(), NONCE_BYTES + plaintext.len() + TAG_BYTES);
            assert!(
                !sealed.contains(['+', '/', '=']),
                "url-safe, unpadded: {sealed}"
            );
        }
    }

    #[test]
    fn sealing_twice_uses_a_fresh_nonce() {
        let b = SecretBox::new([7; 32]);
        let one = b.seal(b"same secret", "u_alice");
        let two = b.seal(b"same secret", "u_alice");
        assert_ne!(one, two);
        let (n1, n2) = (
            URL_SAFE_NO_PAD.decode(&one).expect("b64"),
            URL_SAFE_NO_PAD.decode(&two).expect("b64"),
        );
        assert_ne!(n1[..NONCE_BYTES], n2[..NONCE_BYTES]);
        assert!(
            !one.contains(&URL_SAFE_NO_PAD.encode(b"same secret")),
            "not the plaintext in base64"
        );
    }

    #[test]
    fn every_changed_byte_is_rejected() {
        let b = SecretBox::new([7; 32]);
        let sealed = b.seal(b"12345678901234567890", "u_alice");
        let raw = URL_SAFE_NO_PAD.decode(&sealed).expect("b64");
        for i in 0..raw.len() {
            let mut tampered = raw.clone();
            tampered[i] ^= 0x01;
            assert_eq!(
                b.open(&URL_SAFE_NO_PAD.encode(&tampered), "u_alice"),
                Err(SecretBoxError::Rejected),
                "byte {i} changed"
            );
        }
        let mut longer = raw.clone();
        longer.push(0);
        assert_eq!(
            b.open(&URL_SAFE_NO_PAD.encode(&longer), "u_alice"),
            Err(SecretBoxError::Rejected),
            "a byte appended"
        );
    }

    #[test]
    fn another_context_or_key_is_rejected() {
        let b = SecretBox::new([7; 32]);
        let sealed = b.seal(b"secret", "u_alice");
        let cases: [(&str, &SecretBox, &str); 4] = [
            ("another user", &b, "u_bob"),
            ("an empty context", &b, ""),
            ("a prefix of the context", &b, "u_alic"),
            ("another key", &SecretBox::new([8; 32]), "u_alice"),
        ];
        for (what, with, context) in cases {
            assert_eq!(
                with.open(&sealed, context),
                Err(SecretBoxError::Rejected),
                "{what}"
            );
        }
    }

    #[test]
    fn what_is_not_a_sealed_value_is_malformed() {
        let b = SecretBox::new([7; 32]);
        let short = URL_SAFE_NO_PAD.encode([0u8; NONCE_BYTES + TAG_BYTES - 1]);
        let padded = format!("{}=", b.seal(b"x", "u"));
        let standard = base64::engine::general_purpose::STANDARD.encode([0xfb; 48]);
        for bad in ["", "not base64!", &short, &padded, &standard] {
            assert_eq!(b.open(bad, "u"), Err(SecretBoxError::Malformed), "{bad:?}");
        }
        let message = SecretBoxError::Rejected.to_string();
        assert!(
            message.contains("auth.key"),
            "says what to check: {message}"
        );
    }

    #[test]
    fn debug_does_not_show_the_key() {
        assert_eq!(format!("{:?}", SecretBox::new([7; 32])), "SecretBox(..)");
    }

    /// Pinned so that derived keys (and so every stored secret of a PostgreSQL deployment) do not
    /// change across releases: RFC 5869 test case 3 (SHA-256, no salt, no info) gives
    /// `8da4e775…c3738d2d` as the first 32 bytes of its output.
    #[test]
    fn derive_is_hkdf_sha256_and_separates_purposes() {
        let rfc_key: [u8; 32] =
            hex::decode("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d")
                .expect("hex")
                .try_into()
                .expect("32 bytes");
        let derived = SecretBox::derive(&[0x0b; 22], "");
        let sealed = derived.seal(b"secret", "u");
        assert_eq!(
            SecretBox::new(rfc_key)
                .open(&sealed, "u")
                .expect("same key"),
            b"secret"
        );

        let master = [42u8; 32];
        let a = SecretBox::derive(&master, TOTP_KEY_PURPOSE);
        let sealed = a.seal(b"secret", "u");
        assert_eq!(
            SecretBox::derive(&master, TOTP_KEY_PURPOSE)
                .open(&sealed, "u")
                .expect("the same inputs give the same key"),
            b"secret"
        );
        for (what, other) in [
            ("another purpose", SecretBox::derive(&master, "other v1")),
            (
                "another master",
                SecretBox::derive(&[43; 32], TOTP_KEY_PURPOSE),
            ),
            ("the master itself", SecretBox::new(master)),
        ] {
            assert_eq!(
                other.open(&sealed, "u"),
                Err(SecretBoxError::Rejected),
                "{what}"
            );
        }
    }

    #[test]
    fn the_key_file_is_created_once_owner_only_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data").join(KEY_FILE);
        let a = SecretBox::load_or_create(&path).expect("create");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(bytes.len(), KEY_BYTES);
        assert_ne!(bytes, [0u8; KEY_BYTES], "random");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = a.seal(b"secret", "u_alice");
        let b = SecretBox::load_or_create(&path).expect("load");
        assert_eq!(
            b.open(&sealed, "u_alice")
                .expect("the same key after a restart"),
            b"secret"
        );
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "not rewritten");

        let other = tempfile::tempdir().expect("tempdir");
        let c = SecretBox::load_or_create(&other.path().join(KEY_FILE)).expect("create");
        assert_eq!(
            c.open(&sealed, "u_alice"),
            Err(SecretBoxError::Rejected),
            "another data dir has another key"
        );
    }

    #[test]
    fn a_malformed_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        for damaged in [&b""[..], &[1; 31][..], &[1; 33][..], &[1; 64][..]] {
            std::fs::write(&path, damaged).expect("write");
            let e = SecretBox::load_or_create(&path).expect_err("refused");
            assert!(
                matches!(e, KeyFileError::Malformed { len, .. } if len == damaged.len()),
                "{e:?}"
            );
            let message = e.to_string();
            assert!(
                message.contains(&*path.to_string_lossy()),
                "names the file: {message}"
            );
            assert!(message.contains("restore it"), "says what to do: {message}");
            assert_eq!(
                std::fs::read(&path).expect("read"),
                damaged,
                "left as it was"
            );
        }
    }

    #[test]
    fn an_unreadable_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the key should be: reading it fails (EISDIR), as a file without
        // read permission would (root reads those anyway, so the test cannot use one).
        let path = dir.path().join(KEY_FILE);
        std::fs::create_dir(&path).expect("mkdir");
        let e = SecretBox::load_or_create(&path).expect_err("refused");
        assert!(matches!(e, KeyFileError::Unreadable { .. }), "{e:?}");
        let message = e.to_string();
        assert!(
            message.contains(&*path.to_string_lossy()),
            "names the file: {message}"
        );
        assert!(path.is_dir(), "nothing was written over it");
    }

    #[test]
    fn a_key_file_that_cannot_be_created_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(KEY_FILE);
        // A directory where the temporary file goes (`auth.tmp`): the key is missing, so it is
        // created, and writing it fails.
        std::fs::create_dir(path.with_extension("tmp")).expect("mkdir");
        let e = SecretBox::load_or_create(&path).expect_err("refused");
        assert!(matches!(e, KeyFileError::Create { .. }), "{e:?}");
        assert!(
            e.to_string().contains(&*path.to_string_lossy()),
            "names the file: {e}"
        );
        assert!(!path.exists(), "no key was left behind");
    }
}
