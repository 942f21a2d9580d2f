//! The TOTP second factor of local accounts: enrolment, code checks and recovery codes.
//!
//! Codes are RFC 6238 TOTP (computed by `totp-rs`): HMAC-SHA-1, 6 digits, 30-second steps,
//! accepted one step either side of now. A time step is accepted at most once per user: a code
//! counts only when its step is above the last one accepted ([`verify`]'s `last_step`), and the
//! store makes that atomic across replicas ([`AuthStore::use_totp_step`]). Secrets are 160-bit
//! random, stored sealed with [`SecretBox`] (context: the user id). Recovery codes are shown once
//! and stored as SHA-256 digests; each works once ([`AuthStore::use_recovery_code`]).
//!
//! Nothing here does I/O or reads the clock: the caller passes `now`. The flows, for the
//! routes:
//!
//! ```
//! use rtconfig::auth::secret_box::SecretBox;
//! use rtconfig::auth::store::TotpState;
//! use rtconfig::auth::totp::{self, Enrolment};
//!
//! let secret_box = SecretBox::new([7; 32]);
//! let (user_id, now) = ("u_alice", 1_700_000_000);
//!
//! // 1. Enrol: store the sealed secret unconfirmed (`UserUpdate::Totp(Some(state))`), show the
//! //    QR code / URI and the base32 secret.
//! let enrolment = Enrolment::new("alice");
//! let state = TotpState::new_enrolment(secret_box.seal(enrolment.secret(), user_id));
//! let _show = (enrolment.otpauth_uri(), enrolment.secret_base32());
//!
//! // 2. Confirm with the first code: store the confirmed state, show the recovery codes once.
//! let code = totp::code_at(enrolment.secret(), now).unwrap(); // what the user's app shows
//! let secret = secret_box.open(&state.secret_encrypted, user_id).unwrap();
//! let step = totp::verify(&secret, &code, now, state.last_step).unwrap();
//! let (shown_once, digests) = totp::recovery_codes();
//! let state = state.confirmed(step, digests);
//!
//! // 3. Sign in: the code is right *and* the store accepts its step (`use_totp_step`), or the
//! //    recovery code's digest is one the store still has (`use_recovery_code`). Both kinds of
//! //    failure count in the password throttle.
//! assert_eq!(totp::verify(&secret, &code, now, state.last_step), None, "replayed");
//! assert!(state.recovery_codes.contains(&totp::recovery_digest(&shown_once[0].to_uppercase())));
//! ```
//!
//! [`AuthStore::use_totp_step`]: super::store::AuthStore::use_totp_step
//! [`AuthStore::use_recovery_code`]: super::store::AuthStore::use_recovery_code
//! [`SecretBox`]: super::secret_box::SecretBox

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

use super::store::{Digest, TotpState};

/// The issuer shown in authenticator apps.
pub const ISSUER: &str = "rtconfig";
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Seconds of one time step.
pub const STEP_SECONDS: u64 = 30;
/// Steps accepted either side of now (clock drift, a code typed just before it changed).
pub const SKEW_STEPS: u64 = 1;
/// Bytes of a new secret (160 bits, RFC 4226's recommendation).
pub const SECRET_BYTES: usize = 20;
/// How many recovery codes [`recovery_codes`] makes.
pub const RECOVERY_CODE_COUNT: usize = 10;

/// A TOTP factor being set up: the new secret and what the user's authenticator app needs.
/// Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Enrolment {
    secret: [u8; SECRET_BYTES],
    account_name: String,
    issuer: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrolment")
            .field("account_name", &self.account_name)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Enrolment {
    /// A new random 160-bit secret for `account_name` (the user name shown in the app), issuer
    /// [`ISSUER`].
    pub fn new(account_name: &str) -> Enrolment {
        let mut secret = [0u8; SECRET_BYTES];
        OsRng.fill_bytes(&mut secret);
        Enrolment::from_secret(secret, account_name)
    }

    /// The same with another issuer (e.g. a deployment's name).
    pub fn with_issuer(mut self, issuer: &str) -> Enrolment {
        self.issuer = issuer.to_owned();
        self
    }

    /// The enrolment of a secret already made (an enrolment begun but not yet confirmed, shown
    /// again); `None` unless `secret` has [`SECRET_BYTES`] bytes.
    pub fn resume(secret: &[u8], account_name: &str) -> Option<Enrolment> {
        Some(Enrolment::from_secret(
            secret.try_into().ok()?,
            account_name,
        ))
    }

    fn from_secret(secret: [u8; SECRET_BYTES], account_name: &str) -> Enrolment {
        Enrolment {
            secret,
            account_name: account_name.to_owned(),
            issuer: ISSUER.to_owned(),
        }
    }

    /// The raw secret: seal it ([`SecretBox::seal`](super::secret_box::SecretBox::seal)) to
    /// store it; never log it.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The secret in base32 (RFC 4648, no padding), for typing into an app by hand.
    pub fn secret_base32(&self) -> String {
        totp_rs::Secret::Raw(self.secret.to_vec())
            .to_encoded()
            .to_string()
    }

    /// The Key URI an app scans as a QR code:
    /// `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`,
    /// issuer and account percent-encoded.
    pub fn otpauth_uri(&self) -> String {
        let issuer = percent_encode(&self.issuer);
        format!(
            "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}\
             &algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
            account = percent_encode(&self.account_name),
            secret = self.secret_base32(),
        )
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (so a space is `%20`, never `+`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl TotpState {
    /// The state to store when enrolment starts: the sealed secret, not yet confirmed, no step
    /// used, no recovery codes.
    pub fn new_enrolment(secret_encrypted: String) -> TotpState {
        TotpState {
            secret_encrypted,
            confirmed: false,
            last_step: None,
            recovery_codes: Vec::new(),
        }
    }

    /// The state after the first code (time step `step`, from [`verify`]) was right: confirmed,
    /// that step used, and the digests of the new recovery codes.
    pub fn confirmed(self, step: u64, recovery_codes: Vec<Digest>) -> TotpState {
        TotpState {
            confirmed: true,
            last_step: Some(step),
            recovery_codes,
            ..self
        }
    }
}

/// The TOTP of `secret`; `None` for a secret shorter than 128 bits (RFC 4226's minimum).
fn totp(secret: &[u8]) -> Option<TOTP> {
    TOTP::new(Algorithm::SHA1, DIGITS, 0, STEP_SECONDS, secret.to_vec()).ok()
}

/// The code an authenticator app shows at `now_unix` (for tests and test clients); `None` for a
/// secret shorter than 128 bits.
pub fn code_at(secret: &[u8], now_unix: u64) -> Option<String> {
    Some(totp(secret)?.generate(now_unix))
}

/// Checks a code typed by the user: returns the time step it belongs to when it is the code of
/// one of the steps now−1, now, now+1 ([`SKEW_STEPS`]) **and** that step is above `last_step`
/// (the last one accepted: a step is never accepted twice, nor an older one). Whitespace in
/// `code` is ignored; anything but 6 ASCII digits, or a secret shorter than 128 bits, gives
/// `None`. Compares in constant time.
///
/// The caller must then have the store accept the step (`AuthStore::use_totp_step`), which
/// makes the replay check atomic across concurrent sign-ins and replicas.
pub fn verify(secret: &[u8], code: &str, now_unix: u64, last_step: Option<u64>) -> Option<u64> {
    let typed: Vec<u8> = code.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if typed.len() != DIGITS || !typed.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let totp = totp(secret)?;
    let now = now_unix / STEP_SECONDS;
    let mut matched = None;
    // Every candidate is computed and compared, so the time taken does not say which matched.
    for step in now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS) {
        let Some(at) = step.checked_mul(STEP_SECONDS) else {
            continue;
        };
        let right = bool::from(totp.generate(at).as_bytes().ct_eq(&typed));
        let fresh = last_step.is_none_or(|last| step > last);
        if right && fresh {
            matched = Some(step);
        }
    }
    matched
}

/// Crockford's base32 alphabet: digits and lower-case letters without `i`, `l`, `o` and `u`, so
/// no two characters look alike (5 bits a character).
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters of a recovery code (12 × 5 = 60 bits), shown in groups of 4.
const RECOVERY_CHARS: usize = 12;

/// New recovery codes: the codes to show once (`xxxx-xxxx-xxxx`, 60 random bits each, from an
/// alphabet without look-alike characters) and their digests ([`recovery_digest`]) to store, in
/// the same order.
pub fn recovery_codes() -> (Vec<String>, Vec<Digest>) {
    let codes: Vec<String> = (0..RECOVERY_CODE_COUNT).map(|_| recovery_code()).collect();
    let digests = codes.iter().map(|c| recovery_digest(c)).collect();
    (codes, digests)
}

fn recovery_code() -> String {
    let mut random = [0u8; RECOVERY_CHARS];
    OsRng.fill_bytes(&mut random);
    let mut code = String::with_capacity(RECOVERY_CHARS + 2);
    for (i, b) in random.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            code.push('-');
        }
        // 256 is a multiple of 32: every character is equally likely.
        code.push(char::from(RECOVERY_ALPHABET[usize::from(b & 31)]));
    }
    code
}

/// The digest under which a recovery code is stored and looked up: SHA-256, hex, of the code
/// with case, dashes and whitespace ignored, and the look-alikes `o` read as `0` and `i`/`l` as
/// `1` (so `ABCD-EFGH-JK0M`, `abcdefghjkom` and ` abcd efgh jk0m ` are the same code).
pub fn recovery_digest(code: &str) -> Digest {
    let normalized: String = code
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        })
        .collect();
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    /// RFC 6238 appendix B, SHA-1: (time, the 8-digit code). A 6-digit code is the same value
    /// mod 10^6, i.e. the last 6 digits.
    const RFC_VECTORS: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    fn six(code8: &str) -> &str {
        &code8[2..]
    }

    #[test]
    fn codes_are_rfc_6238_sha1() {
        for (time, code8) in RFC_VECTORS {
            assert_eq!(
                code_at(RFC_SECRET, time).as_deref(),
                Some(six(code8)),
                "T = {time}"
            );
            assert_eq!(
                verify(RFC_SECRET, six(code8), time, None),
                Some(time / 30),
                "T = {time}"
            );
        }
    }

    #[test]
    fn one_step_of_skew_either_side_is_accepted_and_no_more() {
        let now = 1_111_111_111; // step 37037037, 1 s into it
        let step = now / 30;
        let code_of = |offset: i64| {
            let at = (step as i64 + offset) as u64 * 30;
            code_at(RFC_SECRET, at).expect("code")
        };
        let cases = [
            (-2, None),
            (-1, Some(step - 1)),
            (0, Some(step)),
            (1, Some(step + 1)),
            (2, None),
        ];
        for (offset, expected) in cases {
            assert_eq!(
                verify(RFC_SECRET, &code_of(offset), now, None),
                expected,
                "the code of step now{offset:+}"
            );
        }
        // The window moves with the step, not with seconds: the last second of a step accepts
        // the next step's code, and the first second of the next step still the previous one.
        assert_eq!(
            verify(RFC_SECRET, &code_of(1), step * 30 + 29, None),
            Some(step + 1)
        );
        assert_eq!(
            verify(RFC_SECRET, &code_of(-1), step * 30, None),
            Some(step - 1)
        );
    }

    #[test]
    fn a_used_step_or_an_older_one_is_refused() {
        let now = 1_234_567_890;
        let step = now / 30;
        let current = code_at(RFC_SECRET, now).expect("code");
        let previous = code_at(RFC_SECRET, now - 30).expect("code");
        let next = code_at(RFC_SECRET, now + 30).expect("code");
        // (code, last accepted step, expected)
        let cases = [
            (&current, None, Some(step)),
            (&current, Some(step - 1), Some(step)),
            (&current, Some(step), None),
            (&current, Some(step + 1), None),
            (&previous, Some(step - 1), None),
            (&previous, Some(step - 2), Some(step - 1)),
            (&previous, Some(step), None),
            (&next, Some(step), Some(step + 1)),
            (&next, Some(step + 1), None),
        ];
        for (code, last, expected) in cases {
            assert_eq!(
                verify(RFC_SECRET, code, now, last),
                expected,
                "code {code}, last step {last:?}"
            );
        }
        // The sign-in flow: a code accepted once is refused the second time.
        let first = verify(RFC_SECRET, &current, now, None);
        assert_eq!(verify(RFC_SECRET, &current, now + 5, first), None);
    }

    #[test]
    fn garbage_codes_are_refused() {
        let now = 59;
        let right = "287082";
        assert_eq!(verify(RFC_SECRET, right, now, None), Some(1));
        let accepted = [" 287082", "287 082", "287082\n", "\t28 70 82 "];
        for code in accepted {
            assert_eq!(verify(RFC_SECRET, code, now, None), Some(1), "{code:?}");
        }
        let refused = [
            "",
            "      ",
            "28708",
            "2870820",
            "94287082",
            "287-082",
            "+28708",
            "-87082",
            "28708a",
            "abcdef",
            "２８７０８２",
            "287082\0",
            "287081",
            "000000",
        ];
        for code in refused {
            assert_eq!(verify(RFC_SECRET, code, now, None), None, "{code:?}");
        }
    }

    #[test]
    fn short_secrets_and_extreme_times_give_none_not_a_panic() {
        let short = &RFC_SECRET[..15]; // 120 bits
        assert_eq!(code_at(short, 59), None);
        assert_eq!(verify(short, "000000", 59, None), None);
        // Step 0: no step before it.
        let code = code_at(RFC_SECRET, 0).expect("code");
        assert_eq!(verify(RFC_SECRET, &code, 0, None), Some(0));
        assert_eq!(verify(RFC_SECRET, &code, 0, Some(0)), None);
        // The end of time: the steps whose start does not fit in u64 are skipped.
        let code = code_at(RFC_SECRET, u64::MAX).expect("code");
        assert_eq!(
            verify(RFC_SECRET, &code, u64::MAX, None),
            Some(u64::MAX / 30)
        );
    }

    #[test]
    fn an_enrolment_has_a_random_160_bit_secret_and_its_key_uri() {
        let a = Enrolment::new("alice");
        let b = Enrolment::new("alice");
        assert_eq!(a.secret().len(), 20);
        assert_ne!(a.secret(), b.secret(), "random");
        let base32 = a.secret_base32();
        assert_eq!(base32.len(), 32);
        assert_eq!(
            totp_rs::Secret::Encoded(base32.clone())
                .to_bytes()
                .expect("base32"),
            a.secret(),
        );
        assert!(a.otpauth_uri().contains(&format!("secret={base32}&")));
        let debug = format!("{a:?}");
        assert!(!debug.contains(&base32), "Debug hides the secret: {debug}");
        assert!(debug.contains("alice"), "{debug}");
    }

    #[test]
    fn the_key_uri_is_the_key_uri_format() {
        let secret: [u8; 20] = RFC_SECRET.try_into().expect("20 bytes");
        let cases = [
            (
                Enrolment::from_secret(secret, "alice"),
                "otpauth://totp/rtconfig:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
                 &issuer=rtconfig&algorithm=SHA1&digits=6&period=30",
            ),
            (
                Enrolment::from_secret(secret, "a b:c@d/é?&=+").with_issuer("ACME prod"),
                "otpauth://totp/ACME%20prod:a%20b%3Ac%40d%2F%C3%A9%3F%26%3D%2B\
                 ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
                 &issuer=ACME%20prod&algorithm=SHA1&digits=6&period=30",
            ),
        ];
        for (enrolment, expected) in cases {
            assert_eq!(enrolment.otpauth_uri(), expected);
            assert!(url::Url::parse(expected).is_ok(), "a valid URL: {expected}");
        }
    }

    #[test]
    fn enrolment_and_confirmation_states() {
        let state = TotpState::new_enrolment("sealed".into());
        assert_eq!(
            state,
            TotpState {
                secret_encrypted: "sealed".into(),
                confirmed: false,
                last_step: None,
                recovery_codes: vec![],
            }
        );
        let confirmed = state.confirmed(42, vec!["d1".into(), "d2".into()]);
        assert_eq!(
            confirmed,
            TotpState {
                secret_encrypted: "sealed".into(),
                confirmed: true,
                last_step: Some(42),
                recovery_codes: vec!["d1".into(), "d2".into()],
            }
        );
    }

    #[test]
    fn recovery_codes_are_ten_distinct_60_bit_codes_with_their_digests() {
        let (codes, digests) = recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        assert_eq!(digests.len(), RECOVERY_CODE_COUNT);
        let shape = regex::Regex::new(
            "^[0-9abcdefghjkmnpqrstvwxyz]{4}-[0-9abcdefghjkmnpqrstvwxyz]{4}-[0-9abcdefghjkmnpqrstvwxyz]{4}$",
        )
        .expect("regex");
        for (code, digest) in codes.iter().zip(&digests) {
            assert!(shape.is_match(code), "{code}");
            assert_eq!(&recovery_digest(code), digest);
            assert_eq!(digest.len(), 64);
            assert!(!digest.contains(code.as_str()));
        }
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), codes.len());
        let (again, _) = recovery_codes();
        assert!(codes.iter().all(|c| !again.contains(c)), "random each time");
        // 12 characters of a 32-letter alphabet.
        assert!(RECOVERY_CHARS as f64 * (RECOVERY_ALPHABET.len() as f64).log2() >= 60.0);
        let alphabet: std::collections::HashSet<_> = RECOVERY_ALPHABET.iter().collect();
        assert_eq!(alphabet.len(), 32, "no letter twice");
    }

    #[test]
    fn recovery_codes_are_normalized_before_hashing() {
        let stored = recovery_digest("abcd-efgh-jk01");
        assert_eq!(
            stored,
            hex::encode(Sha256::digest(b"abcdefghjk01")),
            "SHA-256 of the code without dashes"
        );
        let same = [
            "ABCD-EFGH-JK01",
            "abcdefghjk01",
            " abcd efgh jk01\n",
            "abcd--efgh-jk-01",
            "abcd-efgh-jkO1",
            "abcd-efgh-jkoI",
            "abcd-efgh-jk0l",
        ];
        for code in same {
            assert_eq!(recovery_digest(code), stored, "{code:?}");
        }
        let different = ["abcd-efgh-jk02", "abcd-efgh-jk0", "abcd-efgh-jk011", ""];
        for code in different {
            assert_ne!(recovery_digest(code), stored, "{code:?}");
        }
    }
}
