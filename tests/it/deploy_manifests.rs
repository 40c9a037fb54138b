//! The Kubernetes manifests in deploy/kubernetes/:
//! 1. every manifest passes the real schema validator, `kubernetes-validate --strict`
//!    (unknown fields fail), for the Kubernetes versions we support;
//! 2. the Deployment keeps the properties the security story rests on (native
//!    sidecar, hardened containers, probes, proxy env, the agent never sees the CA key);
//! 3. the sidekey config embedded in the ConfigMap validates with sidekey itself, and
//!    every file it names is one the pod actually mounts.
//!
//! `kubernetes-validate` comes from scripts/requirements-test.txt, installed into
//! .venv by scripts/test.sh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;

/// Oldest version with native sidecars on by default (beta in 1.29), and the one they
/// went GA in. Both schemas ship inside the kubernetes-validate package (offline).
const K8S_VERSIONS: [&str; 2] = ["1.30.0", "1.33.0"];

/// Kinds from CRDs, which kubernetes-validate has no schema for (it warns and passes
/// them). Only these may be skipped; they get a structural check of their own below.
const CRD_KINDS: [&str; 1] = ["ServiceMonitor"];

/// Manifests deliberately left out of kustomization.yaml's resources (see the comments
/// there): placeholder Secrets that would overwrite the real CA or connect signing key,
/// a CRD object, and the connect Ingress example.
const NOT_IN_KUSTOMIZATION: [&str; 4] = [
    "ca-secret.yaml",
    "servicemonitor.yaml",
    "connect-secret.yaml",
    "connect-ingress.yaml",
];

const SIDEKEY_ADMIN_PORT: i64 = 15090;
const PROXY: &str = "http://127.0.0.1:15080";
const CA_SECRET: &str = "sidekey-ca";
const CA_KEY: &str = "tls.key";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn k8s_dir() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// Every `*.yaml`/`*.yml` in deploy/kubernetes/, sorted.
fn yaml_files() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .expect("deploy/kubernetes/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml")))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no manifests in deploy/kubernetes/");
    out
}

fn file_name(p: &Path) -> &str {
    p.file_name().unwrap().to_str().unwrap()
}

/// All non-empty YAML documents of a file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|de| {
            Value::deserialize(de)
                .unwrap_or_else(|e| panic!("{}: not valid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// (file name, document) for every Kubernetes object (kustomization.yaml is not one).
fn objects() -> Vec<(String, Value)> {
    yaml_files()
        .iter()
        .filter(|p| file_name(p) != "kustomization.yaml")
        .flat_map(|p| {
            let name = file_name(p).to_string();
            documents(p).into_iter().map(move |d| (name.clone(), d))
        })
        .collect()
}

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

fn find(kind_: &str, name_: &str) -> Value {
    objects()
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| kind(v) == kind_ && name(v) == name_)
        .unwrap_or_else(|| panic!("no {kind_} named {name_} in deploy/kubernetes/"))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------------
// 1. Schema validation with the real validator.
// ---------------------------------------------------------------------------------

fn validator() -> PathBuf {
    crate::support::Tool::KubernetesValidate.path()
}

#[test]
fn manifests_pass_kubernetes_validate_strict() {
    let bin = validator();
    let files: Vec<PathBuf> = yaml_files()
        .into_iter()
        .filter(|p| file_name(p) != "kustomization.yaml") // kustomize's, not an API object
        .collect();
    let mut cmd = Command::new(&bin);
    cmd.arg("--strict");
    for v in K8S_VERSIONS {
        cmd.args(["-k", v]);
    }
    cmd.args(&files);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("kubernetes-validate output:\n{stdout}{stderr}");

    assert!(out.status.success(), "manifests do not validate\n{report}");
    for line in stdout.lines() {
        let allowed = line.starts_with("INFO ")
            || line.starts_with("WARN ")
                && CRD_KINDS
                    .iter()
                    .any(|k| line.contains(&format!("Couldn't find schema for kind {k} ")));
        assert!(allowed, "unexpected validator line: {line}\n{report}");
    }
    // Missing schemas only warn (exit 0), so prove every non-CRD object was checked.
    let mut checked = 0;
    for (file, obj) in objects() {
        if CRD_KINDS.contains(&kind(&obj)) {
            continue;
        }
        for v in K8S_VERSIONS {
            let minor = v.rsplit_once('.').unwrap().0;
            let want = format!(
                "INFO {} passed for resource {}/{} against version {minor}",
                k8s_dir().join(&file).display(),
                kind(&obj).to_lowercase(),
                name(&obj)
            );
            assert!(stdout.contains(&want), "missing `{want}`\n{report}");
            checked += 1;
        }
    }
    assert!(
        checked >= 7 * K8S_VERSIONS.len(),
        "too few objects validated\n{report}"
    );
}

#[test]
fn kustomization_lists_every_manifest() {
    let k = documents(&k8s_dir().join("kustomization.yaml")).remove(0);
    assert_eq!(k["kind"].as_str(), Some("Kustomization"));
    assert_eq!(k["namespace"].as_str(), Some("agents"));
    let listed: BTreeSet<&str> = seq(&k["resources"]).iter().map(str_of).collect();
    for r in &listed {
        assert!(
            k8s_dir().join(r).is_file(),
            "kustomization lists missing file {r}"
        );
    }
    let files: Vec<PathBuf> = yaml_files();
    let expected: BTreeSet<&str> = files
        .iter()
        .map(|p| file_name(p))
        .filter(|f| *f != "kustomization.yaml" && !NOT_IN_KUSTOMIZATION.contains(f))
        .collect();
    assert_eq!(listed, expected, "kustomization.yaml resources");
    // No CRD object slips into the default apply.
    for (file, obj) in objects() {
        if CRD_KINDS.contains(&kind(&obj)) {
            assert!(!listed.contains(file.as_str()), "{file} holds a CRD object");
        }
        assert_eq!(
            obj["metadata"]["namespace"].as_str().unwrap_or("agents"),
            "agents",
            "{file}: {}/{}",
            kind(&obj),
            name(&obj)
        );
    }
}

/// The CRD object kubernetes-validate cannot check: its shape, and that it really
/// selects the metrics Service and its `admin` port.
#[test]
fn servicemonitor_scrapes_the_admin_port() {
    let sm = find("ServiceMonitor", "hr-ops-agent-sidekey");
    assert_eq!(sm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    let endpoints = seq(&sm["spec"]["endpoints"]);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"].as_str(), Some("admin"));
    assert_eq!(endpoints[0]["path"].as_str(), Some("/metrics"));
    let known: BTreeSet<&str> = ["port", "path", "interval", "scheme", "scrapeTimeout"].into();
    for k in endpoints[0].as_mapping().unwrap().keys() {
        assert!(known.contains(str_of(k)), "unexpected endpoint key {k:?}");
    }

    let svc = find("Service", "hr-ops-agent-sidekey-metrics");
    let svc_labels = svc["metadata"]["labels"].as_mapping().unwrap();
    let sel = sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    assert!(!sel.is_empty());
    for (k, v) in sel {
        assert_eq!(svc_labels.get(k), Some(v), "ServiceMonitor selector {k:?}");
    }
    let ns: Vec<&str> = seq(&sm["spec"]["namespaceSelector"]["matchNames"])
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(ns, ["agents"]);

    let ports = seq(&svc["spec"]["ports"]);
    let admin = ports
        .iter()
        .find(|p| p["name"].as_str() == Some("admin"))
        .expect("Service port `admin`");
    assert_eq!(admin["port"].as_i64(), Some(SIDEKEY_ADMIN_PORT));
    assert!(
        ports.iter().all(|p| p["port"].as_i64() != Some(15080)),
        "the proxy port must not be exposed"
    );
    // The Service selects the Deployment's pods.
    let pod_labels =
        find("Deployment", "hr-ops-agent")["spec"]["template"]["metadata"]["labels"].clone();
    for (k, v) in svc["spec"]["selector"].as_mapping().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v), "Service selector {k:?}");
    }
}

// ---------------------------------------------------------------------------------
// 2. The Deployment's invariants.
// ---------------------------------------------------------------------------------

fn pod_spec() -> Value {
    find("Deployment", "hr-ops-agent")["spec"]["template"]["spec"].clone()
}

fn container<'a>(list: &'a Value, name_: &str) -> Option<&'a Value> {
    seq(list).iter().find(|c| c["name"].as_str() == Some(name_))
}

fn sidekey(pod: &Value) -> &Value {
    container(&pod["initContainers"], "sidekey").expect("sidekey in initContainers")
}

fn agent(pod: &Value) -> &Value {
    container(&pod["containers"], "agent").expect("container `agent`")
}

fn all_containers(pod: &Value) -> Vec<&Value> {
    seq(&pod["initContainers"])
        .iter()
        .chain(seq(&pod["containers"]))
        .collect()
}

fn env(c: &Value) -> BTreeMap<String, String> {
    seq(&c["env"])
        .iter()
        .map(|e| {
            (
                str_of(&e["name"]).to_string(),
                str_of(&e["value"]).to_string(),
            )
        })
        .collect()
}

fn volume<'a>(pod: &'a Value, name_: &str) -> &'a Value {
    container(&pod["volumes"], name_).unwrap_or_else(|| panic!("no volume {name_}"))
}

/// What one file inside a volume comes from.
#[derive(Debug, PartialEq)]
enum Source {
    ConfigMap(String, String),
    Secret(String, String),
    ServiceAccountToken(String),
    EmptyDir,
}

/// Keys of the objects referenced without `items`: every key they hold.
fn keys_of(kind_: &str, name_: &str) -> Vec<String> {
    let obj = find(kind_, name_);
    let data = obj["data"].as_mapping().cloned().unwrap_or_default();
    data.keys().map(|k| str_of(k).to_string()).collect()
}

/// Files a volume provides (path relative to its mount -> source). An emptyDir
/// provides whatever is written into it: one entry with path "".
fn volume_files(v: &Value) -> Vec<(String, Source)> {
    fn from_object(kind_: &str, name_: &str, items: &Value) -> Vec<(String, Source)> {
        let make = |key: &str| match kind_ {
            "ConfigMap" => Source::ConfigMap(name_.into(), key.into()),
            _ => Source::Secret(name_.into(), key.into()),
        };
        match items.as_sequence() {
            Some(items) => items
                .iter()
                .map(|i| (str_of(&i["path"]).to_string(), make(str_of(&i["key"]))))
                .collect(),
            None => keys_of(kind_, name_)
                .into_iter()
                .map(|k| (k.clone(), make(&k)))
                .collect(),
        }
    }
    if !v["configMap"].is_null() {
        return from_object(
            "ConfigMap",
            str_of(&v["configMap"]["name"]),
            &v["configMap"]["items"],
        );
    }
    if !v["secret"].is_null() {
        return from_object(
            "Secret",
            str_of(&v["secret"]["secretName"]),
            &v["secret"]["items"],
        );
    }
    if !v["emptyDir"].is_null() {
        return vec![(String::new(), Source::EmptyDir)];
    }
    assert!(!v["projected"].is_null(), "unhandled volume type {v:?}");
    let mut out = Vec::new();
    for s in seq(&v["projected"]["sources"]) {
        if !s["configMap"].is_null() {
            out.extend(from_object(
                "ConfigMap",
                str_of(&s["configMap"]["name"]),
                &s["configMap"]["items"],
            ));
        } else if !s["secret"].is_null() {
            out.extend(from_object(
                "Secret",
                str_of(&s["secret"]["name"]),
                &s["secret"]["items"],
            ));
        } else if !s["serviceAccountToken"].is_null() {
            let t = &s["serviceAccountToken"];
            out.push((
                str_of(&t["path"]).to_string(),
                Source::ServiceAccountToken(str_of(&t["audience"]).to_string()),
            ));
        } else {
            panic!("unhandled projected source {s:?}");
        }
    }
    out
}

/// Every file a container can read through its mounts: absolute path -> source.
fn mounted_files(pod: &Value, c: &Value) -> Vec<(String, Source)> {
    let mut out = Vec::new();
    for m in seq(&c["volumeMounts"]) {
        assert!(
            m["subPath"].is_null(),
            "subPath mounts never see updates: {m:?}"
        );
        let dir = str_of(&m["mountPath"]).trim_end_matches('/');
        for (rel, src) in volume_files(volume(pod, str_of(&m["name"]))) {
            let path = if rel.is_empty() {
                dir.to_string()
            } else {
                format!("{dir}/{rel}")
            };
            out.push((path, src));
        }
    }
    out
}

fn provides<'a>(files: &'a [(String, Source)], path: &str) -> Option<&'a Source> {
    files.iter().find_map(|(p, s)| {
        (p == path || matches!(s, Source::EmptyDir) && path.starts_with(&format!("{p}/")))
            .then_some(s)
    })
}

#[test]
fn sidekey_is_a_native_sidecar() {
    let pod = pod_spec();
    let s = sidekey(&pod);
    assert_eq!(
        s["restartPolicy"].as_str(),
        Some("Always"),
        "native sidecar"
    );
    assert!(container(&pod["containers"], "sidekey").is_none());
    assert_eq!(s["image"].as_str(), Some("example.com/sidekey:0.1.0"));
    let args: Vec<&str> = seq(&s["args"]).iter().map(str_of).collect();
    assert_eq!(args, ["run", "--config", "/etc/sidekey/sidekey.yaml"]);
    let ports: BTreeMap<&str, i64> = seq(&s["ports"])
        .iter()
        .map(|p| (str_of(&p["name"]), p["containerPort"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([("proxy", 15080), ("admin", SIDEKEY_ADMIN_PORT)])
    );
    assert_eq!(
        env(s).get("SIDEKEY_LOG_FORMAT").map(String::as_str),
        Some("json")
    );

    // Every regular init container runs before the sidecar; the agent after it.
    let inits = seq(&pod["initContainers"]);
    let at = inits
        .iter()
        .position(|c| c["name"].as_str() == Some("sidekey"))
        .unwrap();
    assert!(
        inits[at + 1..]
            .iter()
            .all(|c| c["restartPolicy"].as_str() == Some("Always"))
    );

    assert_eq!(pod["serviceAccountName"].as_str(), Some("hr-ops-agent"));
    assert_eq!(pod["terminationGracePeriodSeconds"].as_i64(), Some(30));
    let ann = &find("Deployment", "hr-ops-agent")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(ann["prometheus.io/port"].as_str(), Some("15090"));
    assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"));
}

#[test]
fn sidekey_probes_use_the_admin_port() {
    let pod = pod_spec();
    let s = sidekey(&pod);
    let named: BTreeMap<&str, i64> = seq(&s["ports"])
        .iter()
        .map(|p| (str_of(&p["name"]), p["containerPort"].as_i64().unwrap()))
        .collect();
    for (probe, path) in [
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ] {
        let get = &s[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        let port = get["port"]
            .as_i64()
            .or_else(|| get["port"].as_str().and_then(|n| named.get(n).copied()));
        assert_eq!(port, Some(SIDEKEY_ADMIN_PORT), "{probe} port");
    }
}

#[test]
fn every_container_is_hardened_and_sized() {
    let pod = pod_spec();
    let pod_sc = &pod["securityContext"];
    assert_ne!(pod["shareProcessNamespace"].as_bool(), Some(true));
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    let cs = all_containers(&pod);
    assert!(cs.len() >= 2);
    for c in cs {
        let n = str_of(&c["name"]);
        let sc = &c["securityContext"];
        assert_eq!(
            sc["runAsNonRoot"].as_bool(),
            Some(true),
            "{n}: runAsNonRoot"
        );
        assert_eq!(sc["runAsUser"].as_i64(), Some(65532), "{n}: runAsUser");
        assert_eq!(
            sc["readOnlyRootFilesystem"].as_bool(),
            Some(true),
            "{n}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{n}: allowPrivilegeEscalation"
        );
        assert_ne!(sc["privileged"].as_bool(), Some(true), "{n}: privileged");
        let drop: Vec<&str> = seq(&sc["capabilities"]["drop"])
            .iter()
            .map(str_of)
            .collect();
        assert!(drop.contains(&"ALL"), "{n}: capabilities.drop {drop:?}");
        assert!(sc["capabilities"]["add"].is_null(), "{n}: capabilities.add");
        let seccomp = sc["seccompProfile"]["type"]
            .as_str()
            .or(pod_sc["seccompProfile"]["type"].as_str());
        assert_eq!(seccomp, Some("RuntimeDefault"), "{n}: seccompProfile");

        let r = &c["resources"];
        assert!(r["requests"]["cpu"].as_str().is_some(), "{n}: requests.cpu");
        assert!(
            r["requests"]["memory"].as_str().is_some(),
            "{n}: requests.memory"
        );
        assert!(
            r["limits"]["memory"].as_str().is_some(),
            "{n}: limits.memory"
        );
    }
    let r = &sidekey(&pod)["resources"];
    assert_eq!(r["requests"]["cpu"].as_str(), Some("50m"));
    assert_eq!(r["requests"]["memory"].as_str(), Some("32Mi"));
    assert_eq!(r["limits"]["memory"].as_str(), Some("128Mi"));
}

#[test]
fn agent_goes_through_the_proxy_and_trusts_the_ca() {
    let pod = pod_spec();
    let a = agent(&pod);
    let e = env(a);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
    ] {
        assert!(e.get(var).is_some_and(|v| !v.is_empty()), "agent env {var}");
    }
    assert_eq!(e["HTTP_PROXY"], PROXY);
    assert_eq!(e["HTTPS_PROXY"], PROXY);
    let no_proxy: BTreeSet<&str> = e["NO_PROXY"].split(',').collect();
    for h in ["localhost", "127.0.0.1", ".svc", ".cluster.local"] {
        assert!(no_proxy.contains(h), "NO_PROXY lacks {h}");
    }

    // The CA variables name files the agent really mounts, made from the CA cert.
    let files = mounted_files(&pod, a);
    let ca_cert = Source::Secret(CA_SECRET.into(), "tls.crt".into());
    assert_eq!(provides(&files, &e["NODE_EXTRA_CA_CERTS"]), Some(&ca_cert));
    for var in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"] {
        match provides(&files, &e[var]) {
            Some(s) if *s == ca_cert => {}
            // The trust bundle: written by a run-to-completion init container that
            // reads the CA cert and shares the emptyDir with the agent.
            Some(Source::EmptyDir) => {
                let writer = seq(&pod["initContainers"]).iter().find(|c| {
                    c["restartPolicy"].is_null()
                        && seq(&c["args"]).iter().any(|x| x.as_str() == Some(&e[var]))
                });
                let writer = writer.unwrap_or_else(|| panic!("nothing writes {}", e[var]));
                let args: Vec<&str> = seq(&writer["args"]).iter().map(str_of).collect();
                assert_eq!(
                    &args[..2],
                    ["ca", "env"],
                    "{var}: `sidekey ca env` writes it"
                );
                let wfiles = mounted_files(&pod, writer);
                let ca_arg = args[args.iter().position(|x| *x == "--ca").unwrap() + 1];
                assert_eq!(provides(&wfiles, ca_arg), Some(&ca_cert));
            }
            other => panic!(
                "{var}={} is not the mounted CA or bundle: {other:?}",
                e[var]
            ),
        }
    }
}

#[test]
fn only_sidekey_can_read_the_ca_key() {
    let pod = pod_spec();
    let ca_key = Source::Secret(CA_SECRET.into(), CA_KEY.into());
    for c in all_containers(&pod) {
        let files = mounted_files(&pod, c);
        let has_key = files.iter().any(|(_, s)| *s == ca_key);
        let has_token = files
            .iter()
            .any(|(_, s)| matches!(s, Source::ServiceAccountToken(_)));
        if c["name"].as_str() == Some("sidekey") {
            assert!(has_key, "sidekey needs the CA key");
            assert!(has_token, "sidekey needs its Vault token");
        } else {
            assert!(!has_key, "{} must not mount the CA key", str_of(&c["name"]));
            assert!(
                !has_token,
                "{} must not get a ServiceAccount token",
                str_of(&c["name"])
            );
        }
        for m in seq(&c["volumeMounts"]) {
            let v = volume(&pod, str_of(&m["name"]));
            if v["emptyDir"].is_null() && c["name"].as_str() != Some("trust-bundle") {
                assert_eq!(m["readOnly"].as_bool(), Some(true), "{m:?} read-only");
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// 3. The sidekey config inside the ConfigMap.
// ---------------------------------------------------------------------------------

fn embedded_config() -> String {
    find("ConfigMap", "sidekey-config")["data"]["sidekey.yaml"]
        .as_str()
        .expect("ConfigMap sidekey-config has data.sidekey.yaml")
        .to_string()
}

/// A CA like `sidekey ca init` writes (ECDSA P-256, CA:true pathlen 0).
fn write_test_ca(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "sidekey test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn embedded_config_validates() {
    let text = embedded_config();
    let file = Path::new("configmap.yaml");
    let base = Path::new("/");

    // The CA lives in the Secret, mounted only in the pod. Where the files are absent,
    // the CA paths are the only problems (unless this machine has a CA there).
    let cert_path = "/etc/sidekey/ca/tls.crt";
    let key_path = "/etc/sidekey/ca/tls.key";
    assert!(text.contains(&format!("ca_cert: {cert_path}")));
    assert!(text.contains(&format!("ca_key: {key_path}")));
    if !Path::new(cert_path).exists() {
        let errors = sidekey::config::from_str(&text, file, base).expect_err("CA files are absent");
        for e in &errors {
            assert!(
                e.path.starts_with("tls.ca_"),
                "unexpected config error: {e}\nall: {errors:?}"
            );
        }
    }

    // With a real CA at those paths it is a complete, valid config.
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = write_test_ca(dir.path());
    let text = text
        .replace(cert_path, c.to_str().unwrap())
        .replace(key_path, k.to_str().unwrap());
    let cfg = match sidekey::config::from_str(&text, file, base) {
        Ok(cfg) => cfg,
        Err(errors) => {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!(
                "deploy/kubernetes/configmap.yaml sidekey.yaml is invalid:\n{}",
                lines.join("\n")
            );
        }
    };
    assert_eq!(&*cfg.agent, "hr-ops-agent");
    assert_eq!(cfg.listen.to_string(), "127.0.0.1:15080");
    assert_eq!(cfg.admin_listen.to_string(), "0.0.0.0:15090");
    assert!(cfg.vault.is_some());
    let creds: Vec<&str> = cfg.credentials.keys().map(String::as_str).collect();
    assert_eq!(creds, ["notion-user", "rippling-service", "slack-bot"]);
    assert_eq!(cfg.routes.len(), 3);
    // sidekey drains within the pod's grace period.
    let grace = pod_spec()["terminationGracePeriodSeconds"]
        .as_i64()
        .unwrap() as u64;
    assert!(
        cfg.shutdown_grace.as_secs() < grace,
        "shutdown_grace must be < terminationGracePeriodSeconds"
    );
}

/// Every file the config names is mounted into the sidekey container.
#[test]
fn config_files_are_mounted_into_sidekey() {
    let pod = pod_spec();
    let s = sidekey(&pod);
    let files = mounted_files(&pod, s);
    let cfg: Value = serde_norway::from_str(&embedded_config()).unwrap();

    let args: Vec<&str> = seq(&s["args"]).iter().map(str_of).collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    assert_eq!(
        provides(&files, config_path),
        Some(&Source::ConfigMap(
            "sidekey-config".into(),
            "sidekey.yaml".into()
        ))
    );
    assert_eq!(
        provides(&files, str_of(&cfg["tls"]["ca_cert"])),
        Some(&Source::Secret(CA_SECRET.into(), "tls.crt".into()))
    );
    assert_eq!(
        provides(&files, str_of(&cfg["tls"]["ca_key"])),
        Some(&Source::Secret(CA_SECRET.into(), CA_KEY.into()))
    );
    let jwt = cfg["vault"]["auth"]["jwt_file"]
        .as_str()
        .unwrap_or("/var/run/secrets/kubernetes.io/serviceaccount/token");
    assert_eq!(
        provides(&files, jwt),
        Some(&Source::ServiceAccountToken("vault".into())),
        "vault.auth.jwt_file must be the projected token"
    );
    // The ConfigMap and Secret the volumes need exist (the Secret as a template).
    let _ = find("ConfigMap", "sidekey-config");
    let secret = find("Secret", CA_SECRET);
    assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
}
