//! The SSO role map: which rtconfig grants a value of the provider's role claim gives
//! (`--oidc-role-map FILE`), and the pure mapping [`map_roles`].
//!
//! # File format
//!
//! One TOML table, named after the claim it reads (`--oidc-role-claim`, default `groups`). Each
//! key is a claim value exactly as the provider sends it (case-sensitive, quoted when it has
//! characters other than letters, digits, `-` and `_`); each value is a list of grants, written
//! `ROLE` (every namespace) or `ROLE:NAMESPACE`, with `ROLE` one of `viewer`, `editor`, `admin`:
//!
//! ```toml
//! [groups]
//! "platform-admins" = ["admin"]
//! "payments-team"   = ["editor:payments", "viewer"]
//! "/auditors"       = ["viewer"]   # Keycloak with "Full group path" on
//! ```
//!
//! A user gets the union of the grants of every claim value they have; values not in the file
//! give nothing, so a user none of whose values is listed has no grants at all. The grants are
//! derived anew at every sign-in and replace the user's previous ones: removing someone from a
//! group at the provider removes the grant at their next sign-in.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::auth::role::{Grant, Grants};

/// Claim values and the grants each gives. Build it with [`RoleMap::from_toml`] or
/// [`RoleMap::load`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleMap {
    claim: String,
    entries: BTreeMap<String, Vec<Grant>>,
}

/// Why a role map was refused: where (file, line) and what to fix.
#[derive(Debug, thiserror::Error)]
pub struct RoleMapError {
    /// The file, when read by [`RoleMap::load`].
    pub file: Option<PathBuf>,
    /// 1-based line of the offending entry, when known.
    pub line: Option<usize>,
    pub problem: RoleMapProblem,
}

/// What is wrong with a role map.
#[derive(Debug, thiserror::Error)]
pub enum RoleMapProblem {
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    #[error("{0}")]
    Syntax(String),
    #[error(
        "it maps no claim: write one table named after the claim, e.g. [groups] with entries \
         \"platform-admins\" = [\"admin\"]"
    )]
    NoTable,
    #[error(
        "{0:?} is not in a table: put the entries under a table named after the claim, e.g. \
         [groups]"
    )]
    NotInTable(String),
    #[error(
        "it has tables for several claims ({0}); rtconfig reads one claim (--oidc-role-claim), \
         keep only its table"
    )]
    SeveralTables(String),
    #[error("an empty claim value \"\" = … matches nothing: remove the entry")]
    EmptyValue,
    #[error(
        "entry {value:?} must be a list of grants, e.g. {value:?} = [\"editor:payments\", \
         \"viewer\"]"
    )]
    NotAList { value: String },
    #[error("entry {value:?}: {grant:?} is not a grant: {reason}")]
    BadGrant {
        value: String,
        grant: String,
        reason: crate::auth::role::GrantError,
    },
    #[error("entry {value:?}: every grant must be a string like \"editor:payments\"")]
    GrantNotAString { value: String },
}

impl fmt::Display for RoleMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "--oidc-role-map {}", file.display())?,
            None => f.write_str("the role map")?,
        }
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl RoleMap {
    /// Parses the role map format described in the module docs. Errors name the line and the
    /// entry to fix (and the file, when the caller is [`RoleMap::load`]).
    pub fn from_toml(text: &str) -> Result<RoleMap, RoleMapError> {
        let at = |span: std::ops::Range<usize>, problem| RoleMapError {
            file: None,
            line: Some(line_of(text, span.start)),
            problem,
        };
        let doc = DeTable::parse(text).map_err(|e| RoleMapError {
            file: None,
            line: e.span().map(|s| line_of(text, s.start)),
            problem: RoleMapProblem::Syntax(e.message().trim().to_owned()),
        })?;
        let doc = doc.into_inner();

        let mut tables = Vec::new();
        for (key, value) in doc.iter() {
            match value.get_ref() {
                DeValue::Table(table) => tables.push((key, table)),
                _ => {
                    return Err(at(
                        key.span(),
                        RoleMapProblem::NotInTable(key.get_ref().to_string()),
                    ))
                }
            }
        }
        let (claim, table) = match tables.as_slice() {
            [] => {
                return Err(RoleMapError {
                    file: None,
                    line: None,
                    problem: RoleMapProblem::NoTable,
                })
            }
            [one] => *one,
            [_, second, ..] => {
                let names: Vec<String> = tables
                    .iter()
                    .map(|(k, _)| format!("[{}]", k.get_ref()))
                    .collect();
                return Err(at(
                    second.0.span(),
                    RoleMapProblem::SeveralTables(names.join(", ")),
                ));
            }
        };

        let mut entries = BTreeMap::new();
        for (key, value) in table.iter() {
            let name = key.get_ref().to_string();
            if name.is_empty() {
                return Err(at(key.span(), RoleMapProblem::EmptyValue));
            }
            let DeValue::Array(items) = value.get_ref() else {
                return Err(at(key.span(), RoleMapProblem::NotAList { value: name }));
            };
            let mut grants = Vec::with_capacity(items.len());
            for item in items.iter() {
                grants.push(parse_grant(&name, item).map_err(|p| at(item.span(), p))?);
            }
            entries.insert(name, grants);
        }
        Ok(RoleMap {
            claim: claim.get_ref().to_string(),
            entries,
        })
    }

    /// Reads and parses `--oidc-role-map FILE`; errors name the file.
    pub fn load(path: &Path) -> Result<RoleMap, RoleMapError> {
        let text = std::fs::read_to_string(path).map_err(|e| RoleMapError {
            file: Some(path.to_owned()),
            line: None,
            problem: RoleMapProblem::Read(e),
        })?;
        RoleMap::from_toml(&text).map_err(|e| RoleMapError {
            file: Some(path.to_owned()),
            ..e
        })
    }

    /// A map built in code (tests, defaults): `claim` and `(value, grants)` pairs.
    pub fn new(
        claim: impl Into<String>,
        entries: impl IntoIterator<Item = (String, Vec<Grant>)>,
    ) -> RoleMap {
        RoleMap {
            claim: claim.into(),
            entries: entries.into_iter().collect(),
        }
    }

    /// The claim this map reads (its table's name); must equal `--oidc-role-claim`.
    pub fn claim(&self) -> &str {
        &self.claim
    }

    /// The grants one claim value gives (`None`: the value is not in the map).
    pub fn grants_for(&self, value: &str) -> Option<&[Grant]> {
        self.entries.get(value).map(Vec::as_slice)
    }

    /// Number of claim values mapped.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_grant(value: &str, item: &Spanned<DeValue<'_>>) -> Result<Grant, RoleMapProblem> {
    let DeValue::String(text) = item.get_ref() else {
        return Err(RoleMapProblem::GrantNotAString {
            value: value.to_owned(),
        });
    };
    text.parse().map_err(|reason| RoleMapProblem::BadGrant {
        value: value.to_owned(),
        grant: text.to_string(),
        reason,
    })
}

/// The grants a user with these claim values gets: the union of the grants of every value in
/// the map (values not in it give nothing), sorted and without duplicates. Pure; the caller
/// replaces the user's grants with the result at every sign-in.
pub fn map_roles(claim_values: &[String], map: &RoleMap) -> Grants {
    Grants::new(
        claim_values
            .iter()
            .filter_map(|v| map.grants_for(v))
            .flatten()
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
# who gets what in rtconfig
[groups]
"platform-admins" = ["admin"]
"payments-team" = ["editor:payments", "viewer"]
readers = ["viewer"]
"/auditors" = [
  "viewer:payments",
  "viewer:orders",
]
nobody = []
"#;

    fn grants(list: &[&str]) -> Grants {
        Grants::new(list.iter().map(|s| s.parse().expect("grant")).collect())
    }

    fn values(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_example_parses() {
        let map = RoleMap::from_toml(EXAMPLE).expect("parse");
        assert_eq!(map.claim(), "groups");
        assert_eq!(map.len(), 5);
        assert_eq!(
            map.grants_for("payments-team"),
            Some(
                &[
                    "editor:payments".parse().expect("g"),
                    "viewer".parse().expect("g")
                ][..]
            )
        );
        assert_eq!(map.grants_for("nobody"), Some(&[][..]));
        assert_eq!(map.grants_for("Platform-Admins"), None, "case-sensitive");
    }

    #[test]
    fn roles_are_the_union_of_the_mapped_values() {
        let map = RoleMap::from_toml(EXAMPLE).expect("parse");
        // (claim values, grants)
        let table: &[(&[&str], &[&str])] = &[
            (&[], &[]),
            (&["strangers"], &[]),
            (&["readers"], &["viewer"]),
            (&["payments-team"], &["editor:payments", "viewer"]),
            (
                &["payments-team", "readers"],
                &["editor:payments", "viewer"],
            ),
            (&["platform-admins", "strangers"], &["admin"]),
            (&["/auditors"], &["viewer:orders", "viewer:payments"]),
            (&["auditors"], &[]),
            (&["nobody"], &[]),
            (&["readers", "readers"], &["viewer"]),
            (
                &["platform-admins", "payments-team"],
                &["admin", "editor:payments", "viewer"],
            ),
        ];
        for (claim_values, want) in table {
            assert_eq!(
                map_roles(&values(claim_values), &map),
                grants(want),
                "{claim_values:?}"
            );
        }
    }

    #[test]
    fn re_deriving_at_the_next_login_drops_removed_groups() {
        let map = RoleMap::from_toml(EXAMPLE).expect("parse");
        let first = map_roles(&values(&["platform-admins", "payments-team"]), &map);
        assert!(first.allows(&crate::auth::Need::Global(crate::auth::Role::Admin)));
        // Removed from platform-admins at the provider: the admin grant is gone next time.
        let second = map_roles(&values(&["payments-team"]), &map);
        assert_eq!(second, grants(&["editor:payments", "viewer"]));
        assert!(!second.allows(&crate::auth::Need::Global(crate::auth::Role::Admin)));
        // Removed from everything: nothing left.
        assert_eq!(map_roles(&[], &map), Grants::default());
    }

    #[test]
    fn errors_name_the_line_and_the_entry() {
        // (text, line, words the message must contain)
        let table: &[(&str, Option<usize>, &[&str])] = &[
            ("", None, &["maps no claim", "[groups]"]),
            ("# only a comment\n", None, &["maps no claim"]),
            (
                "\"platform-admins\" = [\"admin\"]\n",
                Some(1),
                &["\"platform-admins\"", "not in a table", "[groups]"],
            ),
            (
                "[groups]\na = [\"admin\"]\n[roles]\nb = [\"viewer\"]\n",
                Some(3),
                &["[groups], [roles]", "one claim"],
            ),
            (
                "[groups]\nok = [\"viewer\"]\n\"payments-team\" = \"editor:payments\"\n",
                Some(3),
                &["\"payments-team\"", "list of grants"],
            ),
            (
                "[groups]\nok = [\"viewer\"]\n\"payments-team\" = [\"viewer\", \"owner:payments\"]\n",
                Some(3),
                &["\"payments-team\"", "\"owner:payments\"", "unknown role \"owner\""],
            ),
            (
                "[groups]\nx = [\n  \"viewer\",\n  \"editor:\",\n]\n",
                Some(4),
                &["entry \"x\"", "\"editor:\"", "namespace"],
            ),
            (
                "[groups]\nx = [1]\n",
                Some(2),
                &["entry \"x\"", "must be a string"],
            ),
            ("[groups]\n\"\" = [\"viewer\"]\n", Some(2), &["empty claim value"]),
            ("[groups]\na = [\"viewer\"]\na = [\"admin\"]\n", Some(3), &["duplicate"]),
            ("[groups]\na = [\"viewer\"\n", Some(2), &[]),
        ];
        for (text, line, words) in table {
            let err = RoleMap::from_toml(text).expect_err(text);
            assert_eq!(err.line, *line, "{text:?}: {err}");
            let msg = err.to_string();
            assert!(msg.starts_with("the role map"), "{msg}");
            if let Some(l) = line {
                assert!(msg.contains(&format!("line {l}:")), "{msg}");
            }
            for w in *words {
                assert!(msg.contains(w), "{text:?}: {msg:?} lacks {w:?}");
            }
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("roles.toml");
        std::fs::write(&path, "[groups]\nadmins = [\"root\"]\n").expect("write");
        let msg = RoleMap::load(&path).expect_err("bad grant").to_string();
        assert!(
            msg.starts_with(&format!("--oidc-role-map {}, line 2: ", path.display())),
            "{msg}"
        );
        let missing = dir.path().join("missing.toml");
        let msg = RoleMap::load(&missing).expect_err("missing").to_string();
        assert_eq!(
            msg,
            format!("--oidc-role-map {}: cannot read it", missing.display())
        );
        std::fs::write(&path, EXAMPLE).expect("write");
        assert_eq!(
            RoleMap::load(&path).expect("good"),
            RoleMap::from_toml(EXAMPLE).expect("parse")
        );
    }
}
