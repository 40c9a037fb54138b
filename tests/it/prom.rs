//! A small, strict parser for the Prometheus text exposition format (0.0.4), shared by
//! the ops_* tests through `crate::prom`, plus helpers to scrape
//! sidekey's admin listener and to run `promtool check metrics`.
//!
//! Built as its own test target too, where only the parser's own tests below run.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::{Command, Stdio};

/// A series' labels, sorted.
type Labels = Vec<(String, String)>;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition: every sample in order, and the `# TYPE` / `# HELP` of each family.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: HashMap<String, String>,
    pub helps: HashMap<String, String>,
    pub text: String,
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse::<f64>().ok(),
    }
}

/// Parses `{k="v",...}` starting at `s[0] == '{'`; returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 1;
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        if i >= b.len() {
            return Err("unterminated label set".into());
        }
        if b[i] == b'}' {
            return Ok((labels, &s[i + 1..]));
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let key = &s[start..i];
        if key.is_empty() {
            return Err(format!("bad label name at byte {start}"));
        }
        if i + 1 >= b.len() || b[i] != b'=' || b[i + 1] != b'"' {
            return Err(format!("label {key} lacks =\"...\""));
        }
        i += 2;
        let mut val = String::new();
        loop {
            let Some(c) = s[i..].chars().next() else {
                return Err(format!("unterminated value of label {key}"));
            };
            i += c.len_utf8();
            match c {
                '"' => break,
                '\\' => {
                    let Some(e) = s[i..].chars().next() else {
                        return Err("dangling escape".into());
                    };
                    i += e.len_utf8();
                    match e {
                        'n' => val.push('\n'),
                        '\\' => val.push('\\'),
                        '"' => val.push('"'),
                        other => return Err(format!("bad escape \\{other}")),
                    }
                }
                c => val.push(c),
            }
        }
        if labels.insert(key.to_string(), val).is_some() {
            return Err(format!("duplicate label {key}"));
        }
    }
}

/// Parses exposition text; panics naming the offending line on anything malformed.
pub fn parse(text: &str) -> Exposition {
    let mut exp = Exposition {
        text: text.to_string(),
        ..Default::default()
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.splitn(2, ' ');
            let name = it.next().unwrap_or_default().to_string();
            let ty = it.next().unwrap_or_default().trim().to_string();
            exp.types.insert(name, ty);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let mut it = rest.splitn(2, ' ');
            let name = it.next().unwrap_or_default().to_string();
            exp.helps
                .insert(name, it.next().unwrap_or_default().to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("metrics line {}: no value: {line:?}", n + 1));
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..])
                .unwrap_or_else(|e| panic!("metrics line {}: {e}: {line:?}", n + 1))
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value = fields
            .next()
            .and_then(parse_value)
            .unwrap_or_else(|| panic!("metrics line {}: bad value: {line:?}", n + 1));
        exp.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    exp
}

fn matches(s: &Sample, name: &str, want: &[(&str, &str)]) -> bool {
    s.name == name
        && want
            .iter()
            .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
}

impl Exposition {
    /// Every sample of `name` whose labels include `subset`.
    pub fn find(&self, name: &str, subset: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| matches(s, name, subset))
            .collect()
    }

    /// The value of the sample of `name` with exactly the label set `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| matches(s, name, labels) && s.labels.len() == labels.len())
            .map(|s| s.value)
    }

    /// Like [`get`](Self::get), panicking with every sample of `name` when absent.
    #[track_caller]
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            panic!(
                "no sample {name}{labels:?}; samples of {name}:\n{}",
                self.dump(name)
            )
        })
    }

    /// The samples of `name`, one per line, for failure messages.
    pub fn dump(&self, name: &str) -> String {
        let v: Vec<String> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| format!("  {}{:?} {}", s.name, s.labels, s.value))
            .collect();
        if v.is_empty() {
            "  (none)".into()
        } else {
            v.join("\n")
        }
    }

    /// Every sample of `name` as (sorted label pairs, value).
    pub fn series(&self, name: &str) -> BTreeMap<Vec<(String, String)>, f64> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| {
                (
                    s.labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    s.value,
                )
            })
            .collect()
    }

    /// Checks every histogram family: per series, cumulative buckets never decrease,
    /// a `+Inf` bucket exists and equals `_count`, and `_sum` exists. Returns problems.
    pub fn histogram_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (fam, ty) in &self.types {
            if ty != "histogram" {
                continue;
            }
            let mut by_series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for s in self
                .samples
                .iter()
                .filter(|s| s.name == format!("{fam}_bucket"))
            {
                let le = s
                    .labels
                    .get("le")
                    .and_then(|v| parse_value(v))
                    .unwrap_or(f64::NAN);
                let key: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                by_series.entry(key).or_default().push((le, s.value));
            }
            for (key, mut buckets) in by_series {
                buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
                for w in buckets.windows(2) {
                    if w[1].1 < w[0].1 {
                        problems.push(format!(
                            "{fam}{key:?}: bucket le={} < le={}",
                            w[1].0, w[0].0
                        ));
                    }
                }
                let labels: Vec<(&str, &str)> =
                    key.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let count = self.get(&format!("{fam}_count"), &labels);
                let sum = self.get(&format!("{fam}_sum"), &labels);
                match buckets.last() {
                    Some((le, v)) if le.is_infinite() => {
                        if count != Some(*v) {
                            problems
                                .push(format!("{fam}{key:?}: +Inf bucket {v} != _count {count:?}"));
                        }
                    }
                    _ => problems.push(format!("{fam}{key:?}: no +Inf bucket")),
                }
                if sum.is_none() {
                    problems.push(format!("{fam}{key:?}: no _sum"));
                }
            }
        }
        problems
    }
}

/// Runs `promtool check metrics` on `text`: (exit code, stdout + stderr).
/// Fails the test with what to run when promtool is not installed (`support::Tool`).
pub fn promtool_check(text: &str) -> (i32, String) {
    let spawned = Command::new(crate::support::Tool::Promtool.path())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .expect("write metrics to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let mut all = String::from_utf8_lossy(&out.stdout).into_owned();
    all.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), all)
}

#[cfg(test)]
mod parser_tests {
    use super::*;

    #[test]
    fn parses_labels_escapes_and_special_values() {
        let e = parse(
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"\\\\\\n\"} 3\nx_total 4 1700000000\ny{le=\"+Inf\"} +Inf\n",
        );
        assert_eq!(e.types["x_total"], "counter");
        assert_eq!(e.value("x_total", &[("a", "1"), ("b", "q\"\\\n")]), 3.0);
        assert_eq!(e.value("x_total", &[]), 4.0);
        assert!(e.get("x_total", &[("a", "1")]).is_none(), "exact label set");
        assert_eq!(e.find("x_total", &[("a", "1")]).len(), 1);
        assert!(e.value("y", &[("le", "+Inf")]).is_infinite());
    }

    #[test]
    fn histogram_checks_find_problems() {
        let good = parse(
            "# TYPE h histogram\nh_bucket{r=\"a\",le=\"0.1\"} 1\nh_bucket{r=\"a\",le=\"+Inf\"} 2\nh_sum{r=\"a\"} 0.3\nh_count{r=\"a\"} 2\n",
        );
        assert!(
            good.histogram_problems().is_empty(),
            "{:?}",
            good.histogram_problems()
        );
        let bad = parse(
            "# TYPE h histogram\nh_bucket{r=\"a\",le=\"0.1\"} 3\nh_bucket{r=\"a\",le=\"+Inf\"} 2\nh_count{r=\"a\"} 5\n",
        );
        assert_eq!(
            bad.histogram_problems().len(),
            3,
            "{:?}",
            bad.histogram_problems()
        );
    }
}
