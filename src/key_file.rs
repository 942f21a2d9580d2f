//! A random 32-byte key kept in a file of the data dir: the embedded admin's secret-fingerprint
//! key (`secret.key`, [`crate::admin::mask::Masker`]) and its secret-encryption key
//! (`auth.key`, [`crate::auth::secret_box::SecretBox`]).
//!
//! [`load_or_create`] creates the file once (mode 0600, written atomically) and afterwards
//! refuses to start on a file it cannot read or that is not a key, because a new key would
//! silently invalidate what the old one protected. Errors name the file and say what to do.

use std::fmt;
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use rand::RngCore;

/// The length of every key file.
pub const KEY_BYTES: usize = 32;

/// Which key a file holds, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyKind {
    /// "secret-fingerprint key", "secret-encryption key".
    pub name: &'static str,
    /// What losing the file costs, in a parenthesis after "fix its permissions or restore it".
    pub if_unreadable: &'static str,
    /// What starting with a new key costs.
    pub if_replaced: &'static str,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Why a key file cannot be used (the embedded admin does not start).
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the {kind} {}: fix its permissions or restore it ({})", path.display(), kind.if_unreadable)]
    Unreadable {
        kind: KeyKind,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {kind} {} holds {len} bytes, not {KEY_BYTES}: restore it from a backup, or delete it to start with a new key ({})", path.display(), kind.if_replaced)]
    Malformed {
        kind: KeyKind,
        path: PathBuf,
        len: usize,
    },
    #[error("cannot create the {kind} {}", path.display())]
    Create {
        kind: KeyKind,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Loads the key in `path`, creating it (32 random bytes) when there is no such file. A file
/// that cannot be read or is not a key is an error, never replaced.
pub fn load_or_create(path: &Path, kind: KeyKind) -> Result<[u8; KEY_BYTES], KeyFileError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            <[u8; KEY_BYTES]>::try_from(bytes.as_slice()).map_err(|_| KeyFileError::Malformed {
                kind,
                path: path.to_owned(),
                len: bytes.len(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; KEY_BYTES];
            OsRng.fill_bytes(&mut key);
            crate::private_file::write(path, &[&key]).map_err(|source| KeyFileError::Create {
                kind,
                path: path.to_owned(),
                source,
            })?;
            Ok(key)
        }
        Err(source) => Err(KeyFileError::Unreadable {
            kind,
            path: path.to_owned(),
            source,
        }),
    }
}
