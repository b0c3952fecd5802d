//! `deploy/replicas/`: obo-credential-injection and in-task-auth-code, each
//! on three Envoy replicas sharing a three-member etcd (issue 16). Each
//! gateway's bootstrap loads in a real Envoy with the module `make build`
//! makes and the secrets from the environment its Deployment gives it, and
//! is refused without the sealing key; each fleet is three replicas with a
//! disruption budget that keeps two; the store is three members that a
//! drain takes one at a time, reached by the gateways' `etcd` cluster
//! through the Service that publishes them, and only by the gateways' pods;
//! the Secret shipped holds no key, and the filters refuse to start with
//! it. (Their schemas: `deploy_schemas.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/manifests.rs"]
mod manifests;

use std::fs;

use baton_harness::{sealing_secret, validate_config, wasm_file};
use manifests::{Manifest, manifests};
use serde_json::{Value, json};

/// Each gateway: its name (ConfigMap, Deployment, Service, budget), its
/// filter's root id, and the name the filter logs under.
const GATEWAYS: [(&str, &str, &str); 2] = [
    ("baton-obo-gateway", "obo_credential_injection", "obo-credential-injection"),
    ("baton-transfer-gateway", "in_task_auth_code", "in-task-auth-code"),
];

/// The document of `kind` named `name` under `deploy/replicas/`.
fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    manifests
        .iter()
        .find(|m| m.file.starts_with("replicas/") && m.kind().1 == kind && m.doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/replicas: no {kind} {name}"))
}

/// A gateway's Envoy bootstrap, from its ConfigMap.
fn bootstrap(manifests: &[Manifest], gateway: &str) -> Value {
    let config_map = find(manifests, "ConfigMap", gateway);
    serde_norway::from_str(config_map.doc["data"]["envoy.yaml"].as_str().unwrap()).unwrap()
}

/// The Baton filter's Wasm config in `bootstrap`, and its plugin
/// configuration.
fn baton_filter<'a>(bootstrap: &'a mut Value, root_id: &str) -> (&'a mut Value, Value) {
    let filters = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"];
    let wasm = &mut filters[0]["typed_config"]["config"];
    assert_eq!(wasm["root_id"], root_id);
    let config = serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
    (wasm, config)
}

/// Every variable the configuration reads a secret from.
fn secret_variables(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "clientSecretEnv" || key == "secretEnv" {
                    out.push(value.as_str().unwrap().to_string());
                } else {
                    secret_variables(value, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| secret_variables(item, out)),
        _ => {}
    }
}

fn parse(root_id: &str, config: &Value) -> Result<(), String> {
    let bytes = config.to_string();
    match root_id {
        "obo_credential_injection" => obo_credential_injection::config::parse(bytes.as_bytes()).map(drop),
        "in_task_auth_code" => in_task_auth_code::config::parse(bytes.as_bytes()).map(drop),
        other => panic!("no parser for {other}"),
    }
    .map_err(|error| error.to_string())
}

#[test]
fn each_gateway_loads_in_envoy_with_the_store_and_the_secrets_its_deployment_gives() {
    let manifests = manifests();
    for (gateway, root_id, logs_as) in GATEWAYS {
        let mut bootstrap = bootstrap(&manifests, gateway);
        let (wasm, config) = baton_filter(&mut bootstrap, root_id);
        assert_eq!(wasm["fail_open"], false, "{gateway}");
        assert_eq!(wasm["vm_config"]["code"]["local"]["filename"], "/etc/baton/modules/plugin.wasm");
        wasm["vm_config"]["code"]["local"]["filename"] = json!(wasm_file(root_id).to_string_lossy());
        let host_env: Vec<String> =
            serde_json::from_value(wasm["vm_config"]["environment_variables"]["host_env_keys"].clone())
                .unwrap();

        // Every variable the filter reads is passed to the VM and set by the
        // Deployment from a Secret.
        let mut read = Vec::new();
        secret_variables(&config, &mut read);
        assert!(read.len() >= 2 && read.iter().any(|v| v == "BATON_STORE_K1"), "{gateway}: {read:?}");
        let deployment = find(&manifests, "Deployment", gateway);
        let pod = &deployment.doc["spec"]["template"]["spec"];
        let envoy = pod["containers"].as_array().unwrap().iter().find(|c| c["name"] == "envoy").unwrap();
        for variable in &read {
            assert!(host_env.contains(variable), "{gateway}: {variable} not passed to the VM");
            let set =
                envoy["env"].as_array().unwrap().iter().find(|e| e["name"] == variable.as_str()).unwrap();
            assert!(
                set["valueFrom"]["secretKeyRef"]["name"].is_string(),
                "{gateway}: {variable} not from a Secret"
            );
        }

        // The store's cluster reaches the members' client Service.
        let store = &config["store"];
        let clusters = bootstrap["static_resources"]["clusters"].as_array().unwrap();
        let etcd = clusters.iter().find(|c| c["name"] == store["etcd"]["cluster"]).unwrap();
        let address = &etcd["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
        let service = find(&manifests, "Service", "etcd-client");
        let namespace = service.doc["metadata"]["namespace"].as_str().unwrap();
        let dns = format!("etcd-client.{namespace}.svc.cluster.local");
        assert_eq!(
            (address["address"].as_str(), address["port_value"].as_u64()),
            (Some(dns.as_str()), Some(2379))
        );
        assert_eq!(store["etcd"]["authority"], dns);
        assert_eq!(etcd["type"], "STRICT_DNS", "every member the Service publishes");
        assert!(etcd["outlier_detection"].is_object(), "a member that stops answering leaves the rotation");

        // A real Envoy takes the bootstrap: the filter configures with the
        // secrets from the environment; without the sealing key it refuses,
        // naming the field.
        let dir =
            std::env::temp_dir().join(format!("baton-deploy-replicas-{}-{gateway}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("envoy.json");
        fs::write(&path, bootstrap.to_string()).unwrap();
        let key = sealing_secret().unwrap();
        let values: Vec<(String, String)> = read
            .iter()
            .map(|name| (name.clone(), if name == "BATON_STORE_K1" { key.clone() } else { "secret".into() }))
            .collect();
        let env: Vec<(&str, &str)> = values.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let output = validate_config(&path, &dir, &env)
            .unwrap_or_else(|output| panic!("{gateway}: Envoy refused the bootstrap:\n{output}"));
        assert!(output.contains(&format!("baton {logs_as}: configured")), "{gateway}: {output}");
        let without_key: Vec<(&str, &str)> =
            env.iter().copied().filter(|(n, _)| *n != "BATON_STORE_K1").collect();
        let output = validate_config(&path, &dir, &without_key).unwrap_or_else(|output| output);
        assert!(!output.contains(&format!("baton {logs_as}: configured")), "{gateway}: {output}");
        assert!(output.contains("store.sealingKeys[0].secretEnv"), "{gateway}: the field is named: {output}");
        let _ = fs::remove_dir_all(&dir);
    }
}

#[test]
fn the_shipped_secret_holds_no_key_and_the_filters_refuse_it() {
    let manifests = manifests();
    let secret = find(&manifests, "Secret", "baton-store-sealing");
    let placeholder = secret.doc["stringData"]["k1"].as_str().unwrap();
    for (gateway, root_id, _) in GATEWAYS {
        let mut bootstrap = bootstrap(&manifests, gateway);
        let (_, mut config) = baton_filter(&mut bootstrap, root_id);
        // Literal client secrets stand in for the environment here.
        let text = config.to_string().replace("\"clientSecretEnv\"", "\"clientSecret\"");
        config = serde_json::from_str(&text).unwrap();
        config["store"]["sealingKeys"][0] = json!({"id": "k1", "secret": placeholder});
        let error = parse(root_id, &config).unwrap_err();
        assert!(error.contains("store.sealingKeys[0].secret"), "{gateway}: {error}");
        // A real key of that shape is taken: the refusal is the placeholder's.
        config["store"]["sealingKeys"][0] = json!({"id": "k1", "secret": sealing_secret().unwrap()});
        parse(root_id, &config).unwrap_or_else(|error| panic!("{gateway}: {error}"));
    }
}

#[test]
fn three_replicas_and_three_members_each_kept_through_a_drain() {
    let manifests = manifests();
    let workloads = GATEWAYS
        .iter()
        .map(|(gateway, _, _)| ("Deployment", *gateway, json!({"minAvailable": 2})))
        .chain([("StatefulSet", "etcd", json!({"maxUnavailable": 1}))]);
    for (kind, name, budget) in workloads {
        let workload = find(&manifests, kind, name);
        assert_eq!(workload.doc["spec"]["replicas"], 3, "{kind} {name}");
        let labels = &workload.doc["spec"]["template"]["metadata"]["labels"];
        let pdb = find(&manifests, "PodDisruptionBudget", name);
        assert_eq!(pdb.doc["metadata"]["namespace"], workload.doc["metadata"]["namespace"]);
        for (label, value) in pdb.doc["spec"]["selector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&labels[label], value, "{name}'s budget selects its pods");
        }
        for (field, value) in budget.as_object().unwrap() {
            assert_eq!(&pdb.doc["spec"][field], value, "{name}: {field}");
        }
    }
    // etcd's members name each other by the headless Service's names.
    let etcd = find(&manifests, "StatefulSet", "etcd");
    let args = etcd.doc["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
    for member in 0..3 {
        assert!(args.contains(&format!(
            "etcd-{member}=http://etcd-{member}.etcd.baton-store.svc.cluster.local:2380"
        )));
    }
    assert_eq!(find(&manifests, "Service", "etcd").doc["spec"]["publishNotReadyAddresses"], true);
}

#[test]
fn only_the_gateways_pods_reach_the_stores_client_port() {
    let manifests = manifests();
    let policy = find(&manifests, "NetworkPolicy", "etcd");
    let rules = policy.doc["spec"]["ingress"].as_array().unwrap();
    let clients: Vec<&Value> = rules
        .iter()
        .filter(|rule| rule["ports"].as_array().unwrap().iter().any(|port| port["port"] == 2379))
        .flat_map(|rule| rule["from"].as_array().unwrap())
        .collect();
    assert_eq!(clients.len(), 2, "the gateways, and the members themselves: {clients:?}");
    let from_gateways = clients.iter().find(|peer| peer["namespaceSelector"].is_object()).unwrap();
    let selected = from_gateways["podSelector"]["matchLabels"].as_object().unwrap();
    for (gateway, _, _) in GATEWAYS {
        let deployment = find(&manifests, "Deployment", gateway);
        assert_eq!(
            from_gateways["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            deployment.doc["metadata"]["namespace"]
        );
        let labels = &deployment.doc["spec"]["template"]["metadata"]["labels"];
        for (label, value) in selected {
            assert_eq!(&labels[label], value, "{gateway}'s pods are not selected");
        }
    }
    // No other pod carries the label: the members reach each other by
    // their own rule.
    let others = manifests.iter().filter(|m| m.file.starts_with("replicas/") && m.kind().1 == "StatefulSet");
    for other in others {
        let labels = &other.doc["spec"]["template"]["metadata"]["labels"];
        assert!(selected.keys().all(|label| labels.get(label).is_none()), "etcd's pods are store clients");
    }
}
