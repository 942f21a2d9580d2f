//! Passwords: which ones are acceptable ([`PasswordPolicy`]) and how they are stored and checked
//! ([`Hasher`]).
//!
//! # Policy (NIST SP 800-63B §5.1.1.2)
//! At least 12 characters, at most 1024 bytes, not in the bundled list of commonly used passwords
//! (compared case-insensitively), not the user name. No composition rules (no "one digit, one
//! symbol"), no expiry. Call [`PasswordPolicy::check`] wherever a password is *chosen* (user
//! creation, password change, `rtconfig user add|passwd`), never at sign-in: a password that was
//! accepted once keeps working.
//!
//! # Storage
//! argon2id, m = 19 456 KiB, t = 2, p = 1 (the OWASP minimum), a random 16-byte salt per hash,
//! stored as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH`). Before checking or hashing,
//! a password is normalised to Unicode NFKC, so the same password typed on another keyboard or OS
//! still matches.
//!
//! # Cost control
//! Hashing takes ~20 ms of one core and 19 MiB. [`Hasher`] runs it on tokio's blocking pool and lets at
//! most `max_concurrent` hashes (default 2) run at once; the others wait for a permit, so a login
//! flood queues behind the cap instead of starving config reads and writes. A hash whose caller went
//! away (a dropped request) keeps its permit until the work really ends.
//!
//! # Sign-in without enumeration
//! ```ignore
//! let ok = match user.and_then(|u| u.password_hash.as_deref()) {
//!     Some(phc) => hasher.verify(password, phc).await?,
//!     None => { hasher.verify_dummy(password).await; false } // unknown user, or SSO-only
//! };
//! ```
//! An unknown user (or one without a password) costs the same hash as a known one, so the answer's
//! timing does not tell whether the name exists. Passwords are never logged, never put in an error,
//! and the copies this module makes are wiped when dropped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use argon2::password_hash::{self, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

// ------------------------------------------------------------------------------------------------
// Policy

/// The bundled list of common passwords, lower-cased, one a line, most common first; only entries
/// of at least [`PasswordPolicy::MIN_CHARS`] characters (shorter ones are refused by length before
/// the list is consulted). Source and licence: `src/auth/README.md`.
const COMMON_PASSWORDS_TXT: &str = include_str!("common-passwords.txt");

static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    COMMON_PASSWORDS_TXT
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
});

/// Why a password cannot be chosen. The messages are meant for the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordProblem {
    #[error("the password must be at least {min} characters long")]
    TooShort { min: usize },
    #[error("the password must be at most {max} bytes long")]
    TooLong { max: usize },
    #[error("the password is in a list of commonly used passwords; choose another")]
    Common,
    #[error("the password must not be the same as the user name")]
    SameAsUsername,
}

/// The rules a new password must pass (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct PasswordPolicy;

impl PasswordPolicy {
    /// Fewest characters (Unicode scalar values, after NFKC).
    pub const MIN_CHARS: usize = 12;
    /// Most bytes (UTF-8, before and after NFKC).
    pub const MAX_BYTES: usize = 1024;

    /// Whether `password` may be chosen by `username`. Checks, in this order: length, the user
    /// name, the common-password list — the first problem found is returned.
    pub fn check(password: &str, username: &str) -> Result<(), PasswordProblem> {
        if password.len() > Self::MAX_BYTES {
            return Err(PasswordProblem::TooLong {
                max: Self::MAX_BYTES,
            });
        }
        let normalized = normalize(password);
        if normalized.len() > Self::MAX_BYTES {
            return Err(PasswordProblem::TooLong {
                max: Self::MAX_BYTES,
            });
        }
        if normalized.chars().count() < Self::MIN_CHARS {
            return Err(PasswordProblem::TooShort {
                min: Self::MIN_CHARS,
            });
        }
        let lower = Zeroizing::new(normalized.to_lowercase());
        if !username.is_empty() && *lower == normalize(username).to_lowercase() {
            return Err(PasswordProblem::SameAsUsername);
        }
        if COMMON_PASSWORDS.contains(lower.as_str()) {
            return Err(PasswordProblem::Common);
        }
        Ok(())
    }

    /// Whether `password` is in the bundled list of common passwords (case-insensitive).
    pub fn is_common(password: &str) -> bool {
        let lower = Zeroizing::new(normalize(password).to_lowercase());
        COMMON_PASSWORDS.contains(lower.as_str())
    }
}

/// NFKC (NIST 800-63B: normalise before hashing), in a buffer wiped on drop.
fn normalize(password: &str) -> Zeroizing<String> {
    Zeroizing::new(password.nfkc().collect())
}

// ------------------------------------------------------------------------------------------------
// Hashing

/// argon2id memory cost, KiB.
pub const M_COST_KIB: u32 = 19_456;
/// argon2id passes.
pub const T_COST: u32 = 2;
/// argon2id lanes.
pub const P_COST: u32 = 1;

/// At most this many hashes run at once by default ([`Hasher::default`]).
pub const DEFAULT_MAX_CONCURRENT: usize = 2;

/// How many hashes run at once on a machine with `cores` CPUs: one core always stays free for
/// the async workers (reads and writes), at most [`DEFAULT_MAX_CONCURRENT`], at least one.
/// Measured in docs/PERFORMANCE.md "Sign-in": with 2 permits on 2 cores a sign-in flood took
/// both cores and read p99 rose ~5×.
pub fn max_concurrent_for(cores: usize) -> usize {
    cores.saturating_sub(1).clamp(1, DEFAULT_MAX_CONCURRENT)
}

/// A hash with the parameters above of a random password nobody knows (it was thrown away), for
/// [`Hasher::verify_dummy`]. A test checks that its parameters stay equal to the real ones.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$pLCC+K2OkwyLR/P6K9/4SA$AQ8QlO0XOjWeeRokuXLIkAs/b/KLA6Ca9GjCmnqMj54";

/// Why hashing or verifying failed. Never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The stored hash cannot be used (not a PHC string, not argon2, bad parameters). The user
    /// record is damaged; the sign-in must fail (as a server error, not as a wrong password).
    #[error("the stored password hash is not a valid argon2 PHC string")]
    Malformed(#[source] password_hash::Error),
    #[error("cannot hash the password")]
    Hash(#[source] password_hash::Error),
    /// The blocking hashing task panicked or the runtime is shutting down.
    #[error("the password hashing task did not finish")]
    Task(#[source] tokio::task::JoinError),
    /// The cap's semaphore was closed (it never is; kept so no permit-less hash can run).
    #[error("the password hasher is shut down")]
    Closed,
}

/// Hashes and verifies passwords on the blocking pool, at most `max_concurrent` at a time.
/// Cheap to clone (all clones share one cap).
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    probe: Arc<Probe>,
}

impl Default for Hasher {
    /// [`max_concurrent_for`] this machine's cores.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(max_concurrent_for(cores))
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("available_permits", &self.permits.available_permits())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Hasher {
    /// A hasher running at most `max_concurrent` hashes at once (at least 1).
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            probe: Arc::new(Probe::default()),
        }
    }

    /// Hashes a new password into a PHC string with a fresh random salt. Does not apply the
    /// [`PasswordPolicy`]: check it first.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = normalize(password);
        self.run(move || hash_now(&password)).await?
    }

    /// Whether `password` matches the stored `phc` hash (`Ok(false)`: wrong password). A `phc`
    /// that is not a usable argon2 PHC string is [`PasswordError::Malformed`].
    pub async fn verify(&self, password: &str, phc: &str) -> Result<bool, PasswordError> {
        // Refuse a damaged record before waiting for a permit.
        PasswordHash::new(phc).map_err(PasswordError::Malformed)?;
        let password = normalize(password);
        let phc = phc.to_owned();
        self.run(move || verify_now(&password, &phc)).await?
    }

    /// Spends exactly what [`verify`](Self::verify) spends, against a hash nobody knows the
    /// password of. Call it when the user is unknown (or has no password) and answer as for a
    /// wrong password, so the response time does not reveal whether the user exists.
    pub async fn verify_dummy(&self, password: &str) {
        if let Err(error) = self.verify(password, DUMMY_PHC).await {
            tracing::warn!(error = %error, "dummy password verification failed");
        }
    }

    /// [`hash`](Self::hash) on the current thread, without the cap: for the CLI
    /// (`rtconfig user add|passwd`), which hashes one password and exits. Never call it on an
    /// async worker thread.
    pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
        hash_now(&normalize(password))
    }

    /// Whether a stored hash was made with other parameters than today's (another algorithm,
    /// version or cost), so it should be replaced after the next successful sign-in. A malformed
    /// hash also needs replacing.
    pub fn needs_rehash(phc: &str) -> bool {
        let Ok(hash) = PasswordHash::new(phc) else {
            return true;
        };
        if hash.salt.is_none() || hash.hash.is_none() {
            return true;
        }
        let Ok(params) = Params::try_from(&hash) else {
            return true;
        };
        hash.algorithm != Algorithm::Argon2id.ident()
            || hash.version != Some(Version::V0x13.into())
            || params.m_cost() != M_COST_KIB
            || params.t_cost() != T_COST
            || params.p_cost() != P_COST
    }

    /// Hashes running right now (at most `max_concurrent`); for a gauge.
    pub fn in_flight(&self) -> usize {
        self.probe.active.load(Ordering::Relaxed)
    }

    /// Runs `work` on the blocking pool once a permit is free. The permit moves into the blocking
    /// task, so it is held until the work ends even if this future is dropped.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Closed)?;
        let probe = Arc::clone(&self.probe);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _entered = probe.enter();
            work()
        })
        .await
        .map_err(PasswordError::Task)
    }
}

/// The argon2id instance with today's parameters.
fn argon2id() -> Result<Argon2<'static>, PasswordError> {
    let params =
        Params::new(M_COST_KIB, T_COST, P_COST, None).map_err(|e| PasswordError::Hash(e.into()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = argon2id()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(PasswordError::Hash)?;
    Ok(hash.to_string())
}

fn verify_now(password: &str, phc: &str) -> Result<bool, PasswordError> {
    let hash = PasswordHash::new(phc).map_err(PasswordError::Malformed)?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(PasswordError::Malformed(
            password_hash::Error::PhcStringField,
        ));
    }
    // The algorithm, version and costs come from the stored hash, so older hashes still verify.
    match Argon2::default().verify_password(password.as_bytes(), &hash) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::Password) => Ok(false),
        Err(e) => Err(PasswordError::Malformed(e)),
    }
}

/// Counts hashes in progress (and, for the tests, the most seen at once).
#[derive(Default)]
struct Probe {
    active: AtomicUsize,
    peak: AtomicUsize,
}

impl Probe {
    fn enter(&self) -> ProbeGuard<'_> {
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        ProbeGuard(self)
    }
}

struct ProbeGuard<'a>(&'a Probe);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_core_stays_free_for_the_workers() {
        // (cores, concurrent hashes)
        for (cores, want) in [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2), (64, 2)] {
            assert_eq!(max_concurrent_for(cores), want, "{cores} cores");
        }
    }

    #[test]
    fn policy_table() {
        use PasswordProblem::*;
        let too_short = Err(TooShort { min: 12 });
        let cases: &[(&str, &str, Result<(), PasswordProblem>)] = &[
            ("", "alice", too_short.clone()),
            ("short", "alice", too_short.clone()),
            ("elevenchars", "alice", too_short.clone()),
            ("twelve chars", "alice", Ok(())),
            // characters, not bytes: 11 two-byte characters are still too short …
            ("ééééééééééé", "alice", too_short.clone()),
            // … and 12 of them are enough
            ("éééééééééééé", "alice", Ok(())),
            // 12 emoji (4 bytes each)
            ("🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀", "alice", Ok(())),
            // no composition rules: all lower-case letters is fine when long and uncommon
            ("correcthorsebatterystaple", "alice", Ok(())),
            // common passwords, any case
            ("qwertyuiopasdfgh", "alice", Err(Common)),
            ("PasswordPassword", "alice", Err(Common)),
            ("123456789012", "alice", Err(Common)),
            ("1QAZ2WSX3EDC", "alice", Err(Common)),
            // the user name, any case
            (
                "alice.example.org",
                "alice.example.org",
                Err(SameAsUsername),
            ),
            (
                "Alice.Example.Org",
                "alice.example.ORG",
                Err(SameAsUsername),
            ),
            ("alice.example.org!", "alice.example.org", Ok(())),
            // NFKC: full-width letters are the ASCII ones
            ("ｐａｓｓｗｏｒｄｐａｓｓｗｏｒｄ", "alice", Err(Common)),
        ];
        for (password, username, want) in cases {
            assert_eq!(
                &PasswordPolicy::check(password, username),
                want,
                "{password:?} for {username:?}"
            );
        }
    }

    #[test]
    fn policy_length_limits_in_bytes() {
        let max = "a".repeat(PasswordPolicy::MAX_BYTES);
        assert_eq!(PasswordPolicy::check(&max, "alice"), Ok(()));
        let over = "a".repeat(PasswordPolicy::MAX_BYTES + 1);
        assert_eq!(
            PasswordPolicy::check(&over, "alice"),
            Err(PasswordProblem::TooLong { max: 1024 })
        );
        // 300 characters of 4 bytes each: 1200 bytes
        let wide = "🦀".repeat(300);
        assert_eq!(
            PasswordPolicy::check(&wide, "alice"),
            Err(PasswordProblem::TooLong { max: 1024 })
        );
        // NFKC can grow a password (U+FDFA becomes 18 characters): the limit holds after it too
        let grows = "\u{FDFA}".repeat(100); // 300 bytes, 1800+ after NFKC
        assert_eq!(
            PasswordPolicy::check(&grows, "alice"),
            Err(PasswordProblem::TooLong { max: 1024 })
        );
    }

    #[test]
    fn problems_read_as_advice() {
        assert_eq!(
            PasswordProblem::TooShort { min: 12 }.to_string(),
            "the password must be at least 12 characters long"
        );
        assert_eq!(
            PasswordProblem::Common.to_string(),
            "the password is in a list of commonly used passwords; choose another"
        );
    }

    #[test]
    fn bundled_list_is_real_and_usable() {
        assert!(
            COMMON_PASSWORDS.len() >= 10_000,
            "{}",
            COMMON_PASSWORDS.len()
        );
        for entry in COMMON_PASSWORDS.iter() {
            assert_eq!(*entry, entry.to_lowercase(), "entries are lower-case");
            assert!(
                entry.chars().count() >= PasswordPolicy::MIN_CHARS,
                "{entry:?}"
            );
            assert_eq!(*entry, entry.trim(), "entries have no surrounding blanks");
        }
        assert!(PasswordPolicy::is_common("1q2w3e4r5t6y"));
        assert!(PasswordPolicy::is_common("Qwerty123456"));
        assert!(!PasswordPolicy::is_common("a river of purple teacups"));
    }

    #[tokio::test]
    async fn hash_then_verify_round_trips() {
        let hasher = Hasher::default();
        let phc = hasher.hash("correct horse battery staple").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct"));
        assert!(hasher
            .verify("correct horse battery staple", &phc)
            .await
            .unwrap());
        assert!(!hasher
            .verify("correct horse battery stapl", &phc)
            .await
            .unwrap());
        assert!(!hasher
            .verify("Correct horse battery staple", &phc)
            .await
            .unwrap());
        assert!(!hasher.verify("", &phc).await.unwrap());
        assert!(!Hasher::needs_rehash(&phc));
    }

    #[tokio::test]
    async fn salts_differ_and_nfkc_matches() {
        let hasher = Hasher::new(2);
        let a = hasher.hash("ｆｕｌｌ-ｗｉｄｔｈ ｐａｓｓ").await.unwrap();
        let b = hasher.hash("full-width pass").await.unwrap();
        assert_ne!(a, b, "each hash has its own salt");
        assert!(hasher.verify("full-width pass", &a).await.unwrap());
        assert!(hasher
            .verify("ｆｕｌｌ-ｗｉｄｔｈ ｐａｓｓ", &b)
            .await
            .unwrap());
    }

    #[test]
    fn hash_blocking_verifies_async() {
        let phc = Hasher::hash_blocking("from the command line").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ok = rt.block_on(Hasher::new(1).verify("from the command line", &phc));
        assert!(ok.unwrap());
    }

    #[tokio::test]
    async fn malformed_phc_is_an_error() {
        let hasher = Hasher::default();
        let good = hasher.hash("a perfectly good one").await.unwrap();
        let no_hash = good.rsplit_once('$').unwrap().0.to_owned();
        let bad_params = good.replace("m=19456", "m=1");
        let cases = [
            String::new(),
            "not a hash".into(),
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".into(), // bcrypt
            "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA".into(),
            "$argon2id$v=19$m=19456,t=2,p=1".into(),
            no_hash,
            bad_params,
            "$argon2id$v=19$m=19456,t=2,p=1,x=3$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA".into(),
        ];
        for phc in &cases {
            match hasher.verify("a perfectly good one", phc).await {
                Err(PasswordError::Malformed(_)) => {}
                other => panic!("{phc:?}: {other:?}"),
            }
            assert!(Hasher::needs_rehash(phc), "{phc:?}");
        }
    }

    #[test]
    fn needs_rehash_for_other_parameters() {
        // argon2id with t=3 and argon2i: valid, verifiable, but not today's parameters
        let t3 = "$argon2id$v=19$m=19456,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhcw";
        let argon2i = "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhcw";
        assert!(Hasher::needs_rehash(t3));
        assert!(Hasher::needs_rehash(argon2i));
        assert!(!Hasher::needs_rehash(DUMMY_PHC));
    }

    #[tokio::test]
    async fn dummy_hash_has_todays_parameters() {
        let hash = PasswordHash::new(DUMMY_PHC).unwrap();
        assert_eq!(hash.algorithm, Algorithm::Argon2id.ident());
        let params = Params::try_from(&hash).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (M_COST_KIB, T_COST, P_COST)
        );
        assert_eq!(
            hash.salt.unwrap().len(),
            SaltString::generate(rand::rngs::OsRng).len()
        );
        // it verifies (as false) without error, and goes through the same capped path
        let hasher = Hasher::new(1);
        assert!(!hasher.verify("anything at all", DUMMY_PHC).await.unwrap());
        let fresh = Hasher::new(1);
        fresh.verify_dummy("anything at all").await;
        assert_eq!(
            fresh.probe.peak.load(Ordering::SeqCst),
            1,
            "the dummy hash ran"
        );
    }

    /// Starts `n` hashes at once on a multi-threaded runtime and returns the most seen running
    /// together.
    async fn peak_with(hasher: &Hasher, n: usize) -> usize {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(&format!("password number {i}")).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(hasher.in_flight(), 0);
        hasher.probe.peak.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_cap_bounds_concurrent_hashes() {
        assert_eq!(peak_with(&Hasher::new(1), 6).await, 1);
        let peak = peak_with(&Hasher::new(2), 6).await;
        assert!((1..=2).contains(&peak), "{peak}");
        // 0 is taken as 1, not as "never"
        assert_eq!(peak_with(&Hasher::new(0), 2).await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_caller_keeps_its_permit_until_the_hash_ends() {
        let hasher = Hasher::new(1);
        let first = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash("the abandoned one").await })
        };
        while hasher.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        first.abort(); // the request went away while its hash runs
        let _ = first.await;
        hasher.hash("the next one in line").await.unwrap();
        assert_eq!(hasher.probe.peak.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn debug_shows_no_secrets() {
        let hasher = Hasher::new(3);
        let shown = format!("{hasher:?}");
        assert!(shown.contains("available_permits: 3"), "{shown}");
    }

    /// Run once by hand to make [`DUMMY_PHC`]:
    /// `cargo test --lib auth::password::tests::print_a_dummy_hash -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn print_a_dummy_hash() {
        use rand::RngCore;
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        println!("{}", Hasher::hash_blocking(&hex::encode(secret)).unwrap());
    }
}
