//! An append-only, checksummed, fsynced journal of JSON records in one file, and the data dir's
//! process locks: the crash-safety shared by the embedded ledger (`ledger.log`) and the embedded
//! auth store (`auth.log`).
//!
//! Line format: `<crc32 hex8> <json>\n`, one record a line. [`Journal::append`] writes the line
//! and `fsync`s before it returns, so a caller acknowledges only what is durable. At open every
//! record is read back: a torn last line (a crash mid-append, never acknowledged) is cut off,
//! while a damaged line with records after it refuses the open ([`JournalError::Corrupt`])
//! rather than silently dropping data. The file is created owner-only (0600): it may hold
//! secrets. [`Journal::replace`] rewrites the whole journal (compaction) through a temporary
//! file, fsync and rename, so a crash leaves either the old journal or the new one.
//!
//! [`lock_dir`] takes an exclusive `flock` on a lock file in the dir and writes this process's
//! pid into it, so a second process can say which process holds the dir.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::telemetry::Chain;

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record before the end fails its checksum or does not parse (the message says which).
    #[error("{0}")]
    Corrupt(String),
    /// An append failed and cutting the journal back to its last good record failed too: the
    /// journal refuses writes until a restart, whose open repairs it.
    #[error("an append failed and the log could not be cut back to its last good record; restart rtconfig to repair it")]
    Poisoned(#[source] Arc<std::io::Error>),
}

/// `map_err` for a failed file operation: `what` was being done to `path`.
pub fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_owned();
    move |source| JournalError::Io { what, path, source }
}

/// One journal file, open for appending.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    /// Length of the journal up to the last complete record.
    len: u64,
    /// Set when an append failed and the journal could not be cut back (this is why).
    poisoned: Option<Arc<std::io::Error>>,
}

fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).read(true).append(true);
    // A journal may hold secrets (values, password hashes): owner-only when it is created.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

impl Journal {
    /// Opens (or creates) `<dir>/<file_name>` and reads every record. A torn last record is cut
    /// off (logged as a warning); damage anywhere else is [`JournalError::Corrupt`].
    pub fn open<T: DeserializeOwned>(
        dir: &Path,
        file_name: &str,
    ) -> Result<(Journal, Vec<T>), JournalError> {
        std::fs::create_dir_all(dir).map_err(io("create the data dir", dir))?;
        let path = dir.join(file_name);
        let existed = path.exists();
        let mut file = options().open(&path).map_err(io("open", &path))?;
        if !existed {
            sync_dir(dir).map_err(io("sync the data dir", dir))?;
        }
        let (records, good_len, torn) = read_all(&file, &path, file_name)?;
        if torn {
            tracing::warn!(
                path = %path.display(),
                kept_bytes = good_len,
                "log ends with a torn record (crash during a write that was never acknowledged); cutting it off"
            );
            file.set_len(good_len)
                .and_then(|()| file.sync_all())
                .map_err(io("cut the torn record off", &path))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(io("seek to the end of", &path))?;
        Ok((
            Journal {
                file,
                path,
                len: good_len,
                poisoned: None,
            },
            records,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of complete records.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `Err` while an earlier failed append could not be undone (writes are refused).
    pub fn check(&self) -> Result<(), JournalError> {
        match &self.poisoned {
            Some(why) => Err(JournalError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Appends one record durably (written and fsynced before it returns). On failure the
    /// journal is cut back to its last good length; if even that fails, the journal refuses
    /// further writes until reopened (the open repairs it).
    pub fn append<T: Serialize>(&mut self, record: &T) -> Result<(), JournalError> {
        self.check()?;
        let line = encode_line(record)?;
        let written = self
            .file
            .write_all(&line)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(
                        path = %self.path.display(),
                        error = %Chain(&e),
                        cut_error = %Chain(&cut),
                        "an append failed and the log could not be cut back; refusing writes until restarted"
                    );
                    self.poisoned = Some(Arc::new(cut));
                }
                Err(io("append to", &self.path)(e))
            }
        }
    }

    /// Replaces the whole journal with `records` (compaction): writes `<file>.tmp` (0600),
    /// fsyncs it, renames it over the journal and fsyncs the dir. On error the old journal is
    /// kept and stays in use.
    pub fn replace<T: Serialize>(&mut self, records: &[T]) -> Result<(), JournalError> {
        self.check()?;
        let tmp = self.path.with_extension("log.tmp");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut len = 0u64;
        {
            let mut opts = OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let file = opts.open(&tmp).map_err(io("create", &tmp))?;
            let mut out = std::io::BufWriter::new(file);
            for record in records {
                let line = encode_line(record)?;
                out.write_all(&line).map_err(io("write", &tmp))?;
                len += line.len() as u64;
            }
            let file = out
                .into_inner()
                .map_err(|e| io("write", &tmp)(e.into_error()))?;
            file.sync_all().map_err(io("sync", &tmp))?;
        }
        std::fs::rename(&tmp, &self.path)
            .map_err(io("rename the compacted log over", &self.path))?;
        sync_dir(&dir).map_err(io("sync the data dir", &dir))?;
        let mut file = options().open(&self.path).map_err(io("open", &self.path))?;
        file.seek(SeekFrom::End(0))
            .map_err(io("seek to the end of", &self.path))?;
        self.file = file;
        self.len = len;
        Ok(())
    }
}

fn encode_line<T: Serialize>(record: &T) -> Result<Vec<u8>, JournalError> {
    let json = serde_json::to_vec(record)
        .map_err(|e| JournalError::Corrupt(format!("cannot encode record: {e}")))?;
    let mut line = Vec::with_capacity(json.len() + 10);
    line.extend_from_slice(format!("{:08x} ", crc32fast::hash(&json)).as_bytes());
    line.extend_from_slice(&json);
    line.push(b'\n');
    Ok(line)
}

/// Reads every complete record. Returns them, the length of the good prefix, and whether a torn
/// tail followed it.
fn read_all<T: DeserializeOwned>(
    file: &File,
    path: &Path,
    file_name: &str,
) -> Result<(Vec<T>, u64, bool), JournalError> {
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(0)).map_err(io("read", path))?;
    let mut records = Vec::new();
    let mut good_len = 0u64;
    let mut line = Vec::new();
    let mut line_no = 0usize;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io("read", path))?;
        if n == 0 {
            return Ok((records, good_len, false));
        }
        line_no += 1;
        let complete = line.last() == Some(&b'\n');
        match decode_line(&line) {
            Some(record) if complete => {
                records.push(record);
                good_len += n as u64;
            }
            _ => {
                // Damage is only forgivable at the very end (a torn append).
                let mut rest = Vec::new();
                reader.read_to_end(&mut rest).map_err(io("read", path))?;
                if rest.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
                    return Ok((records, good_len, true));
                }
                return Err(JournalError::Corrupt(format!(
                    "record {line_no} of {file_name} fails its checksum or does not parse, and records follow it"
                )));
            }
        }
    }
}

fn decode_line<T: DeserializeOwned>(line: &[u8]) -> Option<T> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.len() < 10 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let json = &line[9..];
    if crc32fast::hash(json) != crc {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// Fsyncs a directory (after creating or renaming a file in it).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why [`lock_dir`] failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock; `pid` is what it wrote into the lock file, if anything.
    #[error("the lock is held by another process")]
    InUse { pid: Option<u32> },
    #[error(transparent)]
    Io(JournalError),
}

/// Takes an exclusive lock on `<dir>/<file_name>` (an `flock`, held as long as the returned
/// file is open) and writes this process's pid into the file. Two locks on the same file
/// conflict even inside one process, so each store of a dir has its own lock file.
pub fn lock_dir(dir: &Path, file_name: &str) -> Result<File, LockError> {
    std::fs::create_dir_all(dir).map_err(|e| LockError::Io(io("create the data dir", dir)(e)))?;
    let path = dir.join(file_name);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| LockError::Io(io("open the lock file", &path)(e)))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(LockError::InUse { pid });
        }
        Err(fs4::TryLockError::Error(e)) => return Err(LockError::Io(io("lock", &path)(e))),
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| LockError::Io(io("write this process's pid into", &path)(e)))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct R {
        n: u32,
    }

    #[test]
    fn records_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut j, old): (Journal, Vec<R>) = Journal::open(dir.path(), "j.log").expect("open");
            assert!(old.is_empty() && j.is_empty());
            j.append(&R { n: 1 }).expect("append");
            j.append(&R { n: 2 }).expect("append");
        }
        let path = dir.path().join("j.log");
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"0badc0de {\"n\":").expect("torn");
        drop(f);
        let (mut j, got): (Journal, Vec<R>) = Journal::open(dir.path(), "j.log").expect("reopen");
        assert_eq!(got, vec![R { n: 1 }, R { n: 2 }]);
        j.append(&R { n: 3 }).expect("append after the cut");
        drop(j);
        let (_, got): (Journal, Vec<R>) = Journal::open(dir.path(), "j.log").expect("reopen");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn damage_before_the_end_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut j, _): (Journal, Vec<R>) = Journal::open(dir.path(), "j.log").expect("open");
            j.append(&R { n: 1 }).expect("append");
            j.append(&R { n: 2 }).expect("append");
        }
        let path = dir.path().join("j.log");
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replacen("1}", "7}", 1)).expect("write");
        match Journal::open::<R>(dir.path(), "j.log") {
            Err(JournalError::Corrupt(why)) => {
                assert!(why.contains("record 1 of j.log"), "{why}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn replace_compacts_and_appends_continue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut j, _): (Journal, Vec<R>) = Journal::open(dir.path(), "j.log").expect("open");
        for n in 0..10 {
            j.append(&R { n }).expect("append");
        }
        let before = j.len();
        j.replace(&[R { n: 42 }]).expect("replace");
        assert!(j.len() < before);
        j.append(&R { n: 43 }).expect("append");
        drop(j);
        let (_, got): (Journal, Vec<R>) = Journal::open(dir.path(), "j.log").expect("reopen");
        assert_eq!(got, vec![R { n: 42 }, R { n: 43 }]);
        assert!(!dir.path().join("j.log.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("j.log"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_held_lock_names_the_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = lock_dir(dir.path(), "x.lock").expect("lock");
        match lock_dir(dir.path(), "x.lock") {
            Err(LockError::InUse { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected InUse, got {other:?}"),
        }
        // Another lock file of the same dir is independent.
        drop(lock_dir(dir.path(), "y.lock").expect("another lock file"));
    }
}
