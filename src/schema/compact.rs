//! The sidecar's compact schema: its namespace's loaded [`Schema`], saved next to the disk
//! snapshot (`<snapshot-path>.schema`) so that a cold start does not parse the TOML again.
//!
//! Loading a schema dir is a pure function of the bytes of its `*.toml` files, the
//! [`Strictness`] and this binary's rules. The file holds its result (the namespace's keys in
//! display order with their canonical defaults and constraints, its groups, the warnings) under
//! a fingerprint of exactly those inputs: sha256 over every `*.toml` file's name and bytes, the
//! strictness, the format and the crate version. A cold start reads and hashes the schema
//! files (it has to read them anyway), and takes the compact form only when the fingerprint is
//! the same, so it gets exactly what a full parse would give; anything else — another byte in
//! any file, a file more or less, another rtconfig version, a damaged or missing compact file —
//! is a full load ([`SchemaSet::load_dir_with`], every problem reported as before), which then
//! writes a new compact file. The TOML parse of a 100,000-key file (9 MB) takes > 1 s and peaks
//! near 280 MiB; the compact form loads in a fraction of that and allocates little more than
//! the result.
//!
//! Format: one header line `rtconfig-schema 1 <fingerprint hex> <crc32 of the body, hex>\n`,
//! then a JSON body. Written like the disk snapshot (tmp + fsync + rename, mode 0600).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{
    key_index, Bound, DefaultValue, Group, KeyDef, Rules, RulesInterner, Schema, SchemaProblem,
    SchemaSet, Strictness,
};
use super::{value, ValueType};

const MAGIC: &str = "rtconfig-schema 1";

/// Where the compact schema of a disk snapshot at `snapshot_path` lives.
pub fn compact_path(snapshot_path: &Path) -> PathBuf {
    let mut name = snapshot_path.as_os_str().to_owned();
    name.push(".schema");
    PathBuf::from(name)
}

/// How [`load_namespace`] got the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// From the compact file (the schema files are byte for byte what it was made from).
    Compact,
    /// Parsed from the TOML files; the compact file is (re)written.
    Parsed,
}

/// A loaded namespace: its schema, the load's warnings, and how it was loaded.
pub type Found = (Arc<Schema>, Vec<SchemaProblem>, Loaded);

/// What a sidecar loads: `namespace`'s schema from `dir`, through the compact file at
/// `compact` (see the module docs). The warnings are those of the full load. `Ok(None)` when
/// the dir loads but has no such namespace.
pub fn load_namespace(
    dir: &Path,
    strictness: Strictness,
    namespace: &str,
    compact: &Path,
) -> Result<Option<Found>, Vec<SchemaProblem>> {
    let fingerprint = fingerprint(dir, strictness);
    if let Some(fp) = &fingerprint {
        match read(compact, fp, dir) {
            Ok(Some((schema, warnings))) if schema.namespace == namespace => {
                return Ok(Some((Arc::new(schema), warnings, Loaded::Compact)));
            }
            Ok(_) => {}
            Err(reason) => {
                tracing::warn!(file = %compact.display(), %reason, "compact schema not used: parsing the schema files")
            }
        }
    }
    let (set, warnings) = SchemaSet::load_dir_with(dir, strictness)?;
    let Some(schema) = set.get(namespace).cloned() else {
        return Ok(None);
    };
    if let Some(fp) = fingerprint {
        if let Err(e) = write(compact, &fp, &schema, &warnings) {
            tracing::warn!(file = %compact.display(), error = %e, "cannot write the compact schema (the next cold start parses the schema files again)");
        }
    }
    Ok(Some((schema, warnings, Loaded::Parsed)))
}

/// sha256 of what loading `dir` depends on; `None` when a file cannot be read (the full load
/// then reports it).
fn fingerprint(dir: &Path, strictness: Strictness) -> Option<String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut h = Sha256::new();
    h.update(MAGIC.as_bytes());
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update([0, strictness as u8]);
    for p in &paths {
        let bytes = std::fs::read(p).ok()?;
        let name = p.file_name()?.as_encoded_bytes();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Some(hex::encode(h.finalize()))
}

#[derive(Serialize, Deserialize)]
struct Body<'a> {
    namespace: String,
    /// The namespace's file, its name within the dir.
    file: String,
    description: String,
    require_comment: bool,
    hash: String,
    /// Groups in order; each has the next `len` keys.
    groups: Vec<CompactGroup>,
    /// Names and types borrow from the file's bytes: a load allocates only what the schema
    /// keeps (each name once, as the `Arc<str>` every part shares).
    #[serde(borrow)]
    keys: Vec<CompactKey<'a>>,
    /// `(file name, reason)` of each warning of the full load.
    warnings: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct CompactGroup {
    name: String,
    collapse: bool,
    len: usize,
}

#[derive(Serialize, Deserialize)]
struct CompactKey<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    ty: Cow<'a, str>,
    /// The default's canonical JSON, kept as it is (no decode and encode per key).
    #[serde(borrow)]
    default: &'a RawValue,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    secret: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    min: Option<CompactBound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<CompactBound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    choices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_bytes: Option<usize>,
}

#[derive(Serialize, Deserialize)]
enum CompactBound {
    Int(i64),
    Float(f64),
    Decimal(String),
    Seconds(f64, String),
}

impl From<&Bound> for CompactBound {
    fn from(b: &Bound) -> CompactBound {
        match b {
            Bound::Int(i) => CompactBound::Int(*i),
            Bound::Float(f) => CompactBound::Float(*f),
            Bound::Decimal(d) => CompactBound::Decimal(d.to_string()),
            Bound::Seconds(s, text) => CompactBound::Seconds(*s, text.clone()),
        }
    }
}

impl CompactBound {
    fn into_bound(self) -> Result<Bound, String> {
        Ok(match self {
            CompactBound::Int(i) => Bound::Int(i),
            CompactBound::Float(f) => Bound::Float(f),
            CompactBound::Decimal(d) => Bound::Decimal(
                value::parse_decimal(&d).map_err(|_| format!("bad decimal bound {d:?}"))?,
            ),
            CompactBound::Seconds(s, text) => Bound::Seconds(s, text),
        })
    }
}

fn write(
    path: &Path,
    fingerprint: &str,
    schema: &Schema,
    warnings: &[SchemaProblem],
) -> std::io::Result<()> {
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let body = Body {
        namespace: schema.namespace.clone(),
        file: name_of(&schema.path),
        description: schema.description.clone(),
        require_comment: schema.require_comment,
        hash: schema.hash.clone(),
        groups: schema
            .groups
            .iter()
            .map(|g| CompactGroup {
                name: g.name.clone(),
                collapse: g.collapse,
                len: g.keys.len(),
            })
            .collect(),
        keys: schema
            .keys
            .iter()
            .map(|k| -> std::io::Result<CompactKey<'_>> {
                Ok(CompactKey {
                    name: Cow::Borrowed(&*k.name),
                    ty: Cow::Borrowed(k.ty.as_str()),
                    // The schema's own canonical JSON of it, borrowed.
                    default: serde_json::from_str(k.default.json())
                        .map_err(std::io::Error::other)?,
                    description: k.description.to_string(),
                    secret: k.secret,
                    min: k.rules.min.as_ref().map(CompactBound::from),
                    max: k.rules.max.as_ref().map(CompactBound::from),
                    max_length: k.rules.max_length,
                    pattern: k.rules.pattern.as_ref().map(|re| re.as_str().to_owned()),
                    choices: k.rules.choices.clone(),
                    max_bytes: k.rules.max_bytes,
                })
            })
            .collect::<std::io::Result<_>>()?,
        warnings: warnings
            .iter()
            .map(|w| (name_of(&w.file), w.reason.clone()))
            .collect(),
    };
    let json = serde_json::to_vec(&body).map_err(std::io::Error::other)?;
    let header = format!("{MAGIC} {fingerprint} {:08x}\n", crc32fast::hash(&json));
    crate::private_file::write(path, &[header.as_bytes(), &json])
}

/// The compact schema at `path` when it was made from exactly `fingerprint`; `Ok(None)` when
/// there is none or it is another fingerprint's, `Err` when it is damaged.
fn read(
    path: &Path,
    fingerprint: &str,
    dir: &Path,
) -> Result<Option<(Schema, Vec<SchemaProblem>)>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| "header is not UTF-8")?;
    let mut parts = header.rsplitn(3, ' ');
    let (crc, fp, magic) = (parts.next(), parts.next(), parts.next());
    if magic != Some(MAGIC) {
        return Err(format!("unknown header {header:?}"));
    }
    if fp != Some(fingerprint) {
        return Ok(None);
    }
    let body = &bytes[nl + 1..];
    if crc != Some(format!("{:08x}", crc32fast::hash(body)).as_str()) {
        return Err("checksum mismatch".into());
    }
    let body: Body = serde_json::from_slice(body).map_err(|e| format!("bad body: {e}"))?;
    let file = dir.join(&body.file);
    let mut keys = Vec::with_capacity(body.keys.len());
    let mut groups = Vec::with_capacity(body.groups.len());
    let mut compact_keys = body.keys.into_iter();
    let mut interner = RulesInterner::default();
    for g in body.groups {
        let group: Arc<str> = Arc::from(g.name.as_str());
        let mut names = Vec::with_capacity(g.len);
        for k in compact_keys.by_ref().take(g.len) {
            let ty = ValueType::parse(&k.ty).ok_or_else(|| format!("unknown type {:?}", k.ty))?;
            let pattern = match k.pattern {
                Some(p) => Some(
                    regex::RegexBuilder::new(&p)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| format!("bad pattern: {e}"))?,
                ),
                None => None,
            };
            let name: Arc<str> = Arc::from(&*k.name);
            names.push(name.clone());
            keys.push(KeyDef {
                name,
                ty,
                default: DefaultValue::from_json(k.default.get()),
                description: k.description.into_boxed_str(),
                group: group.clone(),
                secret: k.secret,
                rules: interner.intern(
                    ty,
                    Rules {
                        min: k.min.map(CompactBound::into_bound).transpose()?,
                        max: k.max.map(CompactBound::into_bound).transpose()?,
                        max_length: k.max_length,
                        pattern,
                        choices: k.choices,
                        max_bytes: k.max_bytes,
                    },
                ),
            });
        }
        if names.len() != g.len {
            return Err("fewer keys than its groups list".into());
        }
        groups.push(Group {
            name: g.name,
            keys: names,
            collapse: g.collapse,
        });
    }
    if compact_keys.next().is_some() {
        return Err("more keys than its groups list".into());
    }
    let index = key_index(&keys);
    let warnings = body
        .warnings
        .into_iter()
        .map(|(f, reason)| SchemaProblem {
            file: dir.join(f),
            key: None,
            reason,
        })
        .collect();
    Ok(Some((
        Schema {
            namespace: body.namespace,
            description: body.description,
            require_comment: body.require_comment,
            groups,
            keys,
            index: Arc::new(index),
            hash: body.hash,
            path: file,
        },
        warnings,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_schema(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).expect("write schema");
    }

    /// Every observable part of a schema, for comparing a compact load with a parse.
    fn describe(s: &Schema) -> String {
        let keys: Vec<String> = s
            .keys()
            .iter()
            .map(|k| {
                format!(
                    "{} {} {} {:?} {} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                    k.name,
                    k.ty,
                    k.default.json(),
                    k.description,
                    k.group,
                    k.secret,
                    k.rules.min,
                    k.rules.max,
                    k.rules.max_length,
                    k.rules.pattern.as_ref().map(|r| r.as_str()),
                    k.rules.choices,
                    k.rules.max_bytes,
                    s.position(&k.name)
                )
            })
            .collect();
        let groups: Vec<String> = s
            .groups
            .iter()
            .map(|g| format!("{} {:?} {}", g.name, g.keys, g.collapse))
            .collect();
        format!(
            "{} {:?} {} {} {} {:?}\n{}\n{}",
            s.namespace,
            s.description,
            s.require_comment,
            s.hash,
            s.path.display(),
            s.len(),
            groups.join("\n"),
            keys.join("\n")
        )
    }

    const SCHEMA: &str = r#"namespace = "shop"
description = "a shop"
require_comment = true
rollout_hint = "newer"

[[group]]
name = "General"
keys = ["NAME", "LIMIT", "RATE", "PRICE", "TIMEOUT"]

[[group]]
name = "Other"
keys = ["MODE", "DOC", "TOKEN"]
collapse = true

[keys.NAME]
type = "string"
default = "x"
description = "the name"
max_length = 20
pattern = "^[a-z]+$"

[keys.LIMIT]
type = "int"
default = 5
min = 1
max = 10

[keys.RATE]
type = "float"
default = 300
min = 0.5

[keys.PRICE]
type = "decimal"
default = "12.50"
min = "0.10"
max = 100

[keys.TIMEOUT]
type = "duration"
default = "30s"
max = "1h"

[keys.MODE]
type = "enum"
default = "a"
choices = ["a", "b"]

[keys.DOC]
type = "json"
default = '{"a": [1, 2]}'
max_bytes = 100

[keys.TOKEN]
type = "string"
default = "s"
secret = true
"#;

    #[test]
    fn a_compact_load_gives_exactly_what_the_parse_gave_and_any_change_reparses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let schemas = dir.path().join("schemas");
        std::fs::create_dir(&schemas).expect("mkdir");
        write_schema(&schemas, "shop.toml", SCHEMA);
        write_schema(
            &schemas,
            "other.toml",
            "namespace = \"other\"\n[[group]]\nname = \"A\"\nkeys = [\"K\"]\n[keys.K]\ntype = \"bool\"\ndefault = true\n",
        );
        let compact = compact_path(&dir.path().join("sidecar.snapshot"));
        let load = || {
            load_namespace(&schemas, Strictness::Sidecar, "shop", &compact)
                .expect("loads")
                .expect("has shop")
        };

        let (parsed, parsed_warnings, how) = load();
        assert_eq!(how, Loaded::Parsed);
        assert!(compact.exists());
        assert_eq!(parsed_warnings.len(), 1, "{parsed_warnings:?}");
        let (cached, cached_warnings, how) = load();
        assert_eq!(how, Loaded::Compact);
        assert_eq!(describe(&parsed), describe(&cached));
        assert_eq!(parsed_warnings, cached_warnings);
        // The same values validate the same way under both.
        for (key, v) in [
            ("LIMIT", "11"),
            ("NAME", "Abc"),
            ("PRICE", "0.05"),
            ("TIMEOUT", "2h"),
        ] {
            let a = parsed.key(key).expect("key").parse_text(v);
            let b = cached.key(key).expect("key").parse_text(v);
            assert!(a.is_err(), "{key}={v}");
            assert_eq!(a, b);
        }

        // One more byte in another namespace's file: parsed again.
        write_schema(
            &schemas,
            "other.toml",
            "namespace = \"other\"\n[[group]]\nname = \"A\"\nkeys = [\"K\"]\n[keys.K]\ntype = \"bool\"\ndefault = false\n",
        );
        assert_eq!(load().2, Loaded::Parsed);
        assert_eq!(load().2, Loaded::Compact);

        // A broken schema file is reported as before, whatever the compact file says.
        write_schema(&schemas, "other.toml", "namespace = \"other\"\n");
        let problems = load_namespace(&schemas, Strictness::Sidecar, "shop", &compact)
            .expect_err("other.toml is invalid");
        assert!(
            problems.iter().any(|p| p.file.ends_with("other.toml")),
            "{problems:?}"
        );
        std::fs::remove_file(schemas.join("other.toml")).expect("rm");

        // A damaged compact file is never used.
        assert_eq!(load().2, Loaded::Parsed);
        let mut bytes = std::fs::read(&compact).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&compact, &bytes).expect("write");
        assert_eq!(load().2, Loaded::Parsed);
        assert_eq!(describe(&load().0), describe(&parsed));
    }

    #[test]
    fn a_namespace_the_dir_does_not_have_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_schema(dir.path(), "shop.toml", SCHEMA);
        let compact = dir.path().join("x.schema");
        let got = load_namespace(dir.path(), Strictness::Sidecar, "nope", &compact).expect("loads");
        assert!(got.is_none());
    }
}
