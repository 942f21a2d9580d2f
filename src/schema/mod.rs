//! The served configs: which keys a namespace has, their types, defaults, groups and constraints.
//!
//! A namespace is one TOML file in the schema dir (`config/demo.toml`). Loading a file checks
//! everything at once and reports every problem with its file and key ([`SchemaProblem`]), so
//! `rtconfig check` can list them all. A loaded [`Schema`] is immutable and cheap to share.
//!
//! This module knows nothing of storage or HTTP: it parses, checks and describes.

pub mod compact;
mod value;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use regex::Regex;
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub(crate) use value::parse_duration;
pub use value::{is_mask, Sent, ValueError, DECIMAL_MAX_DIGITS};

/// The type of a config value. Names are the schema file's `type = "…"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    Bool,
    Int,
    Float,
    Decimal,
    String,
    Enum,
    Duration,
    Date,
    DateTime,
    Time,
    Json,
}

impl ValueType {
    pub const ALL: [ValueType; 11] = [
        ValueType::Bool,
        ValueType::Int,
        ValueType::Float,
        ValueType::Decimal,
        ValueType::String,
        ValueType::Enum,
        ValueType::Duration,
        ValueType::Date,
        ValueType::DateTime,
        ValueType::Time,
        ValueType::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Bool => "bool",
            ValueType::Int => "int",
            ValueType::Float => "float",
            ValueType::Decimal => "decimal",
            ValueType::String => "string",
            ValueType::Enum => "enum",
            ValueType::Duration => "duration",
            ValueType::Date => "date",
            ValueType::DateTime => "datetime",
            ValueType::Time => "time",
            ValueType::Json => "json",
        }
    }

    fn parse(s: &str) -> Option<ValueType> {
        ValueType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    fn allows(self, constraint: &str) -> bool {
        match constraint {
            "min" | "max" => matches!(
                self,
                ValueType::Int | ValueType::Float | ValueType::Decimal | ValueType::Duration
            ),
            "max_length" | "pattern" => self == ValueType::String,
            "choices" => self == ValueType::Enum,
            "max_bytes" => self == ValueType::Json,
            _ => false,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `min`/`max` bound, kept in the form the schema gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Int(i64),
    Float(f64),
    Decimal(Decimal),
    /// A duration bound, in seconds (written `"30s"` in the schema).
    Seconds(f64, String),
}

impl Bound {
    pub fn as_f64(&self) -> f64 {
        match self {
            Bound::Int(i) => *i as f64,
            Bound::Float(f) => *f,
            Bound::Decimal(d) => d.to_string().parse().unwrap_or(f64::NAN),
            Bound::Seconds(s, _) => *s,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Bound::Int(i) => Value::from(*i),
            Bound::Float(f) => Value::from(*f),
            Bound::Decimal(d) => Value::String(d.to_string()),
            Bound::Seconds(_, text) => Value::String(text.clone()),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Int(i) => write!(f, "{i}"),
            Bound::Float(x) => write!(f, "{x}"),
            Bound::Decimal(d) => write!(f, "{d}"),
            Bound::Seconds(_, text) => f.write_str(text),
        }
    }
}

/// What a key's value is checked against beyond its type: the schema's `min`, `max`,
/// `max_length`, `pattern`, `choices` and `max_bytes`. Keys with the same rules and type share
/// one (interned per load by [`RulesInterner`]): a namespace of 100,000 keys that all say
/// `max_length = 200` holds one, not 100,000 copies of ≈ 150 bytes.
#[derive(Debug, Default)]
pub struct Rules {
    pub min: Option<Bound>,
    pub max: Option<Bound>,
    pub max_length: Option<usize>,
    pub pattern: Option<Regex>,
    pub choices: Vec<String>,
    pub max_bytes: Option<usize>,
}

/// Hands out one shared [`Rules`] per distinct `(type, rules)` of a schema load.
#[derive(Default)]
pub(crate) struct RulesInterner {
    /// The last rules handed out: neighbouring keys usually have the same (no text to build).
    last: Option<(ValueType, Arc<Rules>)>,
    seen: FastMap<String, Arc<Rules>>,
}

impl Rules {
    fn same_as(&self, other: &Rules) -> bool {
        self.min == other.min
            && self.max == other.max
            && self.max_length == other.max_length
            && self.pattern.as_ref().map(Regex::as_str) == other.pattern.as_ref().map(Regex::as_str)
            && self.choices == other.choices
            && self.max_bytes == other.max_bytes
    }
}

impl RulesInterner {
    pub(crate) fn intern(&mut self, ty: ValueType, rules: Rules) -> Arc<Rules> {
        if let Some((last_ty, last)) = &self.last {
            if *last_ty == ty && last.same_as(&rules) {
                return last.clone();
            }
        }
        // `Debug` spells every field exactly (the bound's kind included, a pattern by its
        // source text), so equal text means equal rules.
        let text = format!(
            "{ty:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            rules.min,
            rules.max,
            rules.max_length,
            rules.pattern.as_ref().map(Regex::as_str),
            rules.choices,
            rules.max_bytes
        );
        let shared = self
            .seen
            .entry(text)
            .or_insert_with(|| Arc::new(rules))
            .clone();
        self.last = Some((ty, shared.clone()));
        shared
    }
}

/// A key's default as its canonical JSON: 16 bytes in the [`KeyDef`] where a `Value` is 72
/// (plus its strings), and copied as is into a snapshot entry at its default (no encoding per
/// key at a cold start). [`DefaultValue::value`] decodes it where a `Value` is needed (the
/// admin, the UI, the django-constance mirror); `serde_json`'s `float_roundtrip` makes that
/// exact.
#[derive(Clone, PartialEq, Eq)]
pub struct DefaultValue(Box<str>);

impl DefaultValue {
    pub fn new(value: &Value) -> DefaultValue {
        DefaultValue(value.to_string().into_boxed_str())
    }

    /// From JSON that `new` wrote (the compact schema keeps it as it was).
    pub(crate) fn from_json(json: &str) -> DefaultValue {
        DefaultValue(Box::from(json))
    }

    /// The default as JSON.
    pub fn json(&self) -> &str {
        &self.0
    }

    /// The default, decoded.
    pub fn value(&self) -> Value {
        // Written by `new` from a `Value`: it always decodes.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }
}

impl From<Value> for DefaultValue {
    fn from(value: Value) -> DefaultValue {
        DefaultValue::new(&value)
    }
}

impl fmt::Debug for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One config key: its type, default, group and constraints.
#[derive(Debug, Clone)]
pub struct KeyDef {
    /// Shared with the schema's index, its group's key list and every snapshot entry.
    pub name: Arc<str>,
    pub ty: ValueType,
    /// The default, in canonical form (it passed [`KeyDef::validate`]).
    pub default: DefaultValue,
    pub description: Box<str>,
    /// Shared by every key of the group.
    pub group: Arc<str>,
    /// Masked in the admin UI, API listings, history and logs (never on the sidecar read).
    pub secret: bool,
    /// Its constraints, shared with every key of the schema that has the same.
    pub rules: Arc<Rules>,
}

impl KeyDef {
    /// The constraints as JSON, for the admin API (`{"min":1,"max":100}`).
    pub fn constraints_json(&self) -> Value {
        let r = &*self.rules;
        let mut m = serde_json::Map::new();
        if let Some(b) = &r.min {
            m.insert("min".into(), b.to_json());
        }
        if let Some(b) = &r.max {
            m.insert("max".into(), b.to_json());
        }
        if let Some(n) = r.max_length {
            m.insert("max_length".into(), n.into());
        }
        if let Some(re) = &r.pattern {
            m.insert("pattern".into(), re.as_str().into());
        }
        if !r.choices.is_empty() {
            m.insert("choices".into(), r.choices.clone().into());
        }
        if let Some(n) = r.max_bytes {
            m.insert("max_bytes".into(), n.into());
        }
        Value::Object(m)
    }
}

/// A display group (fieldset). Every key belongs to exactly one.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// In display order; the same `Arc`s as the keys' [`KeyDef::name`].
    pub keys: Vec<Arc<str>>,
    /// `collapse = true`: a hint to show the group collapsed (django-constance fieldsets).
    pub collapse: bool,
}

/// One namespace's schema, as loaded from its file.
#[derive(Debug)]
pub struct Schema {
    pub namespace: String,
    pub description: String,
    /// `require_comment = true`: the admin refuses a changeset without a comment (422
    /// `comment_required`), and the UI asks for one.
    pub require_comment: bool,
    pub groups: Vec<Group>,
    /// Keys in display order (group order, then order within the group).
    keys: Vec<KeyDef>,
    index: Arc<KeyIndex>,
    /// sha256 of the file's bytes, hex; sidecars report it so the fleet view shows drift.
    pub hash: String,
    pub path: PathBuf,
}

impl Schema {
    pub fn key(&self, name: &str) -> Option<&KeyDef> {
        self.find(name).map(|(_, k)| k)
    }

    /// Where `name` is in display order (its index in [`Schema::keys`]).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.find(name).map(|(i, _)| i)
    }

    fn find(&self, name: &str) -> Option<(usize, &KeyDef)> {
        self.index
            .find(name, |i| self.keys.get(i).filter(|k| *k.name == *name))
    }

    /// Key name → position, shared (snapshots built from this schema keep it, not a copy).
    pub(crate) fn index(&self) -> &Arc<KeyIndex> {
        &self.index
    }

    /// Keys in display order.
    pub fn keys(&self) -> &[KeyDef] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Parses one schema file's text strictly (`rtconfig check`, the admin, `dev`): every
    /// unknown field is a problem. `file` names it in problems.
    pub fn parse(file: &Path, text: &str) -> Result<Schema, Vec<SchemaProblem>> {
        Schema::parse_with(file, text, Strictness::Strict).map(|(schema, _)| schema)
    }

    /// Parses one schema file's text: the schema and the warnings `strictness` made of
    /// problems (unknown top-level fields, for a sidecar), or every problem.
    pub fn parse_with(
        file: &Path,
        text: &str,
        strictness: Strictness,
    ) -> Result<(Schema, Vec<SchemaProblem>), Vec<SchemaProblem>> {
        let mut parser = Parser::new(file, strictness);
        let schema = parser.parse(text)?;
        Ok((schema, parser.warnings))
    }

    /// Builds a schema in code (tests, benches): `keys` are `(name, type, default)`, one group.
    /// Test-only (`test-support`): it panics on an invalid schema.
    #[cfg(any(test, feature = "test-support"))]
    pub fn from_keys(namespace: &str, keys: &[(&str, ValueType, Value)]) -> Schema {
        let mut text = format!("namespace = {namespace:?}\n[[group]]\nname = \"All\"\nkeys = [");
        for (name, _, _) in keys {
            text.push_str(&format!("{name:?},"));
        }
        text.push_str("]\n");
        for (name, ty, default) in keys {
            text.push_str(&format!(
                "[keys.{name:?}]\ntype = {:?}\ndefault = {}\n",
                ty.as_str(),
                json_to_toml_literal(default)
            ));
            if *ty == ValueType::Enum {
                text.push_str(&format!("choices = [{}]\n", json_to_toml_literal(default)));
            }
        }
        match Schema::parse(Path::new("<code>"), &text) {
            Ok(s) => s,
            Err(problems) => panic!("invalid schema built in code: {problems:?}"),
        }
    }
}

#[cfg(any(test, feature = "test-support"))]
fn json_to_toml_literal(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) | Value::Array(_) | Value::Null => {
            format!("{:?}", v.to_string())
        }
        other => other.to_string(),
    }
}

/// Every namespace of a schema dir, by name.
#[derive(Debug, Clone, Default)]
pub struct SchemaSet {
    namespaces: BTreeMap<String, Arc<Schema>>,
}

impl SchemaSet {
    /// Loads every `*.toml` in `dir` strictly. Reports every problem of every file at once.
    pub fn load_dir(dir: &Path) -> Result<SchemaSet, Vec<SchemaProblem>> {
        SchemaSet::load_dir_with(dir, Strictness::Strict).map(|(set, _)| set)
    }

    /// Loads every `*.toml` in `dir`: the set and the warnings (see [`Strictness`]), or every
    /// problem of every file at once.
    pub fn load_dir_with(
        dir: &Path,
        strictness: Strictness,
    ) -> Result<(SchemaSet, Vec<SchemaProblem>), Vec<SchemaProblem>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![SchemaProblem::file(
                dir,
                match e.kind() {
                    std::io::ErrorKind::NotFound => "the schema dir does not exist: pass --schema-dir with the directory of your namespace schema files (*.toml)".to_owned(),
                    _ => format!("cannot read the schema dir ({e}): check its permissions, or pass another --schema-dir"),
                },
            )]
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(vec![SchemaProblem::file(
                dir,
                "no *.toml schema files in this directory",
            )]);
        }
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let mut set = SchemaSet::default();
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for path in paths {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    problems.push(SchemaProblem::file(&path, format!("cannot read: {e}")));
                    continue;
                }
            };
            match Schema::parse_with(&path, &text, strictness) {
                Ok((schema, mut w)) => {
                    warnings.append(&mut w);
                    if let Some(first) = seen.get(&schema.namespace) {
                        problems.push(SchemaProblem::file(
                            &path,
                            format!(
                                "namespace {:?} is also defined in {}",
                                schema.namespace,
                                first.display()
                            ),
                        ));
                        continue;
                    }
                    seen.insert(schema.namespace.clone(), path.clone());
                    set.namespaces
                        .insert(schema.namespace.clone(), Arc::new(schema));
                }
                Err(mut p) => problems.append(&mut p),
            }
        }
        if problems.is_empty() {
            Ok((set, warnings))
        } else {
            Err(problems)
        }
    }

    pub fn from_schemas(schemas: impl IntoIterator<Item = Schema>) -> SchemaSet {
        SchemaSet {
            namespaces: schemas
                .into_iter()
                .map(|s| (s.namespace.clone(), Arc::new(s)))
                .collect(),
        }
    }

    pub fn get(&self, namespace: &str) -> Option<&Arc<Schema>> {
        self.namespaces.get(namespace)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Schema>> {
        self.namespaces.values()
    }

    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }
}

/// One thing wrong with a schema file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    pub file: PathBuf,
    pub key: Option<String>,
    pub reason: String,
}

impl SchemaProblem {
    fn file(file: &Path, reason: impl Into<String>) -> SchemaProblem {
        SchemaProblem {
            file: file.to_path_buf(),
            key: None,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "{}: key {k}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

/// `^[A-Za-z][A-Za-z0-9_.-]{0,127}$`
pub fn valid_key_name(name: &str) -> bool {
    // By hand rather than by regex: it runs once per key of every schema file loaded.
    let b = name.as_bytes();
    (1..=128).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Namespace names end up in Redis keys and URLs: `^[a-z0-9][a-z0-9_-]{0,62}$`.
pub fn valid_namespace_name(name: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[a-z0-9][a-z0-9_-]{0,62}$").expect("static regex"))
        .is_match(name)
}

/// Keys one namespace may hold: far more than any real one (a 100,000-key namespace is the
/// scale benchmarked), and well inside the `u32` positions a snapshot keeps per key.
pub const MAX_KEYS: usize = 1 << 24;
const _: () = assert!(MAX_KEYS < u32::MAX as usize);

const TOP_FIELDS: &[&str] = &[
    "namespace",
    "description",
    "require_comment",
    "group",
    "keys",
];

/// How strictly schema files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// `rtconfig check`, the admin and `dev`: every unknown field is a problem.
    Strict,
    /// A sidecar: an unknown *top-level* field is only a warning, so a rollout that adds a
    /// schema-level field (which only the admin acts on) never stops a sidecar that does not
    /// know it yet. Anything else — unknown fields of a key or a group included — stays a
    /// problem: those change what the sidecar serves.
    Sidecar,
}
const KEY_FIELDS: &[&str] = &[
    "type",
    "default",
    "description",
    "secret",
    "min",
    "max",
    "max_length",
    "pattern",
    "choices",
    "max_bytes",
];

struct Parser {
    file: PathBuf,
    strictness: Strictness,
    problems: Vec<SchemaProblem>,
    warnings: Vec<SchemaProblem>,
    rules: RulesInterner,
    /// [`MAX_KEYS`]; lower in tests.
    max_keys: usize,
}

impl Parser {
    fn new(file: &Path, strictness: Strictness) -> Parser {
        Parser {
            file: file.to_path_buf(),
            strictness,
            problems: Vec::new(),
            warnings: Vec::new(),
            rules: RulesInterner::default(),
            max_keys: MAX_KEYS,
        }
    }

    fn problem(&mut self, key: Option<&str>, reason: impl Into<String>) {
        self.problems.push(SchemaProblem {
            file: self.file.clone(),
            key: key.map(str::to_owned),
            reason: reason.into(),
        });
    }

    fn parse(&mut self, text: &str) -> Result<Schema, Vec<SchemaProblem>> {
        // The TOML parser's own borrowed tree (`DeTable`: strings point into `text`), read
        // straight into the schema's types: no owned `toml::Table` copy of the whole file in
        // between (what `text.parse::<toml::Table>()` and `toml::from_str` would also build).
        let doc = match DeTable::parse(text) {
            Ok(t) => t.into_inner(),
            Err(e) => {
                let reason = format!("invalid TOML: {}", e.message());
                let reason = match e.span() {
                    Some(span) => format!("line {}: {reason}", line_of(text, span.start)),
                    None => reason,
                };
                self.problem(None, reason);
                return Err(std::mem::take(&mut self.problems));
            }
        };
        for field in doc.keys() {
            let field: &str = field.get_ref();
            if !TOP_FIELDS.contains(&field) {
                let known = TOP_FIELDS.join(", ");
                match self.strictness {
                    Strictness::Strict => self.problem(
                        None,
                        format!("unknown top-level field {field:?} (known: {known})"),
                    ),
                    Strictness::Sidecar => self.warnings.push(SchemaProblem {
                        file: self.file.clone(),
                        key: None,
                        reason: format!(
                            "unknown top-level field {field:?} ignored (a newer schema than this sidecar knows?)"
                        ),
                    }),
                }
            }
        }
        let namespace = match get(&doc, "namespace") {
            Some(DeValue::String(s)) => {
                if !valid_namespace_name(s) {
                    self.problem(
                        None,
                        format!("namespace {s:?} must match ^[a-z0-9][a-z0-9_-]{{0,62}}$"),
                    );
                }
                s.to_string()
            }
            Some(_) => {
                self.problem(None, "namespace must be a string");
                String::new()
            }
            None => {
                self.problem(None, "missing namespace = \"…\"");
                String::new()
            }
        };
        let description = match get(&doc, "description") {
            Some(DeValue::String(s)) => s.to_string(),
            Some(_) => {
                self.problem(None, "description must be a string");
                String::new()
            }
            None => String::new(),
        };
        let require_comment = match get(&doc, "require_comment") {
            Some(DeValue::Boolean(b)) => *b,
            Some(_) => {
                self.problem(None, "require_comment must be true or false");
                false
            }
            None => false,
        };

        let groups = self.parse_groups(get(&doc, "group"));
        let group_names: Vec<Arc<str>> =
            groups.iter().map(|g| Arc::from(g.name.as_str())).collect();
        // Each listed key's slot in display order (its first listing) and its group (the last
        // one listing it: a key listed twice is a problem anyway).
        let listed: usize = groups.iter().map(|g| g.keys.len()).sum();
        let mut slot_of: FastMap<&str, (usize, usize)> =
            FastMap::with_capacity_and_hasher(listed, Default::default());
        for (gi, g) in groups.iter().enumerate() {
            for k in &g.keys {
                let next = slot_of.len();
                match slot_of.entry(&**k) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert((next, gi));
                    }
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        let other = &groups[o.get().1].name;
                        self.problem(
                            Some(k),
                            format!("listed in group {other:?} and in group {:?}", g.name),
                        );
                        o.get_mut().1 = gi;
                    }
                }
            }
        }

        if slot_of.len() > self.max_keys {
            self.problem(
                None,
                format!(
                    "{} keys listed: a namespace holds at most {} (split it into several namespaces)",
                    slot_of.len(),
                    self.max_keys
                ),
            );
            return Err(std::mem::take(&mut self.problems));
        }
        let mut defs: Vec<Option<KeyDef>> = Vec::new();
        defs.resize_with(slot_of.len(), || None);
        match get(&doc, "keys") {
            Some(DeValue::Table(keys)) => {
                for (name, def) in keys.iter() {
                    let name: &str = name.get_ref();
                    if !valid_key_name(name) {
                        self.problem(
                            Some(name),
                            "key name must match ^[A-Za-z][A-Za-z0-9_.-]{0,127}$",
                        );
                        continue;
                    }
                    let (slot, group) = match slot_of.get(name) {
                        Some(&(slot, gi)) => (Some(slot), group_names[gi].clone()),
                        None => {
                            self.problem(Some(name), "not listed in any [[group]]");
                            (None, Arc::from(""))
                        }
                    };
                    if let Some(def) = self.parse_key(text, name, def.get_ref(), group) {
                        if let Some(slot) = slot {
                            defs[slot] = Some(def);
                        }
                    }
                }
            }
            Some(_) => self.problem(None, "keys must be a table of [keys.NAME] tables"),
            None => self.problem(None, "no [keys.NAME] tables: a namespace needs keys"),
        }
        if let Some(DeValue::Table(keys)) = get(&doc, "keys") {
            for g in &groups {
                for k in &g.keys {
                    if !keys.contains_key(&**k) {
                        self.problem(
                            Some(k),
                            format!("group {:?} lists a key with no [keys.{k}] table", g.name),
                        );
                    }
                }
            }
        }

        if !self.problems.is_empty() {
            return Err(std::mem::take(&mut self.problems));
        }
        drop(slot_of);
        // Exact size: `flatten` gives `collect` no length, and a doubled buffer of 100,000
        // definitions would hold 30 % more than the schema.
        let mut keys: Vec<KeyDef> = Vec::with_capacity(defs.len());
        keys.extend(defs.into_iter().flatten());
        let mut groups = groups;
        share_names(&mut groups, &keys);
        Ok(Schema {
            namespace,
            description,
            require_comment,
            groups,
            index: Arc::new(key_index(&keys)),
            keys,
            hash: hex::encode(Sha256::digest(text.as_bytes())),
            path: self.file.clone(),
        })
    }

    fn parse_groups(&mut self, v: Option<&DeValue<'_>>) -> Vec<Group> {
        let Some(v) = v else {
            self.problem(None, "no [[group]]: every key must belong to a group");
            return Vec::new();
        };
        let Some(arr) = v.as_array() else {
            self.problem(None, "group must be an array of tables ([[group]])");
            return Vec::new();
        };
        let mut groups = Vec::new();
        let mut names = HashSet::new();
        for (i, g) in arr.iter().enumerate() {
            let Some(t) = g.get_ref().as_table() else {
                self.problem(None, format!("group #{} must be a table", i + 1));
                continue;
            };
            for field in t.keys() {
                let field: &str = field.get_ref();
                if field != "name" && field != "keys" && field != "collapse" {
                    self.problem(None, format!("group #{}: unknown field {field:?}", i + 1));
                }
            }
            let name = match get(t, "name").and_then(|n| n.as_str()) {
                Some(n) if !n.trim().is_empty() => n.to_owned(),
                _ => {
                    self.problem(None, format!("group #{} needs a non-empty name", i + 1));
                    continue;
                }
            };
            if !names.insert(name.clone()) {
                self.problem(None, format!("group {name:?} is defined twice"));
            }
            let mut keys = Vec::new();
            match get(t, "keys").and_then(|k| k.as_array()) {
                Some(list) => {
                    keys.reserve_exact(list.len());
                    for k in list.iter() {
                        match k.get_ref().as_str() {
                            Some(s) => keys.push(Arc::from(s)),
                            None => self.problem(
                                None,
                                format!(
                                    "group {name:?}: keys must be strings, got {}",
                                    de_to_toml(k.get_ref())
                                ),
                            ),
                        }
                    }
                }
                None => self.problem(None, format!("group {name:?} needs keys = [\"KEY\", …]")),
            }
            let collapse = match get(t, "collapse") {
                None => false,
                Some(DeValue::Boolean(b)) => *b,
                Some(other) => {
                    self.problem(
                        None,
                        format!(
                            "group {name:?}: collapse must be true or false, got {}",
                            de_to_toml(other)
                        ),
                    );
                    false
                }
            };
            groups.push(Group {
                name,
                keys,
                collapse,
            });
        }
        groups
    }

    fn parse_key(
        &mut self,
        text: &str,
        name: &str,
        def: &DeValue<'_>,
        group: Arc<str>,
    ) -> Option<KeyDef> {
        let Some(t) = def.as_table() else {
            self.problem(Some(name), "must be a table");
            return None;
        };
        let before = self.problems.len();
        for field in t.keys() {
            let field: &str = field.get_ref();
            if !KEY_FIELDS.contains(&field) {
                self.problem(Some(name), format!("unknown field {field:?}"));
            }
        }
        let ty = match get(t, "type") {
            Some(DeValue::String(s)) => match ValueType::parse(s) {
                Some(ty) => ty,
                None => {
                    let all: Vec<&str> = ValueType::ALL.iter().map(|t| t.as_str()).collect();
                    self.problem(
                        Some(name),
                        format!("unknown type {s:?} (one of {})", all.join(", ")),
                    );
                    return None;
                }
            },
            Some(_) => {
                self.problem(Some(name), "type must be a string");
                return None;
            }
            None => {
                self.problem(Some(name), "missing type");
                return None;
            }
        };
        for c in [
            "min",
            "max",
            "max_length",
            "pattern",
            "choices",
            "max_bytes",
        ] {
            if t.contains_key(c) && !ty.allows(c) {
                self.problem(Some(name), format!("{c} does not apply to type {ty}"));
            }
        }
        let description = match get(t, "description") {
            Some(DeValue::String(s)) => s.to_string(),
            Some(_) => {
                self.problem(Some(name), "description must be a string");
                String::new()
            }
            None => String::new(),
        };
        let secret = match get(t, "secret") {
            Some(DeValue::Boolean(b)) => *b,
            Some(_) => {
                self.problem(Some(name), "secret must be true or false");
                false
            }
            None => false,
        };
        let min = get(t, "min").and_then(|v| self.bound(name, "min", ty, v));
        let max = get(t, "max").and_then(|v| self.bound(name, "max", ty, v));
        if let (Some(lo), Some(hi)) = (&min, &max) {
            if lo.as_f64() > hi.as_f64() {
                self.problem(Some(name), format!("min {lo} is greater than max {hi}"));
            }
        }
        let max_length = get(t, "max_length").and_then(|v| self.count(name, "max_length", v));
        let max_bytes = get(t, "max_bytes").and_then(|v| self.count(name, "max_bytes", v));
        let pattern = match get(t, "pattern") {
            Some(DeValue::String(p)) => {
                match regex::RegexBuilder::new(p).size_limit(1 << 20).build() {
                    Ok(re) => Some(re),
                    Err(e) => {
                        self.problem(Some(name), format!("pattern is not a valid regex: {e}"));
                        None
                    }
                }
            }
            Some(_) => {
                self.problem(Some(name), "pattern must be a string");
                None
            }
            None => None,
        };
        let mut choices = Vec::new();
        match get(t, "choices") {
            Some(DeValue::Array(list)) => {
                for c in list.iter() {
                    match c.get_ref().as_str() {
                        Some(s) if !choices.iter().any(|x| x == s) => choices.push(s.to_owned()),
                        Some(s) => self.problem(Some(name), format!("choice {s:?} is repeated")),
                        None => self.problem(
                            Some(name),
                            format!("choices must be strings, got {}", de_to_toml(c.get_ref())),
                        ),
                    }
                }
                if list.is_empty() {
                    self.problem(Some(name), "choices must not be empty");
                }
            }
            Some(_) => self.problem(Some(name), "choices must be an array of strings"),
            None if ty == ValueType::Enum => {
                self.problem(Some(name), "type enum needs choices = [\"a\", \"b\", …]")
            }
            None => {}
        }
        if self.problems.len() > before {
            return None;
        }
        let mut def = KeyDef {
            name: Arc::from(name),
            ty,
            default: DefaultValue::new(&Value::Null),
            description: description.into_boxed_str(),
            group,
            secret,
            rules: self.rules.intern(
                ty,
                Rules {
                    min,
                    max,
                    max_length,
                    pattern,
                    choices,
                    max_bytes,
                },
            ),
        };
        let raw_default = match t.get("default") {
            Some(v) => match de_to_json(v.get_ref()) {
                Ok(v) => v,
                Err(number) => {
                    // `toml::Table` refused such a number while parsing; say the same.
                    self.problem(
                        None,
                        format!(
                            "line {}: invalid TOML: the number {number} does not fit in a \
                             64-bit integer or float",
                            line_of(text, v.span().start)
                        ),
                    );
                    return None;
                }
            },
            None => {
                self.problem(Some(name), "missing default");
                return None;
            }
        };
        let checked = match (&raw_default, ty) {
            // TOML has no null; a json default may be given as a JSON string literal.
            (Value::String(s), ValueType::Json) => match serde_json::from_str::<Value>(s) {
                Ok(v) => def.validate(&v),
                Err(_) => def.validate(&raw_default),
            },
            // Integers are fine where a float is wanted (`default = 300`).
            _ => def.validate(&raw_default),
        };
        match checked {
            Ok(v) if v.is_null() => {
                self.problem(Some(name), "default must not be null");
                None
            }
            Ok(v) => {
                def.default = DefaultValue::new(&v);
                Some(def)
            }
            Err(e) => {
                self.problem(
                    Some(name),
                    format!("default is invalid ({}): {}", e.rule, e.message),
                );
                None
            }
        }
    }

    fn bound(&mut self, key: &str, which: &str, ty: ValueType, v: &DeValue<'_>) -> Option<Bound> {
        let b = match (ty, v) {
            (ValueType::Int, DeValue::Integer(i)) => de_int(i).map(Bound::Int),
            (ValueType::Float, DeValue::Integer(i)) => de_int(i).map(|i| Bound::Float(i as f64)),
            (ValueType::Float, DeValue::Float(f)) => {
                de_float(f).filter(|f| f.is_finite()).map(Bound::Float)
            }
            (ValueType::Decimal, DeValue::Integer(i)) => {
                de_int(i).map(|i| Bound::Decimal(i.into()))
            }
            (ValueType::Decimal, DeValue::String(s)) => {
                value::parse_decimal(s).ok().map(Bound::Decimal)
            }
            (ValueType::Duration, DeValue::String(s)) => {
                value::parse_duration(s).map(|d| Bound::Seconds(d.as_secs_f64(), s.to_string()))
            }
            _ => None,
        };
        if b.is_none() && ty.allows(which) {
            let want = match ty {
                ValueType::Int => "an integer",
                ValueType::Float => "a number",
                ValueType::Decimal => "a decimal string or an integer",
                _ => "a duration string such as \"30s\"",
            };
            self.problem(Some(key), format!("{which} must be {want} for type {ty}"));
        }
        b
    }

    fn count(&mut self, key: &str, which: &str, v: &DeValue<'_>) -> Option<usize> {
        match v.as_integer().and_then(de_int) {
            Some(n) if n > 0 => usize::try_from(n).ok(),
            _ => {
                self.problem(Some(key), format!("{which} must be a positive integer"));
                None
            }
        }
    }
}

type DeValue<'i> = toml::de::DeValue<'i>;
type DeTable<'i> = toml::de::DeTable<'i>;
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Key name → its index in display order. Built once per schema and shared with every
/// snapshot built from it (`snapshot::Snapshot`).
///
/// A hash table of positions only (`u32`, ≈ 6.5 bytes per key at 100k keys with the table's
/// control bytes; a map of `(name, position)` was ≈ 33): a lookup compares the name it is
/// given with the name at each candidate position, which the caller reads from what it
/// indexes (the schema's keys, a snapshot's entries), so the table holds no name of its own.
/// foldhash: a fixed table of names from the operator's own file, so SipHash's DoS resistance
/// buys nothing here.
pub(crate) struct KeyIndex {
    table: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl KeyIndex {
    /// The index of `len` names in display order, `name_at(i)` the `i`-th.
    pub(crate) fn new<'a>(len: usize, name_at: impl Fn(usize) -> &'a str) -> KeyIndex {
        let hasher = foldhash::fast::RandomState::default();
        let mut table = hashbrown::HashTable::with_capacity(len);
        for i in 0..len {
            let slot = u32::try_from(i).unwrap_or(u32::MAX);
            table.insert_unique(hasher.hash_one(name_at(i)), slot, |&s| {
                hasher.hash_one(name_at(s as usize))
            });
        }
        KeyIndex { table, hasher }
    }

    /// The position of `name` with what `at` gives for it. `at(i)` is asked for each candidate
    /// position `i` and must give `Some` exactly when the name at `i` is `name`.
    pub(crate) fn find<T>(
        &self,
        name: &str,
        mut at: impl FnMut(usize) -> Option<T>,
    ) -> Option<(usize, T)> {
        let mut hit = None;
        self.table.find(self.hasher.hash_one(name), |&slot| {
            let slot = slot as usize;
            match at(slot) {
                Some(t) => {
                    hit = Some((slot, t));
                    true
                }
                None => false,
            }
        })?;
        hit
    }
}

impl fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyIndex")
            .field("len", &self.table.len())
            .finish()
    }
}

/// The index of `keys` (in display order).
pub(crate) fn key_index(keys: &[KeyDef]) -> KeyIndex {
    KeyIndex::new(keys.len(), |i| &keys[i].name)
}

/// Points each group's key list at the keys' own names (`keys` in display order: group by
/// group, each group's keys in its listed order), so a name is allocated once per schema.
pub(crate) fn share_names(groups: &mut [Group], keys: &[KeyDef]) {
    let mut rest = keys;
    for g in groups {
        let (mine, after) = rest.split_at(g.keys.len().min(rest.len()));
        if mine.iter().zip(&g.keys).all(|(k, n)| k.name == *n) {
            g.keys = mine.iter().map(|k| k.name.clone()).collect();
        }
        rest = after;
    }
}

/// A field of a parsed TOML table.
fn get<'a, 'i>(t: &'a DeTable<'i>, name: &str) -> Option<&'a DeValue<'i>> {
    t.get(name).map(|v| v.get_ref())
}

/// The 1-based line of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].lines().count().max(1)
}

fn de_int(i: &toml::de::DeInteger<'_>) -> Option<i64> {
    i64::from_str_radix(i.as_str(), i.radix()).ok()
}

/// As `toml` reads a float: an infinity only where the text says `inf`.
fn de_float(f: &toml::de::DeFloat<'_>) -> Option<f64> {
    let x: f64 = f.as_str().parse().ok()?;
    (!x.is_infinite() || f.as_str().contains("inf")).then_some(x)
}

/// A parsed TOML value as JSON (a key's default); `Err` with the number's text when a number
/// does not fit in an `i64` or `f64` (which `toml::Value` refuses too).
fn de_to_json(v: &DeValue<'_>) -> Result<Value, String> {
    Ok(match v {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => Value::from(de_int(i).ok_or_else(|| i.to_string())?),
        DeValue::Float(f) => {
            serde_json::Number::from_f64(de_float(f).ok_or_else(|| f.to_string())?)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(a) => Value::Array(
            a.iter()
                .map(|v| de_to_json(v.get_ref()))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Ok((k.get_ref().to_string(), de_to_json(v.get_ref())?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

/// A parsed TOML value as `toml::Value`, for showing it in a problem (`got 1`, `got [1, 2]`):
/// only on the error path.
fn de_to_toml(v: &DeValue<'_>) -> toml::Value {
    match v {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(i) => match de_int(i) {
            Some(n) => toml::Value::Integer(n),
            None => toml::Value::String(i.to_string()),
        },
        DeValue::Float(f) => match de_float(f) {
            Some(x) => toml::Value::Float(x),
            None => toml::Value::String(f.to_string()),
        },
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(a) => {
            toml::Value::Array(a.iter().map(|v| de_to_toml(v.get_ref())).collect())
        }
        DeValue::Table(t) => toml::Value::Table(
            t.iter()
                .map(|(k, v)| (k.get_ref().to_string(), de_to_toml(v.get_ref())))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
