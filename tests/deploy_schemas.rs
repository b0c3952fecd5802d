//! The deployment manifests against the schemas of the platforms they are
//! written for, offline, with the validators `make test-tools` installs:
//!
//! - Istio, Envoy Gateway and Gateway API resources: the validators of the
//!   `@kubernetes-models` npm packages, generated from those projects'
//!   schemas (`schemas/validate-k8s-models.mjs`, on Node.js);
//! - Kubernetes objects (the Deployment patches, as `kubectl patch` applies
//!   them): kubernetes-validate, strict, for a pinned Kubernetes version
//!   (`schemas/validate_kubernetes.py`, in `.venv-schemas`);
//! - `integration/docker-compose.yml`: `docker-compose config` (1.29).
//!
//! Every document under `deploy/` goes to exactly one validator, which
//! reports on each document it is given. Each validator also refuses broken
//! copies of the real manifests, with the reason expected: a validator that
//! passed everything would fail its test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/manifests.rs"]
mod manifests;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use baton_harness::workspace_root;
use manifests::{Manifest, manifests};
use serde_json::{Map, Value, json};

/// The API groups of the custom resources the `@kubernetes-models` packages
/// have schemas for (the validator's own list is in validate-k8s-models.mjs).
const CUSTOM_RESOURCE_GROUPS: [&str; 6] = [
    "extensions.istio.io",
    "networking.istio.io",
    "security.istio.io",
    "telemetry.istio.io",
    "gateway.envoyproxy.io",
    "gateway.networking.k8s.io",
];

/// The API groups of Kubernetes itself ("" is the core group, `v1`).
const KUBERNETES_GROUPS: [&str; 16] = [
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "certificates.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "node.k8s.io",
    "resource.k8s.io",
    "scheduling.k8s.io",
    "storage.k8s.io",
];

/// A validator of the manifests under `deploy/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validator {
    /// The `@kubernetes-models` packages: Istio, Envoy Gateway, Gateway API.
    CustomResources,
    /// kubernetes-validate: the Kubernetes API's own objects.
    Kubernetes,
}

impl Validator {
    const ALL: [Validator; 2] = [Validator::CustomResources, Validator::Kubernetes];

    /// Whether `manifest` is of the kind family this validator has schemas for.
    fn covers(self, manifest: &Manifest) -> bool {
        let (api_version, _) = manifest.kind();
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        match self {
            Validator::CustomResources => CUSTOM_RESOURCE_GROUPS.contains(&group),
            Validator::Kubernetes => {
                (!api_version.is_empty() && KUBERNETES_GROUPS.contains(&group))
                    || is_deployment_patch(manifest)
            }
        }
    }

    /// The document this validator checks for `manifest`.
    fn document(self, manifest: &Manifest) -> Value {
        if is_deployment_patch(manifest) { patched_deployment(manifest) } else { manifest.doc.clone() }
    }

    fn command(self) -> Command {
        let root = workspace_root();
        let schemas = root.join("tests/schemas");
        let mut command = match self {
            Validator::CustomResources => {
                let mut node = Command::new("node");
                node.arg(schemas.join("validate-k8s-models.mjs"));
                node
            }
            Validator::Kubernetes => {
                let mut python = Command::new(root.join(".venv-schemas/bin/python"));
                python.arg(schemas.join("validate_kubernetes.py"));
                python
            }
        };
        command.current_dir(&schemas);
        command
    }

    /// Runs the validator over named documents: its verdict on each, and its
    /// whole output (for messages). Every document must be reported once.
    fn run(self, documents: &[(String, Value)]) -> (BTreeMap<String, Result<(), String>>, String) {
        for (name, _) in documents {
            assert!(
                !name.contains(": ") && !name.contains('\n'),
                "{name:?}: not a name the output can carry"
            );
        }
        let input: Vec<Value> =
            documents.iter().map(|(name, doc)| json!({"name": name, "doc": doc})).collect();
        let mut child = self
            .command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{self:?}: cannot start the validator ({e}); `make test-tools` installs it")
            });
        child.stdin.take().unwrap().write_all(Value::from(input).to_string().as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        let text = transcript(&output);
        let mut verdicts = BTreeMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let (name, verdict) = if let Some(name) = line.strip_prefix("ok ") {
                (name, Ok(()))
            } else if let Some((name, reason)) = line.strip_prefix("error ").and_then(|l| l.split_once(": "))
            {
                (name, Err(reason.to_string()))
            } else {
                panic!("{self:?}: unexpected output line {line:?}\n{text}")
            };
            assert!(
                verdicts.insert(name.to_string(), verdict).is_none(),
                "{self:?}: {name} reported twice\n{text}"
            );
        }
        let names: Vec<&String> = verdicts.keys().collect();
        let mut given: Vec<&String> = documents.iter().map(|(name, _)| name).collect();
        given.sort();
        assert_eq!(names, given, "{self:?}: a verdict on each document given, and only those\n{text}");
        let refused = verdicts.values().any(Result::is_err);
        assert_eq!(output.status.code(), Some(i32::from(refused)), "{self:?}: exit status\n{text}");
        (verdicts, text)
    }
}

fn transcript(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}stderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `istio/patches/*.yaml`: strategic merge patches of a Deployment, without
/// a kind of their own.
fn is_deployment_patch(manifest: &Manifest) -> bool {
    manifest.file.starts_with("istio/patches/") && manifest.doc.get("kind").is_none()
}

/// The fields of a Pod spec whose lists `kubectl patch` merges by `name`
/// (their patchMergeKey).
const MERGED_BY_NAME: [&str; 4] = ["containers", "initContainers", "env", "volumes"];

/// `kubectl patch`'s strategic merge of `patch` into `base`, for what a
/// Deployment patch here holds: objects merge field by field, the lists of
/// [`MERGED_BY_NAME`] item by item, anything else replaces.
fn strategic_merge(base: &mut Value, patch: &Value, field: &str) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                assert!(!key.starts_with('$'), "patch directive {key:?}: not modelled here");
                match base.get_mut(key) {
                    Some(existing) => strategic_merge(existing, value, key),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(patch)) if MERGED_BY_NAME.contains(&field) => {
            for item in patch {
                match base.iter_mut().find(|existing| existing["name"] == item["name"]) {
                    Some(existing) => strategic_merge(existing, item, ""),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// A Deployment patch as `kubectl patch deployment <name>` leaves the
/// Deployment: applied to a minimal one of the name in the file's comment
/// (the file's name), which the cluster would already run.
fn patched_deployment(manifest: &Manifest) -> Value {
    let name = Path::new(&manifest.file).file_stem().unwrap().to_str().unwrap();
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "finport"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": format!("registry.example.com/{name}:1")}]},
            },
        },
    });
    strategic_merge(&mut deployment, &manifest.doc, "");
    let containers = deployment["spec"]["template"]["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2, "{}: the app and istio-proxy", manifest.file);
    deployment
}

/// The documents under `deploy/` that `validator` checks, named, after
/// checking that every document there goes to exactly one validator.
fn documents_for(validator: Validator) -> Vec<(String, Value)> {
    let manifests = manifests();
    for manifest in &manifests {
        let validators: Vec<Validator> = Validator::ALL.into_iter().filter(|v| v.covers(manifest)).collect();
        assert_eq!(
            validators.len(),
            1,
            "{}: {:?} is checked by {validators:?}",
            manifest.name(),
            manifest.kind()
        );
    }
    let documents: Vec<(String, Value)> =
        manifests.iter().filter(|m| validator.covers(m)).map(|m| (m.name(), validator.document(m))).collect();
    assert!(!documents.is_empty(), "{validator:?}: nothing to check");
    documents
}

/// A change that breaks a copy of a real document.
#[derive(Debug)]
enum Edit {
    /// The field at a JSON pointer gets another name.
    Rename(&'static str, &'static str),
    /// The value at a JSON pointer is replaced.
    Set(&'static str, Value),
    /// Another `apiVersion` and `kind`.
    Retype(&'static str, &'static str),
}

impl Edit {
    fn apply(&self, doc: &mut Value) {
        match self {
            Edit::Rename(pointer, to) => {
                let (object, field) = parent(doc, pointer);
                let value = object.remove(field).unwrap_or_else(|| panic!("no {pointer}"));
                object.insert(to.to_string(), value);
            }
            Edit::Set(pointer, value) => {
                let (object, field) = parent(doc, pointer);
                object.insert(field.to_string(), value.clone());
            }
            Edit::Retype(api_version, kind) => {
                doc["apiVersion"] = json!(api_version);
                doc["kind"] = json!(kind);
            }
        }
    }
}

/// The object that holds the field at `pointer`, and the field's name.
fn parent<'a>(doc: &'a mut Value, pointer: &'a str) -> (&'a mut Map<String, Value>, &'a str) {
    let (parent, field) = pointer.rsplit_once('/').unwrap();
    let object =
        doc.pointer_mut(parent).and_then(Value::as_object_mut).unwrap_or_else(|| panic!("no {parent}"));
    (object, field)
}

/// Runs `validator` over the real documents and over broken copies of them
/// (the document, the change, the reason the validator must give): every
/// real one passes, every broken one is refused for its reason.
fn check(validator: Validator, documents: Vec<(String, Value)>, broken: Vec<(&str, Edit, &str)>) {
    let mut all = documents.clone();
    for (of, edit, _) in &broken {
        let mut doc =
            documents.iter().find(|(name, _)| name == of).unwrap_or_else(|| panic!("no {of}")).1.clone();
        edit.apply(&mut doc);
        all.push((format!("{of} broken by {edit:?}"), doc));
    }
    let (verdicts, output) = validator.run(&all);
    for (name, _) in &documents {
        if let Err(reason) = &verdicts[name] {
            panic!("{validator:?} refuses {name}: {reason}\n{output}");
        }
    }
    for (of, edit, reason) in &broken {
        let name = format!("{of} broken by {edit:?}");
        match &verdicts[&name] {
            Ok(()) => panic!("{validator:?} accepts {name}\n{output}"),
            Err(given) => {
                assert!(given.contains(reason), "{validator:?}: {name}: not refused for {reason:?}\n{output}")
            }
        }
    }
}

#[test]
fn istio_and_envoy_gateway_resources_match_their_schemas() {
    let documents = documents_for(Validator::CustomResources);
    let broken = vec![
        (
            "istio/claim-enforcement.yaml#0",
            Edit::Rename("/spec/failStrategy", "failStrateg"),
            "data/spec/failStrateg is not a field",
        ),
        (
            "istio/obo-credential-injection.yaml#0",
            Edit::Rename("/spec/vmConfig/env/0/valueFrom", "valuefrom"),
            "data/spec/vmConfig/env/0/valuefrom is not a field",
        ),
        (
            "istio/claim-enforcement.yaml#0",
            Edit::Set("/spec/phase", json!("AUTHENTICATION")),
            "data/spec/phase must be equal to one of the allowed values",
        ),
        (
            "istio/underscored-headers.yaml#0",
            Edit::Set("/apiVersion", json!("networking.istio.io/v1alpha4")),
            "no schema for networking.istio.io/v1alpha4 EnvoyFilter",
        ),
        (
            "istio/idp.yaml#0",
            Edit::Set("/spec/ports/0/number", json!("80")),
            "data/spec/ports/0/number must be integer",
        ),
        (
            "envoy-gateway/claim-enforcement.yaml#0",
            Edit::Rename("/spec/wasm/0/failOpen", "failopen"),
            "data/spec/wasm/0/failopen is not a field",
        ),
        (
            "envoy-gateway/client-traffic-policy.yaml#0",
            Edit::Set("/spec/headers/withUnderscoresAction", json!("Reject")),
            "data/spec/headers/withUnderscoresAction must be equal to one of the allowed values",
        ),
        // No Gateway API document here: one made of a policy shows that its
        // schemas are reached all the same.
        (
            "envoy-gateway/claim-enforcement.yaml#0",
            Edit::Retype("gateway.networking.k8s.io/v1", "HTTPRoute"),
            "data/spec/wasm is not a field",
        ),
        (
            "envoy-gateway/envoy-proxy.yaml#0",
            Edit::Set("/kind", json!("EnvoyProxies")),
            "no schema for gateway.envoyproxy.io/v1alpha1 EnvoyProxies",
        ),
    ];
    check(Validator::CustomResources, documents, broken);
}

#[test]
fn kubernetes_objects_match_the_kubernetes_schemas() {
    let documents = documents_for(Validator::Kubernetes);
    let broken = vec![
        (
            "istio/patches/agent-broker.yaml#0",
            Edit::Set("/spec/replicas", json!("2")),
            "/spec/replicas: '2' is not of type 'integer'",
        ),
        (
            "istio/patches/transfer-agent.yaml#0",
            Edit::Rename("/spec/template/spec/containers/1/env", "envs"),
            "('envs' was unexpected)",
        ),
        (
            "istio/patches/transfer-agent.yaml#0",
            Edit::Set("/spec/template/spec/containers/1/env/0/valueFrom/secretKeyRef/key", json!(5)),
            "/spec/template/spec/containers/1/env/0/valueFrom/secretKeyRef/key: 5 is not of type 'string'",
        ),
        (
            "istio/patches/agent-broker.yaml#0",
            Edit::Set("/kind", json!("Deploymnt")),
            "Couldn't find schema for kind Deploymnt",
        ),
    ];
    check(Validator::Kubernetes, documents, broken);
}

/// `docker-compose config` on `file`, with the paths in it taken from
/// `integration/` as for the real file.
fn compose_config(file: &Path) -> Result<String, String> {
    let integration = workspace_root().join("integration");
    let output = Command::new("/usr/bin/docker-compose")
        .arg("--project-directory")
        .arg(&integration)
        .arg("--file")
        .arg(file)
        .args(["config", "--quiet"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run docker-compose ({e}); `make test-tools` installs it"));
    let text = transcript(&output);
    if output.status.success() { Ok(text) } else { Err(text) }
}

#[test]
fn the_compose_file_matches_the_compose_schema() {
    let real = workspace_root().join("integration/docker-compose.yml");
    compose_config(&real)
        .unwrap_or_else(|output| panic!("docker-compose refuses {}:\n{output}", real.display()));

    let text = fs::read_to_string(&real).unwrap();
    let dir = std::env::temp_dir().join(format!("baton-compose-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let command = "    command: [\"mock-idp\", \"--port\", \"9000\"]\n";
    assert!(text.contains(command));
    let broken: [(&str, String, &str); 3] = [
        (
            "unknown top-level key",
            format!("{text}volumez: {{}}\n"),
            "'volumez' does not match any of the regexes",
        ),
        (
            "misspelled service option",
            text.replace(command, &command.replace("command:", "comand:")),
            "Unsupported config option for services.mock-idp: 'comand'",
        ),
        (
            "network mode as a list",
            text.replace("network_mode: host\n", "network_mode: [host]\n"),
            "network_mode contains an invalid type, it should be a string",
        ),
    ];
    let path = dir.join("docker-compose.yml");
    for (name, copy, reason) in broken {
        assert_ne!(copy, text, "{name}: the copy is changed");
        fs::write(&path, copy).unwrap();
        match compose_config(&path) {
            Ok(output) => panic!("docker-compose accepts the broken copy ({name}):\n{output}"),
            Err(output) => {
                assert!(output.contains(reason), "{name}: refused, but not for {reason:?}:\n{output}")
            }
        }
    }
    let _ = fs::remove_dir_all(&dir);
}
