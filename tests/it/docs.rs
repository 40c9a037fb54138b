//! The documentation is self-contained: every relative link in the repository's
//! Markdown files (README, ARCHITECTURE, CONTRIBUTING, docs/) names a file inside the
//! repository that exists, and every `#anchor` names a heading of its target.

use std::path::{Component, Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn markdown_files() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["README.md", "ARCHITECTURE.md", "CONTRIBUTING.md"]
        .iter()
        .map(|f| root().join(f))
        .collect();
    let docs = std::fs::read_dir(root().join("docs")).expect("docs/ exists");
    for e in docs.flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// `[text](target)` links outside code blocks and code spans.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Drop code spans, where `](` is not a link.
        let plain: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            if let Some(end) = rest.find(')') {
                out.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// `path` with `.` and `..` resolved lexically; `None` when it climbs above the root.
fn inside_repo(path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(root()).ok()?;
    let mut parts: Vec<Component> = Vec::new();
    for c in rel.components() {
        match c {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            c => parts.push(c),
        }
    }
    Some(root().join(parts.iter().collect::<PathBuf>()))
}

#[test]
fn every_relative_link_stays_in_the_repository_and_resolves() {
    let mut problems = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read markdown");
        let name = file.strip_prefix(root()).unwrap().display().to_string();
        for link in links(&text) {
            if link.starts_with("http://")
                || link.starts_with("https://")
                || link.starts_with("mailto:")
            {
                continue;
            }
            let (target, anchor) = match link.split_once('#') {
                Some((t, a)) => (t, Some(a)),
                None => (link.as_str(), None),
            };
            let target_path = if target.is_empty() {
                file.clone()
            } else {
                match inside_repo(&file.parent().unwrap().join(target)) {
                    Some(p) => p,
                    None => {
                        problems.push(format!("{name}: `{link}` points outside the repository"));
                        continue;
                    }
                }
            };
            if !target_path.exists() {
                problems.push(format!("{name}: `{link}`: no such file"));
                continue;
            }
            if let Some(anchor) = anchor
                && target_path.extension().is_some_and(|x| x == "md")
            {
                let t = std::fs::read_to_string(&target_path).unwrap_or_default();
                if !anchors(&t).iter().any(|a| a == anchor) {
                    problems.push(format!("{name}: `{link}`: no heading with that anchor"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_link_checker_sees_links_and_anchors() {
    let text =
        "See [a](docs/a.md#the-part) and `[not](a link)`.\n```\n[no](x)\n```\n## The part: two!";
    assert_eq!(links(text), vec!["docs/a.md#the-part".to_string()]);
    assert_eq!(anchors(text), vec!["the-part-two".to_string()]);
    assert_eq!(
        inside_repo(&root().join("docs/../../outside")),
        None,
        "climbing out of the repository is caught"
    );
}
