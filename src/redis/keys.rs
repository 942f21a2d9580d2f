//! Every Redis key name rtconfig uses, built here and nowhere else (DESIGN §4).
//!
//! The hash tag `{ns}` keeps one namespace's keys in one Redis Cluster slot, so the Lua scripts
//! that touch several of them stay atomic on a cluster too.

/// The keys of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    /// hash: `cluster_id`, `epoch`, `version`, `complete`, `count`, `generation`, `term`,
    /// `relay_at`, `relay_interval_ms`, `schema_hash`
    pub meta: String,
    /// hash: key → `{"value": …, "version": v}`
    pub items: String,
    /// stream: entry id `<version>-0`, fields `epoch`, `changes`
    pub log: String,
    /// Pub/Sub channel: `"<epoch>:<version>"`
    pub changes: String,
    /// hash: sidecar instance id → heartbeat JSON
    pub sidecars: String,
    /// Rebuild targets, renamed over `items` and `log` in one atomic step.
    pub items_tmp: String,
    pub log_tmp: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Keys {
        let base = format!("rtconfig:{{{namespace}}}");
        Keys {
            meta: format!("{base}:meta"),
            items: format!("{base}:items"),
            log: format!("{base}:log"),
            changes: format!("{base}:changes"),
            sidecars: format!("{base}:sidecars"),
            items_tmp: format!("{base}:items:tmp"),
            log_tmp: format!("{base}:log:tmp"),
        }
    }

    /// The ACL key pattern of a namespace (for the sidecar ACL line of docs/OPERATIONS.md).
    pub fn pattern(namespace: &str) -> String {
        format!("rtconfig:{{{namespace}}}:*")
    }
}

/// hash: constance key → what the django-constance mirror last wrote to or saw in it
/// (`constance::adopt::Seen`), kept in constance's Redis beside its keys.
pub fn constance_record(namespace: &str) -> String {
    format!("rtconfig:{{{namespace}}}:constance")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_design_layout_with_a_hash_tag() {
        let k = Keys::new("demo");
        assert_eq!(k.meta, "rtconfig:{demo}:meta");
        assert_eq!(k.items, "rtconfig:{demo}:items");
        assert_eq!(k.log, "rtconfig:{demo}:log");
        assert_eq!(k.changes, "rtconfig:{demo}:changes");
        assert_eq!(k.sidecars, "rtconfig:{demo}:sidecars");
        assert_eq!(Keys::pattern("demo"), "rtconfig:{demo}:*");
        assert_eq!(constance_record("demo"), "rtconfig:{demo}:constance");
    }
}
