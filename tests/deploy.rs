//! The deployment artifacts: every manifest under `deploy/` (Istio and
//! Envoy Gateway) and the OCI image layouts of `make oci`.
//!
//! Manifests: known kinds only; every embedded plugin configuration accepted
//! by its filter's own configuration parser (the code `on_configure` runs),
//! with the secrets it reads declared for the VM; fail-closed settings, the
//! filter order and per-workload selection; every IdP cluster the filters
//! call defined by the same directory, under the name the platform gives
//! it; the configurations equal to the documented examples but for the
//! listed deployment values; and the Istio EnvoyFilter's Wasm filter and the
//! Envoy Gateway IdP clusters loaded by a real Envoy.
//!
//! Images: the layout's structure, digests and sizes, media types, and a
//! module that still loads in Envoy after `wasm-opt -Oz`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/manifests.rs"]
mod manifests;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use baton_harness::{EnvoySpec, validate_config, wasm_file, workspace_root};
use baton_oci::{FILTERS, WasmImage, optimize, write_layout};
use manifests::{Manifest, manifests};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The workspace version: the tag every manifest pulls.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where `make oci` images are pushed, in the manifests.
const REGISTRY: &str = "ghcr.io/baton-identity";

impl Manifest {
    fn is(&self, kind: &str) -> bool {
        self.kind().1 == kind
    }

    fn platform(&self) -> Platform {
        if self.file.starts_with("istio/") { Platform::Istio } else { Platform::EnvoyGateway }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    Istio,
    EnvoyGateway,
}

impl Platform {
    /// The cluster name and host of an IdP of the examples (`idp`,
    /// `bank_idp`) here.
    fn idp(self, example: &str) -> (&'static str, &'static str) {
        match (self, example) {
            (Platform::Istio, "idp") => ("outbound|80||login.example.com", "login.example.com"),
            (Platform::Istio, "bank_idp") => ("outbound|80||bank.example.com", "bank.example.com"),
            (Platform::EnvoyGateway, "idp") => ("baton_idp", "login.example.com"),
            (Platform::EnvoyGateway, "bank_idp") => ("baton_bank_idp", "bank.example.com"),
            _ => panic!("no deployed cluster for the example's {example:?}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Filter {
    ClaimEnforcement,
    InTask,
    Obo,
}

impl Filter {
    fn from_root_id(root_id: &str) -> Filter {
        match root_id {
            "claim_enforcement" => Filter::ClaimEnforcement,
            "obo_credential_injection" => Filter::Obo,
            "in_task_auth_code" => Filter::InTask,
            other => panic!("unknown root id {other:?}"),
        }
    }

    fn root_id(self) -> &'static str {
        match self {
            Filter::ClaimEnforcement => "claim_enforcement",
            Filter::Obo => "obo_credential_injection",
            Filter::InTask => "in_task_auth_code",
        }
    }

    fn image(self) -> &'static str {
        FILTERS.iter().find(|f| f.module == self.root_id()).unwrap().image
    }

    /// Runs the filter's own configuration parser.
    fn parse(self, config: &[u8]) -> Result<(), String> {
        match self {
            Filter::ClaimEnforcement => claim_enforcement::config::parse(config).map(drop),
            Filter::Obo => obo_credential_injection::config::parse(config).map(drop),
            Filter::InTask => in_task_auth_code::config::parse(config).map(drop),
        }
        .map_err(|error| error.to_string())
    }
}

/// One filter configured by a manifest.
#[derive(Debug)]
struct Plugin<'a> {
    manifest: &'a Manifest,
    filter: Filter,
    /// Where the module comes from (OCI or HTTP URL).
    url: String,
    /// The plugin configuration.
    config: Value,
    /// Environment variables handed to the VM from the proxy's own.
    host_env: Vec<String>,
    /// Whether a broken module or configuration fails closed.
    fail_closed: bool,
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from).collect()
}

fn plugins(manifests: &[Manifest]) -> Vec<Plugin<'_>> {
    let mut out = Vec::new();
    for manifest in manifests {
        let spec = &manifest.doc["spec"];
        match manifest.kind().1 {
            "WasmPlugin" => out.push(Plugin {
                manifest,
                filter: Filter::from_root_id(spec["pluginName"].as_str().unwrap()),
                url: spec["url"].as_str().unwrap().to_string(),
                config: spec["pluginConfig"].clone(),
                host_env: spec["vmConfig"]["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|var| var["valueFrom"] == "HOST")
                    .map(|var| var["name"].as_str().unwrap().to_string())
                    .collect(),
                fail_closed: spec["failStrategy"] == "FAIL_CLOSE",
            }),
            "EnvoyFilter" => {
                for patch in spec["configPatches"].as_array().unwrap() {
                    if patch["applyTo"] != "EXTENSION_CONFIG" {
                        continue;
                    }
                    let config = &patch["patch"]["value"]["typed_config"]["value"]["config"];
                    let vm = &config["vm_config"];
                    out.push(Plugin {
                        manifest,
                        filter: Filter::from_root_id(config["root_id"].as_str().unwrap()),
                        url: vm["code"]["remote"]["http_uri"]["uri"].as_str().unwrap().to_string(),
                        config: serde_json::from_str(config["configuration"]["value"].as_str().unwrap())
                            .unwrap(),
                        host_env: strings(&vm["environment_variables"]["host_env_keys"]),
                        fail_closed: config["fail_open"] == false,
                    });
                }
            }
            "EnvoyExtensionPolicy" => {
                for wasm in spec["wasm"].as_array().unwrap() {
                    let code = &wasm["code"];
                    let url =
                        if code["type"] == "Image" { &code["image"]["url"] } else { &code["http"]["url"] };
                    out.push(Plugin {
                        manifest,
                        filter: Filter::from_root_id(wasm["rootID"].as_str().unwrap()),
                        url: url.as_str().unwrap().to_string(),
                        config: wasm["config"].clone(),
                        host_env: strings(&wasm["env"]["hostKeys"]),
                        fail_closed: wasm["failOpen"] == false,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Every value of `key` anywhere in `value`.
fn values_of<'a>(value: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (name, member) in map {
                if name == key {
                    out.push(member);
                }
                values_of(member, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| values_of(item, key, out)),
        _ => {}
    }
}

/// Calls `visit` on every object that has `key`, at any depth.
fn visit_objects_with(
    value: &mut Value,
    key: &str,
    visit: &mut dyn FnMut(&mut serde_json::Map<String, Value>),
) {
    match value {
        Value::Object(map) => {
            if map.contains_key(key) {
                visit(map);
            }
            map.values_mut().for_each(|member| visit_objects_with(member, key, visit));
        }
        Value::Array(items) => items.iter_mut().for_each(|item| visit_objects_with(item, key, visit)),
        _ => {}
    }
}

/// Istio's EnvoyFilter that delivers in-task-auth-code.
fn in_task_envoy_filter(manifests: &[Manifest]) -> &Manifest {
    manifests
        .iter()
        .find(|m| m.is("EnvoyFilter") && m.doc["metadata"]["name"] == "baton-in-task-auth-code")
        .unwrap()
}

/// Both platforms refuse header names with underscores on every listener
/// the filters run behind (a backend reads `x_user_id` as `x-user-id`).
#[test]
fn both_platforms_refuse_underscored_header_names() {
    let manifests = manifests();
    let istio = manifests
        .iter()
        .find(|m| m.is("EnvoyFilter") && m.doc["metadata"]["name"] == "baton-reject-underscored-headers")
        .expect("the Istio EnvoyFilter");
    let patch = &istio.doc["spec"]["configPatches"][0];
    assert_eq!(patch["applyTo"], "NETWORK_FILTER");
    assert_eq!(
        patch["match"]["listener"]["filterChain"]["filter"]["name"],
        "envoy.filters.network.http_connection_manager"
    );
    assert_eq!(patch["patch"]["operation"], "MERGE");
    let hcm = &patch["patch"]["value"]["typed_config"];
    assert_eq!(hcm["common_http_protocol_options"]["headers_with_underscores_action"], "REJECT_REQUEST");
    assert!(istio.doc["spec"].get("workloadSelector").is_none(), "every workload of the namespace");
    let gateway = manifests.iter().find(|m| m.is("ClientTrafficPolicy")).expect("the Envoy Gateway policy");
    assert_eq!(gateway.doc["spec"]["headers"]["withUnderscoresAction"], "RejectRequest");
    assert_eq!(gateway.doc["spec"]["targetRefs"][0]["name"], "finport");
    assert_eq!(gateway.doc["spec"]["path"]["escapedSlashesAction"], "UnescapeAndRedirect");
    // The HCM fields the Istio patch merges are Envoy's own: a real Envoy
    // takes them.
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let dir = temp_dir("underscores");
    let mut bootstrap = EnvoySpec::new(loopback).bootstrap(&dir);
    bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["common_http_protocol_options"] =
        hcm["common_http_protocol_options"].clone();
    let path = dir.join("envoy.json");
    fs::write(&path, bootstrap.to_string()).unwrap();
    let output =
        validate_config(&path, &dir, &[]).unwrap_or_else(|output| panic!("Envoy refused it:\n{output}"));
    assert!(output.contains("OK"), "{output}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn every_manifest_is_of_a_known_kind() {
    let allowed: [(&str, &str, &str); 16] = [
        ("istio/", "extensions.istio.io/v1alpha1", "WasmPlugin"),
        ("istio/", "networking.istio.io/v1alpha3", "EnvoyFilter"),
        ("istio/", "networking.istio.io/v1", "ServiceEntry"),
        ("istio/", "networking.istio.io/v1", "DestinationRule"),
        ("envoy-gateway/", "gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"),
        ("envoy-gateway/", "gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"),
        ("envoy-gateway/", "gateway.envoyproxy.io/v1alpha1", "EnvoyPatchPolicy"),
        ("envoy-gateway/", "gateway.envoyproxy.io/v1alpha1", "ClientTrafficPolicy"),
        ("envoy-gateway/", "gateway.envoyproxy.io/v1alpha1", "BackendTrafficPolicy"),
        // Plain Kubernetes: the gateway fleet and its store (deploy_replicas.rs).
        ("replicas/", "v1", "ConfigMap"),
        ("replicas/", "v1", "Service"),
        ("replicas/", "v1", "Secret"),
        ("replicas/", "apps/v1", "Deployment"),
        ("replicas/", "apps/v1", "StatefulSet"),
        ("replicas/", "policy/v1", "PodDisruptionBudget"),
        ("replicas/", "networking.k8s.io/v1", "NetworkPolicy"),
    ];
    for manifest in manifests() {
        if manifest.file.starts_with("istio/patches/") {
            // Strategic merge patches of a Deployment: no kind of their own.
            assert!(manifest.doc.get("kind").is_none(), "{}", manifest.file);
            assert!(manifest.doc["spec"]["template"]["spec"]["containers"].is_array(), "{}", manifest.file);
            continue;
        }
        let (api_version, kind) = manifest.kind();
        assert!(
            allowed
                .iter()
                .any(|(dir, a, k)| manifest.file.starts_with(dir) && *a == api_version && *k == kind),
            "{}: unexpected {api_version} {kind}",
            manifest.file
        );
        assert!(manifest.doc["metadata"]["name"].is_string(), "{}: no name", manifest.file);
        assert!(manifest.doc["metadata"]["namespace"].is_string(), "{}: no namespace", manifest.file);
    }
}

#[test]
fn every_plugin_configuration_is_accepted_by_its_filter() {
    let manifests = manifests();
    let plugins = plugins(&manifests);
    let mut seen = BTreeSet::new();
    for plugin in &plugins {
        let file = &plugin.manifest.file;
        // The configuration reads its secrets from VM environment variables,
        // which the manifest must pass from the proxy's environment. Here
        // PATH, which every process has, stands in for each, so the parser
        // checks everything but the secret's value.
        let mut config = plugin.config.clone();
        visit_objects_with(&mut config, "clientSecretEnv", &mut |holder| {
            let variable = holder["clientSecretEnv"].as_str().unwrap().to_string();
            assert!(
                plugin.host_env.contains(&variable),
                "{file}: {variable} is read by the filter but not passed to the VM ({:?})",
                plugin.host_env
            );
            holder.insert("clientSecretEnv".into(), json!("PATH"));
        });
        let mut literal_secrets = Vec::new();
        values_of(&config, "clientSecret", &mut literal_secrets);
        assert!(literal_secrets.is_empty(), "{file}: a secret in a manifest");
        plugin
            .filter
            .parse(config.to_string().as_bytes())
            .unwrap_or_else(|error| panic!("{file}: {:?} refuses its configuration: {error}", plugin.filter));
        assert!(plugin.fail_closed, "{file}: {:?} fails open", plugin.filter);
        seen.insert((plugin.manifest.platform() == Platform::Istio, plugin.filter));
    }
    assert_eq!(seen.len(), 6, "every filter on both platforms: {seen:?}");
}

#[test]
fn modules_come_from_the_images_make_oci_builds() {
    let manifests = manifests();
    for plugin in plugins(&manifests) {
        let file = &plugin.manifest.file;
        let image = format!("{REGISTRY}/{}:{VERSION}", plugin.filter.image());
        let expected = match (plugin.manifest.platform(), plugin.url.starts_with("https://")) {
            (_, true) => {
                // An HTTP source: the release's .wasm, checked against its digest.
                let code = &plugin.manifest.doc["spec"]["wasm"][0]["code"];
                let sha256 = code["http"]["sha256"].as_str().unwrap();
                assert!(sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()), "{file}");
                assert!(plugin.url.ends_with(&format!("/{}.wasm", plugin.filter.root_id())), "{file}");
                continue;
            }
            (Platform::Istio, false) => format!("oci://{image}"),
            (Platform::EnvoyGateway, false) => image,
        };
        assert_eq!(plugin.url, expected, "{file}");
    }
}

#[test]
fn istio_plugins_run_in_order_on_the_chosen_workloads_and_traffic() {
    let manifests = manifests();
    let phase_rank = |phase: &str| ["AUTHN", "AUTHZ", "STATS"].iter().position(|p| *p == phase);
    let mut ranks = Vec::new();
    for manifest in manifests.iter().filter(|m| m.is("WasmPlugin")) {
        let spec = &manifest.doc["spec"];
        let filter = Filter::from_root_id(spec["pluginName"].as_str().unwrap());
        let (phase, mode) = match filter {
            Filter::ClaimEnforcement => ("AUTHN", "SERVER"),
            Filter::InTask => ("AUTHZ", "SERVER"),
            Filter::Obo => ("STATS", "CLIENT"),
        };
        assert_eq!(spec["phase"], phase, "{}", manifest.file);
        ranks.push((filter, phase_rank(phase)));
        assert!(spec["imagePullPolicy"].is_string(), "{}", manifest.file);
        assert_eq!(spec["type"], "HTTP", "{}", manifest.file);
        let labels = spec["selector"]["matchLabels"].as_object().unwrap();
        assert!(!labels.is_empty(), "{}: applies to every workload of the namespace", manifest.file);
        for selector in spec["match"].as_array().unwrap() {
            assert_eq!(selector["mode"], mode, "{}", manifest.file);
            assert!(!selector["ports"].as_array().unwrap().is_empty(), "{}", manifest.file);
        }
    }
    ranks.sort();
    let in_filter_order: Vec<_> = ranks.iter().map(|(_, rank)| *rank).collect();
    assert!(in_filter_order.is_sorted(), "claim-enforcement, then in-task-auth-code, then obo: {ranks:?}");

    // The in-task EnvoyFilter: the field WasmPlugin lacks, on the labelled workloads.
    let envoy_filter = in_task_envoy_filter(&manifests);
    let spec = &envoy_filter.doc["spec"];
    assert!(!spec["workloadSelector"]["labels"].as_object().unwrap().is_empty());
    let config = &spec["configPatches"][0]["patch"]["value"]["typed_config"]["value"]["config"];
    assert_eq!(config["allow_on_headers_stop_iteration"], true);
    let insert = &spec["configPatches"][1];
    assert_eq!(insert["applyTo"], "HTTP_FILTER");
    assert_eq!(insert["patch"]["value"]["name"], spec["configPatches"][0]["patch"]["value"]["name"]);
    assert_eq!(insert["match"]["context"], "SIDECAR_INBOUND");

    // Secrets reach the sidecars from Kubernetes Secrets, on the workloads the plugins select.
    for patch in manifests.iter().filter(|m| m.file.starts_with("istio/patches/")) {
        let template = &patch.doc["spec"]["template"];
        let proxy = template["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "istio-proxy")
            .unwrap();
        for var in proxy["env"].as_array().unwrap() {
            assert!(var["valueFrom"]["secretKeyRef"]["name"].is_string(), "{}", patch.file);
            let name = var["name"].as_str().unwrap();
            let reader = plugins(&manifests)
                .into_iter()
                .find(|p| p.manifest.platform() == Platform::Istio && p.host_env.iter().any(|v| v == name))
                .unwrap_or_else(|| panic!("{}: no plugin reads {name}", patch.file));
            let selector = reader.manifest.doc["spec"]["selector"]["matchLabels"]
                .as_object()
                .or_else(|| reader.manifest.doc["spec"]["workloadSelector"]["labels"].as_object())
                .unwrap();
            for (label, value) in selector {
                assert_eq!(&template["metadata"]["labels"][label], value, "{}: label {label}", patch.file);
            }
        }
    }
}

/// The IdP clusters a platform's manifests define, with the host each
/// reaches.
fn defined_clusters(manifests: &[Manifest], platform: Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for manifest in manifests.iter().filter(|m| m.platform() == platform) {
        let spec = &manifest.doc["spec"];
        if manifest.is("ServiceEntry") {
            let host = spec["hosts"][0].as_str().unwrap();
            let rule = manifests
                .iter()
                .find(|m| m.is("DestinationRule") && m.doc["spec"]["host"] == host)
                .unwrap_or_else(|| panic!("no DestinationRule for {host}"));
            for port in spec["ports"].as_array().unwrap().iter().filter(|p| p["protocol"] == "HTTP") {
                // Plain HTTP from the filter, TLS from the cluster to port 443.
                assert_eq!(port["targetPort"], 443, "{host}");
                let tls = rule.doc["spec"]["trafficPolicy"]["portLevelSettings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["port"]["number"] == port["number"])
                    .unwrap_or_else(|| panic!("{host}: port {} without TLS origination", port["number"]));
                assert_eq!(tls["tls"]["mode"], "SIMPLE");
                assert_eq!(tls["tls"]["sni"], host);
                out.push((format!("outbound|{}||{host}", port["number"]), host.to_string()));
            }
        }
        if manifest.is("EnvoyProxy") {
            for cluster in bootstrap_clusters(manifest) {
                let host = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
                    ["socket_address"]["address"]
                    .as_str()
                    .unwrap();
                assert_eq!(cluster["transport_socket"]["typed_config"]["sni"], host);
                out.push((cluster["name"].as_str().unwrap().to_string(), host.to_string()));
            }
        }
    }
    out
}

/// The static clusters an EnvoyProxy merges into the bootstrap.
fn bootstrap_clusters(envoy_proxy: &Manifest) -> Vec<Value> {
    let bootstrap = &envoy_proxy.doc["spec"]["bootstrap"];
    assert_eq!(bootstrap["type"], "Merge");
    let value: Value = serde_norway::from_str(bootstrap["value"].as_str().unwrap()).unwrap();
    value["static_resources"]["clusters"].as_array().unwrap().clone()
}

#[test]
fn every_cluster_the_filters_call_is_defined_and_reached_by_its_host_name() {
    let manifests = manifests();
    for platform in [Platform::Istio, Platform::EnvoyGateway] {
        let defined = defined_clusters(&manifests, platform);
        let hosts: BTreeSet<&str> = defined.iter().map(|(_, host)| host.as_str()).collect();
        assert_eq!(
            hosts,
            BTreeSet::from(["bank.example.com", "login.example.com"]),
            "{platform:?}: {defined:?}"
        );
        for plugin in plugins(&manifests).iter().filter(|p| p.manifest.platform() == platform) {
            let mut config = plugin.config.clone();
            let mut called = BTreeSet::new();
            visit_objects_with(&mut config, "cluster", &mut |caller| {
                let cluster = caller["cluster"].as_str().unwrap();
                let (_, host) = defined.iter().find(|(name, _)| name == cluster).unwrap_or_else(|| {
                    panic!(
                        "{}: cluster {cluster:?} is not defined; defined: {defined:?}",
                        plugin.manifest.file
                    )
                });
                // Without `authority` the call's Host would be the cluster name.
                assert_eq!(caller["authority"], host.as_str(), "{}: {cluster}", plugin.manifest.file);
                called.insert(host.as_str());
            });
            // Keys and token endpoints at the users' IdP; in-task-auth-code
            // also calls the bank.
            let expected = match plugin.filter {
                Filter::InTask => BTreeSet::from(["bank.example.com", "login.example.com"]),
                Filter::ClaimEnforcement | Filter::Obo => BTreeSet::from(["login.example.com"]),
            };
            assert_eq!(called, expected, "{}: the IdPs it calls", plugin.manifest.file);
        }
    }
}

/// The configuration of the `filter` from a README code block that follows
/// `heading`: a JSON block as is, or the `configuration.value` of a YAML one.
fn readme_example(heading: &str, filter: Filter) -> Value {
    let readme = fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = &readme[readme.find(heading).unwrap_or_else(|| panic!("README: no {heading:?}"))..];
    let start = section.find("```").unwrap();
    let (fence, rest) = section[start + 3..].split_once('\n').unwrap();
    let block = &rest[..rest.find("```").unwrap()];
    if fence == "json" {
        return serde_json::from_str(block).unwrap();
    }
    let filters: Value = serde_norway::from_str(block).unwrap();
    wasm_configuration(&filters, filter)
}

/// The plugin configuration of `filter` in an Envoy config (or part of one).
fn wasm_configuration(envoy: &Value, filter: Filter) -> Value {
    let mut configs = Vec::new();
    values_of(envoy, "config", &mut configs);
    let config = configs
        .into_iter()
        .find(|c| c["root_id"] == filter.root_id())
        .unwrap_or_else(|| panic!("no {filter:?} filter"));
    serde_json::from_str(config["configuration"]["value"].as_str().unwrap()).unwrap()
}

/// The deployment values that replace the examples' loopback ones, as JSON
/// text (whole strings, or URL prefixes).
const DEPLOYMENT_VALUES: [(&str, &str); 7] = [
    ("\"http://127.0.0.1:9010", "\"https://bank.example.com"),
    ("\"127.0.0.1:9010\"", "\"bank.example.com\""),
    ("\"http://127.0.0.1:9000", "\"https://login.example.com"),
    ("\"127.0.0.1:9000\"", "\"login.example.com\""),
    ("\"http://127.0.0.1:10003", "\"https://transfers.example.com"),
    ("\"portfolio.internal\"", "\"portfolio-agent.finport.svc.cluster.local\""),
    ("\"BROKER_SECRET\"", "\"BATON_BROKER_SECRET\""),
];

/// An example configuration as deployed on `platform`: the deployment
/// values, the platform's names for the IdP clusters, and `authority` set
/// to the IdP's host wherever the example left it to the cluster name.
fn deployed(example: &Value, platform: Platform) -> Value {
    let mut text = example.to_string();
    for (from, to) in DEPLOYMENT_VALUES {
        text = text.replace(from, to);
    }
    let mut value: Value = serde_json::from_str(&text).unwrap();
    visit_objects_with(&mut value, "cluster", &mut |caller| {
        let (cluster, host) = platform.idp(caller["cluster"].as_str().unwrap());
        caller.insert("cluster".into(), json!(cluster));
        caller.entry("authority").or_insert_with(|| json!(host));
    });
    value
}

#[test]
fn plugin_configurations_are_the_documented_examples_deployed() {
    let in_task_example: Value = serde_norway::from_str(
        &fs::read_to_string(workspace_root().join("envoy-configs/in-task-auth-code.yaml")).unwrap(),
    )
    .unwrap();
    let examples = [
        (
            Filter::ClaimEnforcement,
            readme_example("## Use the filter in your own Envoy", Filter::ClaimEnforcement),
        ),
        (Filter::Obo, readme_example("Minimal configuration (an exchange for one upstream", Filter::Obo)),
        (Filter::InTask, wasm_configuration(&in_task_example, Filter::InTask)),
    ];
    let manifests = manifests();
    let mut compared = 0;
    for plugin in plugins(&manifests) {
        // The plugin a file is named after (not, e.g., the claim-enforcement
        // that runs before in-task-auth-code in that file).
        let stem = Path::new(&plugin.manifest.file).file_name().unwrap().to_string_lossy().into_owned();
        if !stem.starts_with(plugin.filter.image()) {
            continue;
        }
        let (_, example) = examples.iter().find(|(filter, _)| *filter == plugin.filter).unwrap();
        let expected = deployed(example, plugin.manifest.platform());
        assert_eq!(
            plugin.config, expected,
            "{}: differs from the documented example beyond the deployment values",
            plugin.manifest.file
        );
        compared += 1;
    }
    assert_eq!(compared, 8, "plugins compared");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("baton-deploy-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Istio's EnvoyFilter for in-task-auth-code, with the module the build
/// made and the IdP clusters of both platforms, loaded by a real Envoy:
/// Envoy accepts the Wasm filter's fields (`allow_on_headers_stop_iteration`,
/// `environment_variables`), the filter accepts its configuration with the
/// secret from the proxy's environment, and Envoy accepts the clusters
/// Envoy Gateway's bootstrap merge adds.
#[test]
fn the_envoy_filter_and_the_idp_clusters_load_in_envoy() {
    let manifests = manifests();
    let envoy_filter = in_task_envoy_filter(&manifests);
    let mut wasm =
        envoy_filter.doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"].clone();
    wasm["@type"] = json!("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm");
    wasm["config"]["vm_config"]["code"] =
        json!({"local": {"filename": wasm_file("in_task_auth_code").to_string_lossy()}});

    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let mut spec = EnvoySpec::new(loopback).native_filter("in_task_auth_code", wasm);
    for (name, _) in defined_clusters(&manifests, Platform::Istio) {
        spec = spec.cluster(&name, loopback);
    }
    let dir = temp_dir("envoy-filter");
    let mut bootstrap = spec.bootstrap(&dir);
    let clusters = bootstrap["static_resources"]["clusters"].as_array_mut().unwrap();
    clusters.extend(manifests.iter().filter(|m| m.is("EnvoyProxy")).flat_map(bootstrap_clusters));
    let path = dir.join("envoy.json");
    fs::write(&path, bootstrap.to_string()).unwrap();
    let secrets = [("BATON_BANK_SECRET", "bank-secret"), ("BATON_FINPORT_SECRET", "sign-in-secret")];
    let output = validate_config(&path, &dir, &secrets)
        .unwrap_or_else(|output| panic!("Envoy refused the EnvoyFilter's filter or the clusters:\n{output}"));
    assert!(output.contains("OK"), "{output}");
    assert!(
        output.contains("baton in-task-auth-code: configured"),
        "the filter took its configuration: {output}"
    );
    let _ = fs::remove_dir_all(&dir);
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// The blob a descriptor names, checked against its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> Vec<u8> {
    let digest = descriptor["digest"].as_str().unwrap();
    let bytes = fs::read(layout.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())).unwrap();
    assert_eq!(sha256(&bytes), digest, "blob content matches its digest");
    assert_eq!(descriptor["size"].as_u64(), Some(bytes.len() as u64), "size of {digest}");
    bytes
}

/// What an image layout holds, checked: the manifest of `tag` and the
/// module it carries.
fn read_layout(layout: &Path, tag: &str) -> (Value, Vec<u8>) {
    let marker: Value = serde_json::from_slice(&fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(marker, json!({"imageLayoutVersion": "1.0.0"}));
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(entries[0]["annotations"]["org.opencontainers.image.ref.name"], tag);

    let manifest: Value = serde_json::from_slice(&blob(layout, &entries[0])).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.module.wasm.config.v1+json");
    let config: Value = serde_json::from_slice(&blob(layout, &manifest["config"])).unwrap();
    assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("wasm"), Some("wasip1")));
    assert!(config["created"].as_str().is_some_and(|t| t.len() == 20 && t.ends_with('Z')), "{config}");

    // Istio and Envoy Gateway read a raw module from an image of exactly
    // two layers, one of them the module.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{manifest}");
    let modules: Vec<&Value> = layers
        .iter()
        .filter(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
        .collect();
    assert_eq!(modules.len(), 1, "one module layer: {manifest}");
    let runtime_config = layers.iter().find(|l| l["mediaType"] == manifest["config"]["mediaType"]).unwrap();
    assert_eq!(runtime_config["digest"], manifest["config"]["digest"]);
    let module = blob(layout, modules[0]);
    assert!(module.starts_with(b"\0asm"), "the layer is the raw module");
    (manifest, module)
}

#[test]
fn make_oci_layouts_are_complete_and_their_digests_hold() {
    let dir = temp_dir("oci");
    for filter in FILTERS {
        let built = fs::read(wasm_file(filter.module)).expect("make build first");
        let image = WasmImage { filter, version: VERSION, created_unix_secs: 1_700_000_000, module: &built };
        let layout = dir.join(filter.image);
        let written = write_layout(&layout, &image).unwrap();
        let (manifest, module) = read_layout(&layout, VERSION);
        assert_eq!(module, built, "{}: the module as given", filter.image);
        assert_eq!(manifest["annotations"]["org.opencontainers.image.created"], "2023-11-14T22:13:20Z");
        assert_eq!(written.module.digest, sha256(&built));
        // Written again, the layout is the same: no stale blob stays.
        write_layout(&layout, &image).unwrap();
        assert_eq!(fs::read_dir(layout.join("blobs/sha256")).unwrap().count(), 3);
    }
    let _ = fs::remove_dir_all(&dir);
}

/// The module in the image is `wasm-opt -Oz`'s output when wasm-opt is
/// installed: it must still load, and take its configuration, in Envoy.
#[test]
fn the_module_in_the_image_loads_in_envoy() {
    let dir = temp_dir("oci-envoy");
    let filter = FILTERS[0];
    let optimized = dir.join("optimized.wasm");
    if !optimize(&wasm_file(filter.module), &optimized).unwrap() {
        eprintln!("wasm-opt is not installed: the image carries the module as built");
        return;
    }
    let module = fs::read(&optimized).unwrap();
    let image = WasmImage { filter, version: VERSION, created_unix_secs: 0, module: &module };
    write_layout(&dir.join("layout"), &image).unwrap();
    let (_, from_layout) = read_layout(&dir.join("layout"), VERSION);
    let shipped = dir.join("shipped.wasm");
    fs::write(&shipped, from_layout).unwrap();

    let root = workspace_root();
    let config = fs::read_to_string(root.join("envoy-configs/claim-enforcement.yaml")).unwrap();
    let built_path = "target/wasm32-wasip1/release/claim_enforcement.wasm";
    assert!(config.contains(built_path));
    let config_path = dir.join("envoy.yaml");
    fs::write(&config_path, config.replace(built_path, &shipped.to_string_lossy())).unwrap();
    let output = validate_config(&config_path, &root, &[])
        .unwrap_or_else(|output| panic!("Envoy refused the optimised module:\n{output}"));
    assert!(output.contains("baton claim-enforcement: configured"), "{output}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_agents_route_keeps_its_streams_open_on_both_platforms() {
    let manifests = manifests();
    // Envoy Gateway: a BackendTrafficPolicy on the agent's HTTPRoute lifts
    // the 15 s route timeout.
    let policy = manifests
        .iter()
        .find(|m| m.is("BackendTrafficPolicy"))
        .expect("a BackendTrafficPolicy for the agent's streams");
    assert_eq!(policy.doc["spec"]["targetRefs"][0]["name"], "transfer-agent");
    assert_eq!(policy.doc["spec"]["timeout"]["http"]["requestTimeout"], "0s");
    // Istio routes have no timeout unless a VirtualService sets one, and
    // the manifests set none.
    for manifest in manifests.iter().filter(|m| m.platform() == Platform::Istio) {
        let mut found = Vec::new();
        values_of(&manifest.doc, "timeout", &mut found);
        assert!(found.iter().all(|t| t.as_str() == Some("30s")), "{}: a route timeout", manifest.file);
    }
}
