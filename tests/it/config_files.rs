//! Every sidekey config shipped in `config/` and `deploy/` must validate, so an
//! example in the repository can never rot.

use std::path::{Path, PathBuf};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// A sidekey config is a YAML file whose top level has `version:` and `routes:`
/// (Kubernetes manifests in deploy/ are checked by their own test).
fn is_sidekey_config(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("version:"))
        && text.lines().any(|l| l.starts_with("routes:"))
}

#[test]
fn every_shipped_config_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    yaml_files(&root.join("config"), &mut files);
    yaml_files(&root.join("deploy"), &mut files);
    let mut checked = 0;
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let embedded = embedded_configs(&text);
        let candidates: Vec<String> = if is_sidekey_config(&text) {
            vec![text]
        } else {
            embedded
        };
        for c in candidates {
            let base = f.parent().unwrap();
            if let Err(errors) = sidekey::config::from_str(&c, &f, base) {
                // A manifest's CA lives in a Kubernetes Secret mounted at run time;
                // tests/deploy_manifests.rs validates it again with a generated CA.
                let only_missing_ca = f.starts_with(root.join("deploy"))
                    && errors.iter().all(|e| {
                        e.path.starts_with("tls.ca_") && e.message.contains("cannot read")
                    });
                assert!(
                    only_missing_ca,
                    "{} does not validate: {errors:?}",
                    f.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 1,
        "no sidekey config found under config/ or deploy/"
    );
}

/// Configs embedded in a Kubernetes ConfigMap (`sidekey.yaml: |` blocks).
fn embedded_configs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("sidekey.yaml: |") {
            let mut block = Vec::new();
            let indent = lines
                .peek()
                .map(|l| l.len() - l.trim_start().len())
                .unwrap_or(0);
            while let Some(l) = lines.peek() {
                if !l.trim().is_empty() && l.len() - l.trim_start().len() < indent {
                    break;
                }
                block.push(l.get(indent..).unwrap_or("").to_string());
                lines.next();
            }
            out.push(block.join("\n"));
        }
    }
    out
}
