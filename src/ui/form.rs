//! Reading `application/x-www-form-urlencoded` bodies of the UI's forms (pure functions).

/// The fields of a form body, in order (a name may repeat: the last one wins in [`Form::get`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The last value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(rest, value)` of fields named `prefix` + rest (the last value of each name),
    /// in first-seen order.
    pub fn with_prefix<'a>(&'a self, prefix: &str) -> Vec<(&'a str, &'a str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for (k, v) in &self.0 {
            if let Some(rest) = k.strip_prefix(prefix) {
                match out.iter_mut().find(|(name, _)| *name == rest) {
                    Some(slot) => slot.1 = v.as_str(),
                    None => out.push((rest, v.as_str())),
                }
            }
        }
        out
    }
}

/// Whether `next` is a safe place to go after signing in: a path on this site (`/…`), not
/// `//host` or `/\host` (which browsers read as another site), no scheme, no control chars.
pub fn safe_next(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\')
        && next.len() <= 2000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_prefixes() {
        let f = Form::parse(b"csrf_token=t&v.SITE_NAME=a+b&v.LOGS=3&v.SITE_NAME=c&e.LOGS=2");
        assert_eq!(f.get("csrf_token"), Some("t"));
        assert_eq!(f.get("v.SITE_NAME"), Some("c"));
        assert_eq!(f.get("missing"), None);
        assert_eq!(f.with_prefix("v."), vec![("SITE_NAME", "c"), ("LOGS", "3")]);
    }

    #[test]
    fn next_targets() {
        for (next, ok) in [
            ("/namespaces", true),
            ("/namespaces/demo?q=x", true),
            ("//evil.example", false),
            ("/\\evil.example", false),
            ("https://evil.example", false),
            ("namespaces", false),
            ("/a\nb", false),
            ("", false),
        ] {
            assert_eq!(safe_next(next), ok, "{next:?}");
        }
    }
}
