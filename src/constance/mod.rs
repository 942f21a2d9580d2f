//! django-constance interoperability: `rtconfig import-constance` (definitions → schema file) and
//! the live mirror of `rtconfig admin --constance-mirror` (values, both ways).
//!
//! | module | holds |
//! |---|---|
//! | `codec` | constance 4.x's Redis value format, byte for byte: rtconfig value ↔ constance bytes |
//! | `adopt` | the mirror's pure decision per key: write, delete, adopt, record, report invalid |
//! | `mirror` | the I/O of `--constance-mirror`: passes over constance's keys under the relay leader |
//! | `import` | the pure mapping from `python -m rtconfig_client.export_constance` JSON to a schema file |
//! | `run` | the I/O edge: runs the exporter (or reads `--from-json`), writes the file, reports |

pub mod adopt;
pub mod codec;
pub mod import;
pub mod mirror;
pub mod run;
