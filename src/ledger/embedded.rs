//! The embedded ledger: one append-only log file in the data dir, for `rtconfig dev` and
//! single-admin installs.
//!
//! File layout (`<data-dir>/ledger.log`, written through `crate::journal`, which the embedded
//! auth store's `auth.log` shares): one record per line, `<crc32 hex8> <json>\n`. Records
//! are `init` (cluster id), `namespace` (creation or epoch bump), `changeset` and `adopt` (a
//! Redis image taken into an empty namespace). A commit
//! appends its line and `fsync`s before it is acknowledged, so a crash loses nothing that was
//! acknowledged. At open the whole log is replayed into memory; a torn last line (a crash
//! mid-append, never acknowledged) is cut off, while a damaged line anywhere else stops the
//! open with [`LedgerError::Corrupt`] rather than silently dropping history.
//!
//! One process at a time: an exclusive lock on `<data-dir>/lock` guards the log; the holder
//! writes its pid into that file, so a second process can say which process holds the dir.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    adopted_changeset, plan_commit, ChangeMeta, Changeset, CommitRequest, Committed, CurrentValues,
    HistoryPage, HistoryQuery, Ledger, LedgerError, NamespaceState, Result, StoredValue,
    Unavailable,
};
use crate::journal::{self, Journal, JournalError, LockError};

const LOG_FILE: &str = "ledger.log";
const LOCK_FILE: &str = "lock";

// Records are transient (encoded or decoded one at a time), so variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
enum Record {
    Init {
        cluster_id: String,
    },
    Namespace {
        namespace: String,
        epoch: u64,
    },
    Changeset {
        #[serde(flatten)]
        changeset: Changeset,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency: Option<Idempotency>,
    },
    Adopt {
        changeset: Changeset,
        values: BTreeMap<String, StoredValue>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Idempotency {
    key: String,
    fingerprint: String,
}

#[derive(Default)]
struct NsState {
    epoch: u64,
    values: BTreeMap<String, StoredValue>,
    /// Versions up to `base` have no history (an adopted image starts at `base + 1`).
    base: u64,
    /// `history[i]` has version `base + i + 1`: versions are gap-free.
    history: Vec<Arc<Changeset>>,
    /// Idempotency-Key → (request fingerprint, version it produced).
    idempotency: HashMap<String, (String, u64)>,
    /// Commits are refused while Redis is ahead (kept in memory: the relay re-detects it).
    behind: bool,
}

impl NsState {
    fn version(&self) -> u64 {
        self.base + self.history.len() as u64
    }

    /// The changeset of `version`, if it has history.
    fn at(&self, version: u64) -> Option<&Arc<Changeset>> {
        let i = version.checked_sub(self.base + 1)?;
        self.history.get(usize::try_from(i).ok()?)
    }

    /// Index into `history` of the first changeset with a version above `version`.
    fn index_after(&self, version: u64) -> usize {
        let i = version.saturating_sub(self.base);
        usize::try_from(i).map_or(self.history.len(), |i| i.min(self.history.len()))
    }

    /// Takes an adopted image (the namespace must have no history).
    fn adopt(&mut self, cs: Changeset, values: BTreeMap<String, StoredValue>) -> Result<()> {
        if self.version() != 0 || cs.version == 0 {
            return Err(LedgerError::Corrupt(format!(
                "namespace {}: an image adopted at version {} over version {}",
                cs.namespace,
                cs.version,
                self.version()
            )));
        }
        self.epoch = cs.epoch;
        self.base = cs.version - 1;
        self.values = values;
        self.history.push(Arc::new(cs));
        Ok(())
    }

    fn state(&self) -> NamespaceState {
        NamespaceState {
            epoch: self.epoch,
            version: self.version(),
        }
    }

    fn current(&self) -> CurrentValues {
        CurrentValues {
            state: self.state(),
            values: self.values.clone(),
        }
    }

    fn apply(&mut self, cs: Changeset, idempotency: Option<Idempotency>) -> Result<()> {
        if cs.version != self.version() + 1 {
            return Err(LedgerError::Corrupt(format!(
                "namespace {}: version {} follows {} (gap or repeat)",
                cs.namespace,
                cs.version,
                self.version()
            )));
        }
        for c in &cs.changes {
            self.values.insert(
                c.key.clone(),
                StoredValue {
                    value: c.new.clone(),
                    version: cs.version,
                },
            );
        }
        if let Some(i) = idempotency {
            self.idempotency.insert(i.key, (i.fingerprint, cs.version));
        }
        self.history.push(Arc::new(cs));
        Ok(())
    }
}

struct Inner {
    journal: Journal,
    namespaces: HashMap<String, NsState>,
}

impl From<JournalError> for LedgerError {
    fn from(e: JournalError) -> Self {
        match e {
            JournalError::Io { what, path, source } => LedgerError::Io { what, path, source },
            JournalError::Corrupt(why) => LedgerError::Corrupt(why),
            JournalError::Poisoned(why) => LedgerError::Unavailable(Unavailable::Poisoned(why)),
        }
    }
}

/// Takes the data dir's lock (`<dir>/lock`, see `journal::lock_dir`). When another process
/// holds it: [`LedgerError::DataDirInUse`] with the pid that process wrote.
fn lock_data_dir(dir: &Path) -> Result<File> {
    journal::lock_dir(dir, LOCK_FILE).map_err(|e| match e {
        LockError::InUse { pid } => LedgerError::DataDirInUse {
            dir: dir.to_owned(),
            pid,
        },
        LockError::Io(e) => e.into(),
    })
}

/// The file-backed ledger. Cheap to share (`Arc`); blocking I/O runs on the blocking pool.
pub struct EmbeddedLedger {
    cluster_id: String,
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
    _lock: File,
}

impl std::fmt::Debug for EmbeddedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedLedger")
            .field("dir", &self.dir)
            .field("cluster_id", &self.cluster_id)
            .finish()
    }
}

impl EmbeddedLedger {
    /// Opens (or creates) the ledger in `dir` for `cluster_id`. Fails if another process holds
    /// the dir, if the log belongs to another cluster, or if it is damaged beyond a torn tail.
    pub fn open(dir: &Path, cluster_id: &str) -> Result<EmbeddedLedger> {
        let lock = lock_data_dir(dir)?;
        let (journal, records) = Journal::open::<Record>(dir, LOG_FILE)?;
        let mut inner = Inner {
            journal,
            namespaces: HashMap::new(),
        };
        let mut found_cluster = None;
        for record in records {
            match record {
                Record::Init { cluster_id } => found_cluster = Some(cluster_id),
                Record::Namespace { namespace, epoch } => {
                    inner.namespaces.entry(namespace).or_default().epoch = epoch;
                }
                Record::Changeset {
                    changeset,
                    idempotency,
                } => {
                    let ns = inner
                        .namespaces
                        .get_mut(&changeset.namespace)
                        .ok_or_else(|| {
                            LedgerError::Corrupt(format!(
                                "changeset for namespace {} before its creation",
                                changeset.namespace
                            ))
                        })?;
                    ns.apply(changeset, idempotency)?;
                }
                Record::Adopt { changeset, values } => {
                    let ns = inner
                        .namespaces
                        .get_mut(&changeset.namespace)
                        .ok_or_else(|| {
                            LedgerError::Corrupt(format!(
                                "image adopted into namespace {} before its creation",
                                changeset.namespace
                            ))
                        })?;
                    ns.adopt(changeset, values)?;
                }
            }
        }
        match found_cluster {
            Some(found) if found != cluster_id => {
                return Err(LedgerError::ForeignCluster {
                    expected: cluster_id.to_owned(),
                    found,
                })
            }
            Some(_) => {}
            None => append(
                &mut inner,
                &Record::Init {
                    cluster_id: cluster_id.to_owned(),
                },
            )?,
        }
        Ok(EmbeddedLedger {
            cluster_id: cluster_id.to_owned(),
            dir: dir.to_path_buf(),
            inner: Arc::new(Mutex::new(inner)),
            _lock: lock,
        })
    }

    /// Runs `f` on the locked state on the blocking pool (file I/O and fsync block).
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Inner) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut inner.lock()))
            .await
            .map_err(|e| LedgerError::Unavailable(Unavailable::Task(e)))?
    }

    /// Reads the in-memory state without touching the file.
    fn read<T>(&self, f: impl FnOnce(&Inner) -> Result<T>) -> Result<T> {
        f(&self.inner.lock())
    }
}

fn ns<'a>(inner: &'a Inner, namespace: &str) -> Result<&'a NsState> {
    inner
        .namespaces
        .get(namespace)
        .ok_or_else(|| LedgerError::UnknownNamespace(namespace.to_owned()))
}

fn ns_mut<'a>(inner: &'a mut Inner, namespace: &str) -> Result<&'a mut NsState> {
    inner
        .namespaces
        .get_mut(namespace)
        .ok_or_else(|| LedgerError::UnknownNamespace(namespace.to_owned()))
}

/// Appends one record durably (see `Journal::append`: on failure the log is cut back, or the
/// ledger refuses writes until restarted).
fn append(inner: &mut Inner, record: &Record) -> Result<()> {
    Ok(inner.journal.append(record)?)
}

#[async_trait]
impl Ledger for EmbeddedLedger {
    fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    async fn ensure_namespace(&self, namespace: &str) -> Result<NamespaceState> {
        if let Ok(state) = self.read(|inner| ns(inner, namespace).map(NsState::state)) {
            return Ok(state);
        }
        let namespace = namespace.to_owned();
        self.with(move |inner| {
            if let Some(existing) = inner.namespaces.get(&namespace) {
                return Ok(existing.state());
            }
            append(
                inner,
                &Record::Namespace {
                    namespace: namespace.clone(),
                    epoch: 1,
                },
            )?;
            let state = inner.namespaces.entry(namespace).or_default();
            state.epoch = 1;
            Ok(state.state())
        })
        .await
    }

    async fn namespace_state(&self, namespace: &str) -> Result<NamespaceState> {
        self.read(|inner| ns(inner, namespace).map(NsState::state))
    }

    async fn current(&self, namespace: &str) -> Result<CurrentValues> {
        self.read(|inner| ns(inner, namespace).map(NsState::current))
    }

    async fn commit(&self, request: CommitRequest) -> Result<Committed> {
        self.with(move |inner| {
            let state = ns(inner, &request.namespace)?;
            if let Some(key) = &request.idempotency_key {
                if let Some((fingerprint, version)) = state.idempotency.get(key) {
                    if *fingerprint != request.fingerprint {
                        return Err(LedgerError::IdempotencyKeyReused);
                    }
                    let cs = state.at(*version).ok_or_else(|| {
                        LedgerError::Corrupt(format!(
                            "Idempotency-Key names version {version}, which has no history"
                        ))
                    })?;
                    return Ok(Committed::replay_of(cs));
                }
            }
            if state.behind {
                return Err(LedgerError::LedgerBehind(request.namespace.clone()));
            }
            let changes = plan_commit(&request, &state.current())?;
            if changes.is_empty() {
                return Ok(Committed {
                    state: state.state(),
                    changes,
                    replayed: false,
                });
            }
            let changeset = Changeset {
                namespace: request.namespace.clone(),
                epoch: state.epoch,
                version: state.version() + 1,
                created_at: Utc::now(),
                meta: request.meta,
                changes,
            };
            let idempotency = request.idempotency_key.map(|key| Idempotency {
                key,
                fingerprint: request.fingerprint,
            });
            let record = Record::Changeset {
                changeset,
                idempotency,
            };
            append(inner, &record)?;
            let Record::Changeset {
                changeset,
                idempotency,
            } = record
            else {
                unreachable!("built above as a changeset")
            };
            let committed = Committed {
                state: NamespaceState {
                    epoch: changeset.epoch,
                    version: changeset.version,
                },
                changes: changeset.changes.clone(),
                replayed: false,
            };
            ns_mut(inner, &request.namespace)?.apply(changeset, idempotency)?;
            Ok(committed)
        })
        .await
    }

    async fn history(&self, namespace: &str, query: &HistoryQuery) -> Result<HistoryPage> {
        self.read(|inner| {
            let state = ns(inner, namespace)?;
            let limit = query.limit.clamp(1, 1000);
            let end = query.before.map_or(state.history.len(), |b| {
                state.index_after(b.saturating_sub(1))
            });
            let mut changesets = Vec::new();
            let mut next = None;
            for cs in state.history[..end].iter().rev() {
                if !query.matches(cs) {
                    continue;
                }
                if let Some(key) = &query.key {
                    if !cs.changes.iter().any(|c| c.key == *key) {
                        continue;
                    }
                }
                let mut cs = (**cs).clone();
                if let Some(key) = &query.key {
                    cs.changes.retain(|c| c.key == *key);
                }
                if changesets.len() == limit {
                    next = changesets.last().map(|c: &Changeset| c.version);
                    break;
                }
                changesets.push(cs);
            }
            Ok(HistoryPage { changesets, next })
        })
    }

    async fn changeset(&self, namespace: &str, version: u64) -> Result<Option<Changeset>> {
        self.read(|inner| {
            let state = ns(inner, namespace)?;
            Ok(state.at(version).map(|cs| (**cs).clone()))
        })
    }

    async fn changes_since(
        &self,
        namespace: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Changeset>> {
        self.read(|inner| {
            let state = ns(inner, namespace)?;
            let start = state.index_after(after);
            Ok(state.history[start..]
                .iter()
                .take(limit)
                .map(|cs| (**cs).clone())
                .collect())
        })
    }

    async fn state_at(&self, namespace: &str, version: u64) -> Result<BTreeMap<String, Value>> {
        self.read(|inner| {
            let state = ns(inner, namespace)?;
            if version > state.version() || (version != 0 && version <= state.base) {
                return Err(LedgerError::NoSuchVersion(version));
            }
            let mut values = BTreeMap::new();
            for cs in &state.history[..state.index_after(version)] {
                for c in &cs.changes {
                    match &c.new {
                        Some(v) => values.insert(c.key.clone(), v.clone()),
                        None => values.remove(&c.key),
                    };
                }
            }
            Ok(values)
        })
    }

    async fn ping(&self) -> Result<()> {
        self.read(|inner| Ok(inner.journal.check()?))
    }

    async fn bump_epoch(&self, namespace: &str) -> Result<NamespaceState> {
        let namespace = namespace.to_owned();
        self.with(move |inner| {
            let epoch = ns(inner, &namespace)?.epoch + 1;
            append(
                inner,
                &Record::Namespace {
                    namespace: namespace.clone(),
                    epoch,
                },
            )?;
            let state = ns_mut(inner, &namespace)?;
            state.epoch = epoch;
            state.behind = false;
            Ok(state.state())
        })
        .await
    }

    async fn set_ledger_behind(&self, namespace: &str, behind: bool) -> Result<()> {
        ns_mut(&mut self.inner.lock(), namespace)?.behind = behind;
        Ok(())
    }

    async fn adopt(
        &self,
        namespace: &str,
        image: &CurrentValues,
        meta: ChangeMeta,
    ) -> Result<bool> {
        let changeset = adopted_changeset(namespace, image, meta);
        let values: BTreeMap<String, StoredValue> = image
            .values
            .iter()
            .filter(|(_, s)| s.value.is_some())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect();
        self.with(move |inner| {
            let state = ns(inner, &changeset.namespace)?;
            if state.version() != 0 || changeset.version == 0 || changeset.epoch < state.epoch {
                return Ok(false);
            }
            let record = Record::Adopt { changeset, values };
            append(inner, &record)?;
            let Record::Adopt { changeset, values } = record else {
                unreachable!("built above as an adoption")
            };
            ns_mut(inner, &changeset.namespace)?.adopt(changeset, values)?;
            Ok(true)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use serde_json::json;

    use super::*;
    use crate::ledger::conformance::{self, meta};

    #[tokio::test]
    async fn the_embedded_ledger_passes_the_conformance_suite() {
        let dirs = Arc::new(Mutex::new(Vec::new()));
        conformance::run(|| {
            let dirs = dirs.clone();
            async move {
                let dir = tempfile::tempdir().expect("tempdir");
                let ledger = EmbeddedLedger::open(dir.path(), "default").expect("open");
                dirs.lock().push(dir);
                Arc::new(ledger) as Arc<dyn Ledger>
            }
        })
        .await;
    }

    async fn commit(ledger: &EmbeddedLedger, key: &str, value: Value) -> Committed {
        ledger
            .commit(CommitRequest {
                namespace: "demo".into(),
                changes: vec![(key.into(), Some(value))],
                meta: meta("alice", ""),
                ..CommitRequest::default()
            })
            .await
            .expect("commit")
    }

    #[tokio::test]
    async fn everything_acknowledged_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let ledger = EmbeddedLedger::open(dir.path(), "default").expect("open");
            ledger.ensure_namespace("demo").await.expect("ns");
            commit(&ledger, "A", json!(1)).await;
            commit(&ledger, "B", json!("x")).await;
        }
        let ledger = EmbeddedLedger::open(dir.path(), "default").expect("reopen");
        let current = ledger.current("demo").await.expect("current");
        assert_eq!(
            current.state,
            NamespaceState {
                epoch: 1,
                version: 2
            }
        );
        assert_eq!(current.stored().count(), 2);
        assert_eq!(commit(&ledger, "A", json!(2)).await.state.version, 3);
    }

    #[tokio::test]
    async fn a_torn_last_record_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let ledger = EmbeddedLedger::open(dir.path(), "default").expect("open");
            ledger.ensure_namespace("demo").await.expect("ns");
            commit(&ledger, "A", json!(1)).await;
        }
        let path = dir.path().join(LOG_FILE);
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open log");
        f.write_all(b"deadbeef {\"record\":\"changeset\",\"namesp")
            .expect("write torn tail");
        drop(f);
        let ledger = EmbeddedLedger::open(dir.path(), "default").expect("reopen after torn write");
        assert_eq!(
            ledger.namespace_state("demo").await.expect("state").version,
            1
        );
        assert_eq!(commit(&ledger, "A", json!(2)).await.state.version, 2);
        drop(ledger);
        let ledger = EmbeddedLedger::open(dir.path(), "default").expect("reopen again");
        assert_eq!(
            ledger.namespace_state("demo").await.expect("state").version,
            2
        );
    }

    #[tokio::test]
    async fn damage_before_the_end_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let ledger = EmbeddedLedger::open(dir.path(), "default").expect("open");
            ledger.ensure_namespace("demo").await.expect("ns");
            commit(&ledger, "A", json!(1)).await;
            commit(&ledger, "A", json!(2)).await;
        }
        let path = dir.path().join(LOG_FILE);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replacen("\"A\"", "\"Z\"", 1)).expect("write");
        match EmbeddedLedger::open(dir.path(), "default") {
            Err(LedgerError::Corrupt(why)) => assert!(why.contains("checksum"), "{why}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_log_is_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        drop(EmbeddedLedger::open(dir.path(), "default").expect("open"));
        let mode = std::fs::metadata(dir.path().join(LOG_FILE))
            .expect("log")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_dir_and_is_told_which_pid_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = EmbeddedLedger::open(dir.path(), "default").expect("open");
        let e = EmbeddedLedger::open(dir.path(), "default").expect_err("the dir is held");
        match &e {
            LedgerError::DataDirInUse { dir: held, pid } => {
                assert_eq!(held, dir.path());
                assert_eq!(*pid, Some(std::process::id()));
            }
            other => panic!("expected DataDirInUse, got {other:?}"),
        }
        let message = e.to_string();
        let pid = format!("pid {}", std::process::id());
        assert!(
            message.contains(&*dir.path().to_string_lossy()),
            "{message}"
        );
        assert!(message.contains(&pid), "{message}");
        assert!(
            message.contains("stop that process"),
            "says what to do: {message}"
        );
    }

    #[tokio::test]
    async fn a_lock_file_without_a_pid_is_reported_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = EmbeddedLedger::open(dir.path(), "default").expect("open");
        // An older rtconfig left the lock file empty.
        std::fs::write(dir.path().join(LOCK_FILE), b"").expect("empty the lock file");
        let e = EmbeddedLedger::open(dir.path(), "default").expect_err("the dir is held");
        assert!(
            matches!(e, LedgerError::DataDirInUse { pid: None, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("pid is not recorded"), "{e}");
        drop(first);
        drop(EmbeddedLedger::open(dir.path(), "default").expect("free once the holder is gone"));
    }

    #[tokio::test]
    async fn a_ledger_refuses_another_cluster_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(EmbeddedLedger::open(dir.path(), "prod").expect("open"));
        assert!(matches!(
            EmbeddedLedger::open(dir.path(), "staging"),
            Err(LedgerError::ForeignCluster { .. })
        ));
    }

    #[tokio::test]
    async fn bumping_the_epoch_persists() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let ledger = EmbeddedLedger::open(dir.path(), "default").expect("open");
            ledger.ensure_namespace("demo").await.expect("ns");
            commit(&ledger, "A", json!(1)).await;
            let state = ledger.bump_epoch("demo").await.expect("bump");
            assert_eq!(
                state,
                NamespaceState {
                    epoch: 2,
                    version: 1
                }
            );
        }
        let ledger = EmbeddedLedger::open(dir.path(), "default").expect("reopen");
        assert_eq!(
            ledger.namespace_state("demo").await.expect("state").epoch,
            2
        );
        assert_eq!(commit(&ledger, "A", json!(3)).await.state.epoch, 2);
    }

    #[tokio::test]
    async fn an_adopted_image_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = CurrentValues {
            state: NamespaceState {
                epoch: 2,
                version: 9,
            },
            values: BTreeMap::from([(
                "A".to_owned(),
                StoredValue {
                    value: Some(json!("x")),
                    version: 4,
                },
            )]),
        };
        {
            let ledger = EmbeddedLedger::open(dir.path(), "default").expect("open");
            ledger.ensure_namespace("demo").await.expect("ns");
            assert!(ledger
                .adopt("demo", &image, meta("rtconfig", "adopted"))
                .await
                .expect("adopt"));
            assert_eq!(commit(&ledger, "B", json!(1)).await.state.version, 10);
        }
        let ledger = EmbeddedLedger::open(dir.path(), "default").expect("reopen");
        let current = ledger.current("demo").await.expect("current");
        assert_eq!(
            current.state,
            NamespaceState {
                epoch: 2,
                version: 10
            }
        );
        assert_eq!(current.values["A"].version, 4);
        assert_eq!(
            ledger
                .changes_since("demo", 0, 10)
                .await
                .expect("feed")
                .len(),
            2
        );
    }
}
