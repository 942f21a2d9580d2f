//! The encoded response bodies of a snapshot: how each is written, and the per-version cache of
//! the per-key bodies, which are built on first read (never on the apply path).

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::{Position, Source};

/// Slots per lazily allocated chunk of [`KeyBodies`].
const CHUNK: usize = 64;

/// One chunk: [`CHUNK`] bodies, each built on first read.
type Chunk = Box<[OnceLock<Bytes>]>;

/// The fresh `GET /v1/configs/{key}` body of every key of one snapshot, built on first read.
///
/// Two lazy levels keep a new snapshot O(1) to create whatever its size: the table of chunks
/// is allocated on the first read of any key (`len / 64` empty slots), a chunk of 64 slots on
/// the first read of one of its keys, and a body on the first read of its key. A read of a
/// body already built is three atomic loads and a `Bytes` clone.
pub(super) struct KeyBodies {
    len: usize,
    chunks: OnceLock<Box<[OnceLock<Chunk>]>>,
}

impl KeyBodies {
    pub(super) fn new(len: usize) -> KeyBodies {
        KeyBodies {
            len,
            chunks: OnceLock::new(),
        }
    }

    /// The body in `slot`, built by `build` if this is its first read. A slot out of range
    /// (never the case: slots are schema positions) is built every time rather than cached.
    pub(super) fn get_or_build(&self, slot: usize, build: impl FnOnce() -> Bytes) -> Bytes {
        let chunks = self.chunks.get_or_init(|| {
            (0..self.len.div_ceil(CHUNK))
                .map(|_| OnceLock::new())
                .collect()
        });
        let Some(chunk) = chunks.get(slot / CHUNK) else {
            return build();
        };
        let chunk = chunk.get_or_init(|| (0..CHUNK).map(|_| OnceLock::new()).collect());
        match chunk.get(slot % CHUNK) {
            Some(body) => body.get_or_init(build).clone(),
            None => build(),
        }
    }

    /// How many bodies are built (tests and the memory bench).
    pub(super) fn built(&self) -> usize {
        self.chunks.get().map_or(0, |chunks| {
            chunks
                .iter()
                .filter_map(OnceLock::get)
                .map(|c| c.iter().filter(|b| b.get().is_some()).count())
                .sum()
        })
    }
}

/// The largest `GET /v1/configs` body a snapshot keeps once built: 1 MiB, a namespace of about
/// 15,000 keys of 60-byte values. A larger one is shared by the responses that hold it and
/// freed with the last of them ([`Document`]).
pub(super) const KEEP_DOCUMENT_BYTES: usize = 1 << 20;

/// How long a large document stays held after it is built, whoever still holds it: long
/// enough for the readers one change or one epoch change sends at once (long-polls, watchers'
/// snapshot events, which copy it and let go at once) to share one build.
pub(super) const SHARE_LARGE_DOCUMENT_FOR: Duration = Duration::from_secs(1);

/// One snapshot's `GET /v1/configs` body at one staleness, built on first read.
///
/// Up to [`KEEP_DOCUMENT_BYTES`] it is kept as long as the snapshot: built once per version.
/// A larger one (7 MB at 100,000 keys) is held only by the responses sending it and, on a
/// runtime, for [`SHARE_LARGE_DOCUMENT_FOR`] after it is built, so a sidecar does not keep a
/// second copy of every value for a reader that may never come back: the readers one change
/// wakes share one build, and a reader that comes later builds it again. What readers mostly
/// send is `If-None-Match`, answered 304 without the body. Freed, its buffer goes back to the
/// kernel (a trim, `crate::heap`).
#[derive(Default)]
pub(super) struct Document {
    kept: OnceLock<Bytes>,
    shared: Mutex<Weak<Body>>,
}

/// A large document, shared by the `Bytes` of every response that sends it.
struct Body(Vec<u8>);

impl AsRef<[u8]> for Body {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Body {
    /// Dropped by its last holder (at most once per build: the readers of a moment share it).
    /// Its megabytes come from the heap whenever the heap's free space can hold them, and freed
    /// in the middle of it they stay resident until a trim (7 MiB at 100k keys,
    /// `benches/coldstart.sh`): ask for one.
    fn drop(&mut self) {
        crate::heap::release_free_memory_soon();
    }
}

impl Document {
    pub(super) fn get_or_build(&self, build: impl FnOnce() -> Vec<u8>) -> Bytes {
        if let Some(kept) = self.kept.get() {
            return kept.clone();
        }
        // Held while building: a second reader waits for this build instead of making its own.
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        // Kept by the reader that held the lock before this one.
        if let Some(kept) = self.kept.get() {
            return kept.clone();
        }
        if let Some(body) = shared.upgrade() {
            return Bytes::from_owner(Shared(body));
        }
        let body = build();
        if body.len() <= KEEP_DOCUMENT_BYTES {
            return self.kept.get_or_init(|| Bytes::from(body)).clone();
        }
        let body = Arc::new(Body(body));
        *shared = Arc::downgrade(&body);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let held = body.clone();
            runtime.spawn(async move {
                tokio::time::sleep(SHARE_LARGE_DOCUMENT_FOR).await;
                drop(held);
            });
        }
        Bytes::from_owner(Shared(body))
    }

    /// Whether a body is held now (kept, or shared by a response in flight).
    pub(super) fn is_held(&self) -> bool {
        self.kept.get().is_some()
            || self
                .shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .strong_count()
                > 0
    }
}

/// The owner of a shared document's `Bytes`.
struct Shared(Arc<Body>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0 .0
    }
}

pub(super) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Key and namespace names are restricted to ASCII without quotes, but stay correct anyway.
    // Writing into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// `,"version":5,"epoch":1,"stale":false,"source":"local"}` — the end of every per-key body.
pub(super) fn entry_tail(position: Position, stale: bool, source: Source) -> Vec<u8> {
    format!(
        ",\"version\":{},\"epoch\":{},\"stale\":{},\"source\":\"{}\"}}",
        position.version,
        position.epoch,
        stale,
        source.as_str()
    )
    .into_bytes()
}

/// `{"key":K,"value":V` + `tail`.
pub(super) fn key_body(key: &str, json: &[u8], tail: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(16 + key.len() + json.len() + tail.len());
    out.extend_from_slice(b"{\"key\":");
    push_json_str(&mut out, key);
    out.extend_from_slice(b",\"value\":");
    out.extend_from_slice(json);
    out.extend_from_slice(tail);
    Bytes::from(out)
}

/// The `GET /v1/configs` body around the values `push_values` writes (`{"KEY": value, …}`,
/// about `values_len` bytes).
pub(super) fn document_body(
    namespace: &str,
    position: Position,
    stale: bool,
    source: Source,
    values_len: usize,
    push_values: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(values_len + 128);
    out.extend_from_slice(b"{\"namespace\":");
    push_json_str(&mut out, namespace);
    out.extend_from_slice(
        format!(
            ",\"epoch\":{},\"version\":{},\"stale\":{},\"source\":\"{}\",\"values\":",
            position.epoch,
            position.version,
            stale,
            source.as_str()
        )
        .as_bytes(),
    );
    push_values(&mut out);
    out.push(b'}');
    out
}

/// `?format=raw` of a value given as its JSON: a string bare (its text between the quotes
/// when it has no escapes, else decoded), anything else as its JSON.
pub(super) fn raw_body(json: &[u8]) -> Bytes {
    match json {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => Bytes::copy_from_slice(inner),
        [b'"', ..] => match serde_json::from_slice::<String>(json) {
            Ok(s) => Bytes::from(s),
            Err(_) => Bytes::copy_from_slice(json),
        },
        _ => Bytes::copy_from_slice(json),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bodies_are_built_once_and_only_when_read() {
        let bodies = KeyBodies::new(130);
        assert_eq!(bodies.built(), 0);
        let mut calls = 0;
        for _ in 0..3 {
            let b = bodies.get_or_build(129, || {
                calls += 1;
                Bytes::from_static(b"last")
            });
            assert_eq!(&b[..], b"last");
        }
        assert_eq!(calls, 1);
        assert_eq!(
            &bodies.get_or_build(0, || Bytes::from_static(b"first"))[..],
            b"first"
        );
        assert_eq!(bodies.built(), 2);
        // Out of range: built, never cached.
        assert_eq!(
            &bodies.get_or_build(500, || Bytes::from_static(b"x"))[..],
            b"x"
        );
        assert_eq!(bodies.built(), 2);
    }

    #[test]
    fn a_small_document_is_kept_and_a_large_one_only_while_a_response_holds_it() {
        let small = Document::default();
        let mut builds = 0;
        for _ in 0..3 {
            let b = small.get_or_build(|| {
                builds += 1;
                b"{}".to_vec()
            });
            assert_eq!(&b[..], b"{}");
        }
        assert_eq!(builds, 1);
        assert!(small.is_held());

        let large = Document::default();
        let body = vec![b'x'; KEEP_DOCUMENT_BYTES + 1];
        let mut builds = 0;
        let first = large.get_or_build(|| {
            builds += 1;
            body.clone()
        });
        // A second reader while the first response is in flight shares its bytes.
        let second = large.get_or_build(|| {
            builds += 1;
            body.clone()
        });
        assert_eq!(builds, 1);
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(first.len(), KEEP_DOCUMENT_BYTES + 1);
        drop(first);
        assert!(large.is_held(), "the second response still holds it");
        drop(second);
        assert!(!large.is_held(), "freed with the last response");
        let third = large.get_or_build(|| {
            builds += 1;
            body.clone()
        });
        assert_eq!(builds, 2);
        assert_eq!(&third[..], &body[..]);
    }

    #[tokio::test(start_paused = true)]
    async fn on_a_runtime_a_large_document_is_shared_for_a_moment_after_its_build() {
        let large = Document::default();
        let body = vec![b'x'; KEEP_DOCUMENT_BYTES + 1];
        let mut builds = 0;
        drop(large.get_or_build(|| {
            builds += 1;
            body.clone()
        }));
        // A watcher's snapshot event copies it and lets go at once: the next one, an instant
        // later, still shares that build.
        assert!(large.is_held());
        drop(large.get_or_build(|| {
            builds += 1;
            body.clone()
        }));
        assert_eq!(builds, 1);
        tokio::time::sleep(SHARE_LARGE_DOCUMENT_FOR + Duration::from_millis(1)).await;
        assert!(!large.is_held(), "let go after the grace");
    }

    #[test]
    fn a_raw_string_is_its_text_and_anything_else_its_json() {
        for (value, raw) in [
            (json!("plain"), "plain"),
            (json!(""), ""),
            (json!("with \"quotes\"\n"), "with \"quotes\"\n"),
            (json!("é"), "é"),
            (json!("back\\slash"), "back\\slash"),
            (json!("\u{1}"), "\u{1}"),
            (json!(["a"]), "[\"a\"]"),
            (json!(7), "7"),
            (json!(null), "null"),
        ] {
            let encoded = serde_json::to_vec(&value).expect("json");
            assert_eq!(raw_body(&encoded), raw.as_bytes(), "{value}");
        }
    }
}
