//! The settings read once at start-up, and what a reload that changes them says.
//!
//! Everything else in [`Config`] is reloadable (routes, credentials, identity, limits
//! other than `max_connections`, timeouts, `default`, `connect` pages' keys and TTL).
//! These are bound at start-up to listeners, files, clients or tasks that outlive one
//! config, so a reload keeps the running value and logs a warning naming the key; the
//! README and `docs/operate.md` list the same set as [`STARTUP_SETTINGS`].

use super::Config;

/// The start-up settings, by YAML key.
pub const STARTUP_SETTINGS: &[&str] = &[
    "listen",
    "admin_listen",
    "connect.listen",
    "audit.file",
    "vault",
    "limits.max_connections",
    "telemetry",
];

/// The start-up settings `new` changes from `old`, by YAML key, in the order of
/// [`STARTUP_SETTINGS`].
pub fn startup_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    // Debug forms compare the values as validated; they hold secret references
    // (`{env: NAME}`), never a secret.
    let debug = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let differs = |key: &str| match key {
        "listen" => old.listen != new.listen,
        "admin_listen" => old.admin_listen != new.admin_listen,
        "connect.listen" => {
            old.connect.as_ref().and_then(|c| c.listen)
                != new.connect.as_ref().and_then(|c| c.listen)
        }
        "audit.file" => old.audit_file != new.audit_file,
        "vault" => debug(&old.vault) != debug(&new.vault),
        "limits.max_connections" => old.limits.max_connections != new.limits.max_connections,
        "telemetry" => debug(&old.telemetry) != debug(&new.telemetry),
        _ => false,
    };
    STARTUP_SETTINGS
        .iter()
        .copied()
        .filter(|k| differs(k))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn load(extra: &str) -> Config {
        load_on("127.0.0.1:15080", extra)
    }

    fn load_on(listen: &str, extra: &str) -> Config {
        let yaml = format!(
            "version: 1\nagent: a\nlisten: {listen}\nadmin_listen: 127.0.0.1:15090\n{extra}routes:\n  - {{name: open, match: {{host: open.test}}, auth: passthrough}}\n"
        );
        super::super::from_str(&yaml, Path::new("t.yaml"), Path::new("/tmp"))
            .unwrap_or_else(|e| panic!("fixture invalid: {e:?}"))
    }

    #[test]
    fn names_each_changed_startup_setting_and_nothing_reloadable() {
        let base = load("");
        assert!(startup_changes(&base, &load("")).is_empty());
        assert!(
            startup_changes(&base, &load("default: passthrough\n")).is_empty(),
            "`default` is reloadable"
        );
        let changed = load(
            "audit: {file: /tmp/a.jsonl}\nlimits: {max_connections: 7}\nvault: {address: http://127.0.0.1:8200, auth: {method: token, token_env: VT}}\n",
        );
        assert_eq!(
            startup_changes(&base, &changed),
            ["audit.file", "vault", "limits.max_connections"]
        );
        let moved = load_on("127.0.0.1:15081", "");
        assert_eq!(startup_changes(&base, &moved), ["listen"]);
    }
}
