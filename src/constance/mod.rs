//! django-constance interoperability: `rtconfig import-constance` (definitions → schema file).
//!
//! | module | holds |
//! |---|---|
//! | `codec` | constance 4.x's Redis value format, byte for byte: rtconfig value ↔ constance bytes |
//! | `import` | the pure mapping from `python -m rtconfig_client.export_constance` JSON to a schema file |
//! | `run` | the I/O edge: runs the exporter (or reads `--from-json`), writes the file, reports |

pub mod codec;
pub mod import;
pub mod run;
