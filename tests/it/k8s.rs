//! The Kubernetes manifests (`k8s/`), offline: every overlay (and base + the monitoring
//! component) is built with `kubectl kustomize` and validated with
//! `kubernetes-validate --strict` for 1.29 and the newest version it ships; and every port,
//! path, flag, env var and metric the manifests and docker-compose.yml name exists in the
//! binary, so the packaging cannot drift from the code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::docker::{repo, run, tool};

const BIN: &str = env!("CARGO_BIN_EXE_rtconfig");

/// The kustomizations to build: every overlay, the base, and base + components/monitoring
/// (a kustomization written under target/, since kustomize refuses absolute paths).
fn kustomizations() -> Vec<PathBuf> {
    let root = repo();
    let mut out = vec![root.join("k8s/base")];
    for entry in std::fs::read_dir(root.join("k8s/overlays")).expect("k8s/overlays") {
        let path = entry.expect("entry").path();
        if path.join("kustomization.yaml").exists() {
            out.push(path);
        }
    }
    let monitoring = root.join("target/k8s-test/monitoring");
    std::fs::create_dir_all(&monitoring).expect("mkdir");
    std::fs::write(
        monitoring.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
         resources:\n  - ../../../k8s/base\n\
         components:\n  - ../../../k8s/components/monitoring\n",
    )
    .expect("write monitoring kustomization");
    out.push(monitoring);
    out
}

fn kustomize(dir: &Path) -> String {
    let out = run(
        Command::new(tool("kubectl")).arg("kustomize").arg(dir),
        &format!("kubectl kustomize {}", dir.display()),
        Duration::from_secs(60),
    );
    String::from_utf8(out.stdout).expect("utf-8 manifests")
}

/// YAML documents → JSON values, with the PyYAML of the validators' virtualenv.
fn yaml_docs(yaml: &str) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new(tool("python3"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write yaml");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "yaml → json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("json") {
        Value::Array(docs) => docs,
        other => panic!("not a list: {other}"),
    }
}

#[test]
fn k8s_every_overlay_builds_and_validates_strictly_for_1_29_and_the_newest() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    for dir in kustomizations() {
        let yaml = kustomize(&dir);
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let file = out_dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &yaml).expect("write manifests");
        // No -k: the newest version kubernetes-validate ships.
        for version in [Some("1.29.0"), None] {
            let mut cmd = Command::new(tool("kubernetes-validate"));
            cmd.args(["--strict", "--quiet"]);
            if let Some(v) = version {
                cmd.args(["-k", v]);
            }
            let out = run(
                cmd.arg(&file),
                &format!("kubernetes-validate {name} ({version:?})"),
                Duration::from_secs(120),
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            // Only the Prometheus Operator's kinds may lack a schema (CRDs are not bundled).
            for line in text.lines().filter(|l| l.contains("Couldn't find schema")) {
                assert!(line.contains("monitoring.coreos.com"), "{name}: {line}");
            }
            assert!(!text.contains("ERROR"), "{name}: {text}");
        }
    }
}

#[test]
fn k8s_schema_configmap_matches_the_schema_dir() {
    let root = repo();
    for entry in std::fs::read_dir(root.join("k8s/base/schema")).expect("k8s/base/schema") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name");
        let ours = std::fs::read_to_string(&path).expect("read");
        let config = std::fs::read_to_string(root.join("config").join(name))
            .unwrap_or_else(|e| panic!("config/{name:?}: {e}"));
        assert_eq!(
            ours, config,
            "k8s/base/schema/{name:?} differs from config/"
        );
    }
}

/// What one subcommand's `--help` offers.
struct Help {
    text: String,
}

impl Help {
    fn of(subcommand: &str) -> Help {
        let out = Command::new(BIN)
            .args([subcommand, "--help"])
            .output()
            .expect("rtconfig --help");
        assert!(out.status.success(), "rtconfig {subcommand} --help");
        Help {
            text: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.text.contains(&format!("{flag} ")) || self.text.contains(&format!("{flag}\n"))
    }

    fn has_env(&self, name: &str) -> bool {
        self.text.contains(&format!("[env: {name}="))
            || self.text.contains(&format!("[env: {name}]"))
    }

    /// The default of the flag whose variable is `env` (`[default: 0.0.0.0:7071]`).
    fn default_of(&self, env: &str) -> Option<String> {
        let at = self.text.find(&format!("[env: {env}"))?;
        let rest = &self.text[at..];
        let start = rest.find("[default: ")? + "[default: ".len();
        let end = rest[start..].find(']')?;
        Some(rest[start..start + end].to_owned())
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The routes a role serves on each port, from its route tables' source.
fn route_source(subcommand: &str) -> String {
    let file = match subcommand {
        "sidecar" => "src/sidecar/mod.rs",
        "admin" => "src/admin/mod.rs",
        other => panic!("no probe routes for {other}"),
    };
    std::fs::read_to_string(repo().join(file)).expect("route source")
}

/// An rtconfig container (Kubernetes) or service (Compose), as the check sees it.
struct Container {
    place: String,
    args: Vec<String>,
    env: Vec<(String, Option<String>)>,
    /// (port, path) of HTTP probes; ports are numbers here.
    probes: Vec<(u16, String)>,
    ports: Vec<u16>,
}

fn check(c: &Container) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(sub) = c.args.first() else {
        return vec![format!("{}: no subcommand", c.place)];
    };
    let help = Help::of(sub);
    for arg in c.args.iter().skip(1) {
        let flag = arg.split('=').next().unwrap_or(arg);
        if flag.starts_with("--") && !help.has_flag(flag) {
            problems.push(format!("{}: rtconfig {sub} has no {flag}", c.place));
        }
    }
    for (name, _) in &c.env {
        if name.starts_with("RTCONFIG_") && !help.has_env(name) {
            problems.push(format!("{}: rtconfig {sub} reads no {name}", c.place));
        }
    }
    // The ports this container listens on: its listen variables, else their defaults.
    let mut listening = BTreeSet::new();
    for var in ["RTCONFIG_LISTEN", "RTCONFIG_PROBE_LISTEN"] {
        let set = c
            .env
            .iter()
            .find(|(n, _)| n == var)
            .and_then(|(_, v)| v.clone());
        if let Some(addr) = set.or_else(|| help.default_of(var)) {
            listening.insert(port_of(&addr));
        }
    }
    for port in &c.ports {
        if !listening.contains(port) {
            problems.push(format!(
                "{}: port {port} is not one rtconfig {sub} listens on ({listening:?})",
                c.place
            ));
        }
    }
    let routes = route_source(sub);
    for (port, path) in &c.probes {
        if !listening.contains(port) {
            problems.push(format!(
                "{}: probe port {port} is not one rtconfig {sub} listens on",
                c.place
            ));
        }
        if !routes.contains(&format!(".route(\"{path}\"")) {
            problems.push(format!("{}: rtconfig {sub} serves no {path}", c.place));
        }
    }
    problems
}

fn is_rtconfig_image(image: &str) -> bool {
    let name = image.rsplit('/').next().unwrap_or(image);
    name == "rtconfig" || name.starts_with("rtconfig:")
}

fn k8s_containers(docs: &[Value], source: &str) -> Vec<Container> {
    let mut out = Vec::new();
    for doc in docs {
        let spec = &doc["spec"]["template"]["spec"];
        if spec.is_null() {
            continue;
        }
        for list in ["containers", "initContainers"] {
            for c in spec[list].as_array().into_iter().flatten() {
                if !is_rtconfig_image(c["image"].as_str().unwrap_or_default()) {
                    continue;
                }
                let strs = |v: &Value| -> Vec<String> {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                };
                let mut args = strs(&c["command"]);
                if args.first().is_some_and(|a| a == "rtconfig") {
                    args.remove(0);
                }
                args.extend(strs(&c["args"]));
                let named: Vec<(String, u16)> = c["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap_or_default().to_owned(),
                            p["containerPort"].as_u64().unwrap_or_default() as u16,
                        )
                    })
                    .collect();
                let resolve = |port: &Value| -> u16 {
                    match port {
                        Value::Number(n) => n.as_u64().unwrap_or_default() as u16,
                        Value::String(name) => named
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, p)| *p)
                            .unwrap_or_else(|| panic!("{source}: no port named {name}")),
                        other => panic!("{source}: port {other}"),
                    }
                };
                let probes = ["startupProbe", "readinessProbe", "livenessProbe"]
                    .iter()
                    .filter_map(|p| {
                        let get = &c[*p]["httpGet"];
                        (!get.is_null()).then(|| {
                            (
                                resolve(&get["port"]),
                                get["path"].as_str().unwrap_or("/").to_owned(),
                            )
                        })
                    })
                    .collect();
                out.push(Container {
                    place: format!(
                        "{source}: {} {}/{}",
                        doc["kind"].as_str().unwrap_or_default(),
                        doc["metadata"]["name"].as_str().unwrap_or_default(),
                        c["name"].as_str().unwrap_or_default()
                    ),
                    args,
                    env: c["env"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            (
                                e["name"].as_str().unwrap_or_default().to_owned(),
                                e["value"].as_str().map(str::to_owned),
                            )
                        })
                        .collect(),
                    probes,
                    ports: named.iter().map(|(_, p)| *p).collect(),
                });
            }
        }
    }
    out
}

fn compose_services(compose: &Value) -> Vec<Container> {
    let mut out = Vec::new();
    for (name, svc) in compose["services"].as_object().expect("services") {
        let image = svc["image"].as_str().unwrap_or_default();
        if !image.contains("RTCONFIG_IMAGE") || !svc["entrypoint"].is_null() {
            continue; // not rtconfig, or a shell one-shot
        }
        let args: Vec<String> = svc["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        let env: Vec<(String, Option<String>)> = svc["environment"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned)))
            .collect();
        let mut probes = Vec::new();
        let test: Vec<&str> = svc["healthcheck"]["test"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if let Some(url) = test.iter().find(|t| t.starts_with("http://")) {
            let rest = &url["http://".len()..];
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            probes.push((port_of(authority), format!("/{path}")));
        }
        if args.first().is_some_and(|a| a == "admin" || a == "sidecar") {
            out.push(Container {
                place: format!("docker-compose.yml: {name}"),
                args,
                env,
                probes,
                ports: Vec::new(),
            });
        }
    }
    out
}

#[test]
fn k8s_and_compose_name_only_ports_paths_flags_and_variables_the_binary_has() {
    let mut containers = Vec::new();
    let mut docs_all = Vec::new();
    for dir in kustomizations() {
        let docs = yaml_docs(&kustomize(&dir));
        containers.extend(k8s_containers(&docs, &dir.display().to_string()));
        docs_all.extend(docs);
    }
    let compose = std::fs::read_to_string(repo().join("docker-compose.yml")).expect("compose");
    let compose = yaml_docs(&compose).pop().expect("one compose document");
    containers.extend(compose_services(&compose));
    // The sidecar component's init container and both admins are seen.
    assert!(containers.iter().any(|c| {
        c.args.first().is_some_and(|a| a == "sidecar") && !c.place.starts_with("docker-compose")
    }));
    assert!(
        containers
            .iter()
            .filter(|c| c.args.first().is_some_and(|a| a == "admin"))
            .count()
            >= 2
    );
    let problems: Vec<String> = containers.iter().flat_map(check).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Scrape paths and the metrics the alert rules use.
    let metrics_src: String = std::fs::read_dir(repo().join("src/metrics"))
        .expect("src/metrics")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    let names = regex::Regex::new(r"\brtconfig_[a-z_]+\b").expect("regex");
    let mut unknown = BTreeSet::new();
    for doc in &docs_all {
        match doc["kind"].as_str() {
            Some("PodMonitor") | Some("ServiceMonitor") => {
                let key = if doc["kind"] == "PodMonitor" {
                    "podMetricsEndpoints"
                } else {
                    "endpoints"
                };
                for ep in doc["spec"][key].as_array().into_iter().flatten() {
                    let path = ep["path"].as_str().unwrap_or_default();
                    for sub in ["sidecar", "admin"] {
                        assert!(
                            route_source(sub).contains(&format!(".route(\"{path}\"")),
                            "{}: rtconfig {sub} serves no {path}",
                            doc["kind"]
                        );
                    }
                }
            }
            Some("PrometheusRule") => {
                let text = doc.to_string();
                for m in names.find_iter(&text) {
                    let name = m.as_str();
                    if name == "rtconfig_namespace" {
                        continue; // the PodMonitor's relabelled target label
                    }
                    let base = name.trim_start_matches("rtconfig_");
                    let base = base.strip_suffix("_total").unwrap_or(base);
                    if !metrics_src.contains(&format!("\"{base}\"")) {
                        unknown.insert(name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    assert!(
        unknown.is_empty(),
        "alert rules name metrics rtconfig does not have: {unknown:?}"
    );
}
