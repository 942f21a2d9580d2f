//! Query strings, strictly: a route names the parameters it takes, each may be given once, and
//! anything else — an unknown name, a repeat — is refused with 400 `invalid_query` (the values
//! are the route's to check, with the same code). A typo such as `?mask=secret` or
//! `?wiat=30s` is an error, never silently ignored.
//!
//! [`parse`] is for handlers that read the query by hand (the sidecar's read API, whose hot
//! path must not allocate for the common cases); [`NoQuery`] is the extractor of a route that
//! takes none; `ApiQuery<T>` (in [`super::error`]) deserialises into a struct with
//! `deny_unknown_fields`.

use std::borrow::Cow;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;

/// At most this many parameters are looked at (the URI is bounded anyway; this bounds the
/// list a handler scans).
const MAX_PARAMS: usize = 16;

/// The parameters of one query string, decoded (`%XX`, `+`), each known and given once.
#[derive(Debug, Default)]
pub struct Query<'a> {
    pairs: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl Query<'_> {
    /// The value of `name`, if given (`?flag` gives `""`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// Parses `query` (the URI's, without `?`), allowing only the names in `known`.
pub fn parse<'a>(query: Option<&'a str>, known: &[&str]) -> Result<Query<'a>, ApiError> {
    let mut out = Query::default();
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(out);
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if !known.contains(&name.as_ref()) {
            return Err(unknown(&name, known));
        }
        if out.get(&name).is_some() {
            return Err(invalid(format!(
                "the query parameter {name:?} is given twice"
            )));
        }
        if out.pairs.len() == MAX_PARAMS {
            return Err(invalid("too many query parameters".to_owned()));
        }
        out.pairs.push((name, value));
    }
    Ok(out)
}

/// 400 `invalid_query` with `message`.
pub fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

fn unknown(name: &str, known: &[&str]) -> ApiError {
    let shown: String = name.chars().take(64).collect();
    let message = match known {
        [] => format!("this endpoint takes no query parameters, got {shown:?}"),
        _ => format!(
            "unknown query parameter {shown:?}; this endpoint takes {}",
            known
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    invalid(message)
}

/// The extractor of a route that takes no query parameters: any is refused with 400
/// `invalid_query`.
pub struct NoQuery;

impl<S: Send + Sync> FromRequestParts<S> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parse(parts.uri.query(), &[]).map(|_| NoQuery)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_parameters_given_once_pass() {
        /// (query, known names, the pairs found or the error message)
        type Case<'a> = (
            Option<&'a str>,
            &'a [&'a str],
            Result<&'a [(&'a str, &'a str)], &'a str>,
        );
        let cases: &[Case] = &[
            (None, &[], Ok(&[])),
            (Some(""), &[], Ok(&[])),
            (Some("format=raw"), &["format"], Ok(&[("format", "raw")])),
            (
                Some("index=1-2&wait=5s"),
                &["index", "wait"],
                Ok(&[("index", "1-2"), ("wait", "5s")]),
            ),
            // Decoded, like every other query reader.
            (
                Some("index=%221-2%22"),
                &["index"],
                Ok(&[("index", "\"1-2\"")]),
            ),
            (
                Some("%6Dask=secrets"),
                &["mask"],
                Ok(&[("mask", "secrets")]),
            ),
            (Some("flag"), &["flag"], Ok(&[("flag", "")])),
            (Some("a=1&&"), &["a"], Ok(&[("a", "1")])),
            (
                Some("x=1"),
                &[],
                Err("this endpoint takes no query parameters, got \"x\""),
            ),
            (
                Some("wiat=30s"),
                &["index", "wait"],
                Err("unknown query parameter \"wiat\"; this endpoint takes \"index\", \"wait\""),
            ),
            (
                Some("mask=secrets&mask=none"),
                &["mask"],
                Err("the query parameter \"mask\" is given twice"),
            ),
        ];
        for (query, known, want) in cases {
            let got = parse(*query, known);
            match (got, want) {
                (Ok(q), Ok(pairs)) => {
                    assert_eq!(q.pairs.len(), pairs.len(), "{query:?}");
                    for (k, v) in pairs.iter() {
                        assert_eq!(q.get(k), Some(*v), "{query:?}");
                    }
                }
                (Err(e), Err(message)) => {
                    assert_eq!(e.code, "invalid_query", "{query:?}");
                    assert_eq!(e.status.as_u16(), 400, "{query:?}");
                    assert_eq!(e.message, *message, "{query:?}");
                }
                (got, want) => panic!("{query:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_flood_of_parameters_is_refused() {
        let names: Vec<String> = (0..20).map(|i| format!("p{i}")).collect();
        let known: Vec<&str> = names.iter().map(String::as_str).collect();
        let query = names
            .iter()
            .map(|n| format!("{n}=1"))
            .collect::<Vec<_>>()
            .join("&");
        assert!(parse(Some(&query), &known).is_err());
    }
}
