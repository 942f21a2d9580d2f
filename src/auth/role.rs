//! Roles and grants, and the one decision every route asks: may this principal do that?
//!
//! Pure functions with table tests; the HTTP layer (`auth::guard`) only gathers the principal and
//! the route's [`Need`], then asks [`Grants::allows`].
//!
//! | role | may |
//! |---|---|
//! | `viewer` | read configs, history, fleet |
//! | `editor` | also write, reset, rollback, import |
//! | `admin`  | also users, tokens, audit — and every namespace |
//!
//! A grant is global (`editor`) or for one namespace (`editor:payments`). A principal's role in a
//! namespace is the strongest of its global grants and its grants for that namespace. Users,
//! tokens and the audit log are global: they need a **global** `admin` grant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A role, ordered by power: `Viewer < Editor < Admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Editor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a role or grant string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("unknown role {0:?}: use viewer, editor or admin")]
    UnknownRole(String),
    #[error("grant {0:?}: the namespace after ':' is empty or not a valid namespace name")]
    BadNamespace(String),
}

impl FromStr for Role {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Role, GrantError> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "editor" => Ok(Role::Editor),
            "admin" => Ok(Role::Admin),
            other => Err(GrantError::UnknownRole(other.to_owned())),
        }
    }
}

/// One role, globally (`namespace: None`) or in one namespace. Written `ROLE` or `ROLE:NAMESPACE`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    pub role: Role,
    pub namespace: Option<String>,
}

impl Grant {
    pub fn global(role: Role) -> Grant {
        Grant {
            role,
            namespace: None,
        }
    }

    pub fn on(role: Role, namespace: impl Into<String>) -> Grant {
        Grant {
            role,
            namespace: Some(namespace.into()),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}:{ns}", self.role),
            None => write!(f, "{}", self.role),
        }
    }
}

fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 64
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

impl FromStr for Grant {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Grant, GrantError> {
        match s.split_once(':') {
            None => Ok(Grant::global(s.trim().parse()?)),
            Some((role, ns)) => {
                let role: Role = role.trim().parse()?;
                let ns = ns.trim();
                if !valid_namespace(ns) {
                    return Err(GrantError::BadNamespace(s.to_owned()));
                }
                Ok(Grant::on(role, ns))
            }
        }
    }
}

impl Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Grant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Grant, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a route needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Any signed-in principal (whoami, one's own sessions and password).
    SignedIn,
    /// At least `role` in this namespace (a global grant counts).
    InNamespace(Role, String),
    /// At least `role` in some namespace or globally (e.g. listing namespaces, filtered after).
    Somewhere(Role),
    /// At least `role` globally (users, tokens, audit: `Global(Admin)`).
    Global(Role),
}

impl Need {
    /// The role named in a 403 `forbidden` message ("needs editor of payments").
    pub fn describe(&self) -> String {
        match self {
            Need::SignedIn => "needs a signed-in user or a token".to_owned(),
            Need::InNamespace(r, ns) => format!("needs the {r} role for namespace {ns}"),
            Need::Somewhere(r) => format!("needs the {r} role for at least one namespace"),
            Need::Global(r) => format!("needs the {r} role for every namespace (a global grant)"),
        }
    }
}

/// A principal's grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Grants(pub Vec<Grant>);

impl Grants {
    pub fn new(mut grants: Vec<Grant>) -> Grants {
        grants.sort();
        grants.dedup();
        Grants(grants)
    }

    /// The strongest global role, if any.
    pub fn global(&self) -> Option<Role> {
        self.0
            .iter()
            .filter(|g| g.namespace.is_none())
            .map(|g| g.role)
            .max()
    }

    /// The strongest role in `namespace` (global grants included).
    pub fn role_in(&self, namespace: &str) -> Option<Role> {
        self.0
            .iter()
            .filter(|g| g.namespace.as_deref().is_none_or(|ns| ns == namespace))
            .map(|g| g.role)
            .max()
    }

    /// The strongest role anywhere.
    pub fn strongest(&self) -> Option<Role> {
        self.0.iter().map(|g| g.role).max()
    }

    pub fn allows(&self, need: &Need) -> bool {
        match need {
            Need::SignedIn => true,
            Need::InNamespace(role, ns) => self.role_in(ns).is_some_and(|r| r >= *role),
            Need::Somewhere(role) => self.strongest().is_some_and(|r| r >= *role),
            Need::Global(role) => self.global().is_some_and(|r| r >= *role),
        }
    }

    /// These grants limited by `ceiling` (a token's scope by its creator's current grants): in
    /// every namespace, the weaker of the two roles. The result is expressed as grants again.
    pub fn limited_by(&self, ceiling: &Grants) -> Grants {
        let mut out = Vec::new();
        for g in &self.0 {
            let cap = match &g.namespace {
                None => ceiling.global(),
                Some(ns) => ceiling.role_in(ns),
            };
            if let Some(cap) = cap {
                out.push(Grant {
                    role: g.role.min(cap),
                    namespace: g.namespace.clone(),
                });
            }
            // A global grant over a creator with only namespace grants keeps those namespaces.
            if g.namespace.is_none() {
                for c in ceiling.0.iter().filter(|c| c.namespace.is_some()) {
                    out.push(Grant {
                        role: g.role.min(c.role),
                        namespace: c.namespace.clone(),
                    });
                }
            }
        }
        Grants::new(out)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Grant> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(list: &[&str]) -> Grants {
        Grants::new(
            list.iter()
                .map(|s| s.parse().expect("grant"))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn grants_parse_and_print() {
        for (text, want) in [
            ("viewer", Ok(Grant::global(Role::Viewer))),
            ("admin", Ok(Grant::global(Role::Admin))),
            ("editor:payments", Ok(Grant::on(Role::Editor, "payments"))),
            ("owner", Err(GrantError::UnknownRole("owner".into()))),
            ("editor:", Err(GrantError::BadNamespace("editor:".into()))),
            (
                "editor:a b",
                Err(GrantError::BadNamespace("editor:a b".into())),
            ),
            ("Editor:x", Err(GrantError::UnknownRole("Editor".into()))),
        ] {
            let got: Result<Grant, _> = text.parse();
            assert_eq!(got, want, "{text}");
            if let Ok(g) = got {
                assert_eq!(g.to_string(), text);
            }
        }
    }

    #[test]
    fn who_may_do_what() {
        use Need::*;
        use Role::*;
        let ns = |r, n: &str| InNamespace(r, n.to_owned());
        // (grants, need, allowed)
        let table: &[(&[&str], Need, bool)] = &[
            (&[], SignedIn, true),
            (&[], ns(Viewer, "demo"), false),
            (&["viewer"], ns(Viewer, "demo"), true),
            (&["viewer"], ns(Editor, "demo"), false),
            (&["editor:payments"], ns(Editor, "payments"), true),
            (&["editor:payments"], ns(Viewer, "demo"), false),
            (&["editor:payments", "viewer"], ns(Viewer, "demo"), true),
            (&["editor:payments", "viewer"], ns(Editor, "demo"), false),
            (&["editor:payments", "viewer"], ns(Editor, "payments"), true),
            (&["admin:payments"], ns(Editor, "payments"), true),
            (&["admin:payments"], Global(Admin), false),
            (&["admin"], Global(Admin), true),
            (&["admin"], ns(Editor, "anything"), true),
            (&["editor"], Global(Admin), false),
            (&["viewer:demo"], Somewhere(Viewer), true),
            (&["viewer:demo"], Somewhere(Editor), false),
            (&[], Somewhere(Viewer), false),
        ];
        for (list, need, want) in table {
            assert_eq!(grants(list).allows(need), *want, "{list:?} {need:?}");
        }
    }

    #[test]
    fn a_token_is_limited_by_its_creators_current_grants() {
        // (token scope, creator's grants, effective)
        let table: &[(&[&str], &[&str], &[&str])] = &[
            (&["admin"], &["admin"], &["admin"]),
            (&["admin"], &["editor"], &["editor"]),
            (&["editor:demo"], &["viewer"], &["viewer:demo"]),
            (&["editor:demo"], &["admin"], &["editor:demo"]),
            (&["editor:demo"], &[], &[]),
            (&["editor:demo"], &["editor:other"], &[]),
            (&["editor"], &["editor:demo"], &["editor:demo"]),
            (
                &["viewer"],
                &["editor:demo", "admin:ops"],
                &["viewer:demo", "viewer:ops"],
            ),
        ];
        for (scope, creator, want) in table {
            assert_eq!(
                grants(scope).limited_by(&grants(creator)),
                grants(want),
                "{scope:?} under {creator:?}"
            );
        }
    }

    #[test]
    fn grants_serialize_as_strings() {
        let g = grants(&["viewer", "editor:demo"]);
        let json = serde_json::to_string(&g).expect("json");
        assert_eq!(json, r#"["viewer","editor:demo"]"#);
        let back: Grants = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, g);
    }
}
