//! `rtconfig import-constance`: the I/O edge around [`super::import`].
//!
//! Exit codes: 0 every key imported; 2 the schema was written but some fields are unsupported
//! (listed on stderr, one line each); 64 the input could not be read (Python/Django failed, bad
//! JSON, bad flags); 73 the output file could not be written.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use super::import::{map_export, Export};

/// The exporter, the same file the Python package ships as `rtconfig_client.export_constance`.
const EXPORTER: &str = include_str!("../../clients/python/src/rtconfig_client/export_constance.py");

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot run {python} (--python): {source}")]
    Spawn {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the exporter failed under {python} (check --project-dir and --settings): {stderr}")]
    Exporter { python: String, stderr: String },
    #[error("cannot read {path} (--from-json): {source}")]
    ReadJson {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the constance export is not the JSON export_constance prints ({origin}): {source}")]
    BadJson {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("--from-json or --settings (DJANGO_SETTINGS_MODULE) is needed")]
    NoInput,
}

/// Where the definitions come from.
pub enum Source<'a> {
    Json(&'a Path),
    Django {
        python: &'a str,
        project_dir: &'a Path,
        settings: &'a str,
    },
}

/// Read the export: run the exporter inside the Django project, or read a saved JSON file.
pub fn read_export(source: &Source<'_>) -> Result<Export, ImportError> {
    let (text, origin) = match source {
        Source::Json(path) => (
            std::fs::read_to_string(path).map_err(|source| ImportError::ReadJson {
                path: path.to_path_buf(),
                source,
            })?,
            path.display().to_string(),
        ),
        Source::Django {
            python,
            project_dir,
            settings,
        } => {
            let pythonpath = match std::env::var_os("PYTHONPATH") {
                Some(p) if !p.is_empty() => {
                    let mut v = project_dir.as_os_str().to_owned();
                    v.push(":");
                    v.push(p);
                    v
                }
                _ => project_dir.as_os_str().to_owned(),
            };
            let out = Command::new(python)
                .arg("-c")
                .arg(EXPORTER)
                .current_dir(project_dir)
                .env("DJANGO_SETTINGS_MODULE", settings)
                .env("PYTHONPATH", pythonpath)
                .output()
                .map_err(|source| ImportError::Spawn {
                    python: (*python).to_owned(),
                    source,
                })?;
            if !out.status.success() {
                return Err(ImportError::Exporter {
                    python: (*python).to_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                });
            }
            (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                format!("{python} in {}", project_dir.display()),
            )
        }
    };
    serde_json::from_str(&text).map_err(|source| ImportError::BadJson { origin, source })
}

/// The subcommand: read, map, write `out` (`-` = stdout), report on stderr.
pub fn import_constance(source: &Source<'_>, namespace: &str, out: &Path) -> ExitCode {
    let export = match read_export(source) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rtconfig import-constance: {}", crate::telemetry::Chain(&e));
            return ExitCode::from(64);
        }
    };
    let mapped = map_export(&export, namespace);
    if out == Path::new("-") {
        print!("{}", mapped.toml);
    } else if let Err(e) = std::fs::write(out, &mapped.toml) {
        eprintln!(
            "rtconfig import-constance: cannot write {} (--out): {e}",
            out.display()
        );
        return ExitCode::from(73);
    }
    for n in &mapped.notes {
        eprintln!("note: {n}");
    }
    for u in &mapped.unsupported {
        eprintln!("unsupported: {}: {}", u.key, u.reason);
    }
    eprintln!(
        "imported {} key(s) into namespace {namespace}; {} unsupported",
        mapped.keys,
        mapped.unsupported.len()
    );
    if mapped.unsupported.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
