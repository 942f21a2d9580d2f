//! Times as pages show them: relative ("3 min ago") with the absolute time on hover
//! (`<time datetime=… title=…>`). Pure; the script refreshes the relative text.

use chrono::{DateTime, Utc};

/// A time for a template: machine-readable, absolute and relative forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// RFC 3339, for `datetime=`.
    pub iso: String,
    /// `2026-12-02 04:30:12 UTC`, for `title=`.
    pub absolute: String,
    /// `3 min ago`
    pub relative: String,
}

impl When {
    pub fn new(at: DateTime<Utc>, now: DateTime<Utc>) -> When {
        When {
            iso: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            absolute: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            relative: relative(at, now),
        }
    }
}

/// "just now", "42 s ago", "5 min ago", "3 h ago", "2 days ago", or the date beyond 30 days;
/// a time in the future (clock skew) reads "just now".
pub fn relative(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds();
    match secs {
        s if s < 5 => "just now".to_owned(),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s if s < 2 * 86_400 => "yesterday".to_owned(),
        s if s < 30 * 86_400 => format!("{} days ago", s / 86_400),
        _ => at.format("%Y-%m-%d").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        for (ago, want) in [
            (-30, "just now"),
            (0, "just now"),
            (42, "42 s ago"),
            (300, "5 min ago"),
            (3 * 3600 + 5, "3 h ago"),
            (30 * 3600, "yesterday"),
            (5 * 86_400, "5 days ago"),
            (60 * 86_400, "2026-10-03"),
        ] {
            assert_eq!(
                relative(now - chrono::Duration::seconds(ago), now),
                want,
                "{ago}"
            );
        }
        let w = When::new(now, now);
        assert_eq!(w.iso, "2026-12-02T12:00:00Z");
        assert_eq!(w.absolute, "2026-12-02 12:00:00 UTC");
    }
}
