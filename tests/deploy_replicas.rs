//! `deploy/replicas/`: obo-credential-injection on three Envoy replicas
//! sharing a three-member etcd (issue 16). The gateway's bootstrap loads in
//! a real Envoy with the module `make build` makes and the secrets from the
//! environment the Deployment gives it; the fleet is three replicas with a
//! disruption budget that keeps two; the store is three members that a
//! drain takes one at a time, reached by the gateway's `etcd` cluster
//! through the Service that publishes them, and only by the gateway's pods;
//! the Secret shipped holds no key, and the filter refuses to start with
//! it. (Their schemas: `deploy_schemas.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/manifests.rs"]
mod manifests;

use std::fs;

use baton_harness::{validate_config, wasm_file};
use manifests::{Manifest, manifests};
use serde_json::{Value, json};

/// The document of `kind` named `name` under `deploy/replicas/`.
fn find<'a>(manifests: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    manifests
        .iter()
        .find(|m| m.file.starts_with("replicas/") && m.kind().1 == kind && m.doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/replicas: no {kind} {name}"))
}

/// The gateway's Envoy bootstrap, from its ConfigMap.
fn bootstrap(manifests: &[Manifest]) -> Value {
    let config_map = find(manifests, "ConfigMap", "baton-obo-gateway");
    serde_norway::from_str(config_map.doc["data"]["envoy.yaml"].as_str().unwrap()).unwrap()
}

/// The obo filter's Wasm config in the bootstrap, and its plugin
/// configuration.
fn obo_filter(bootstrap: &mut Value) -> (&mut Value, Value) {
    let filters = &mut bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        ["http_filters"];
    let wasm = &mut filters[0]["typed_config"]["config"];
    assert_eq!(wasm["root_id"], "obo_credential_injection");
    let config = serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
    (wasm, config)
}

fn random_key() -> String {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key).unwrap();
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[test]
fn the_gateway_loads_in_envoy_with_the_store_and_the_secrets_the_deployment_gives() {
    let manifests = manifests();
    let mut bootstrap = bootstrap(&manifests);
    let (wasm, config) = obo_filter(&mut bootstrap);
    assert_eq!(wasm["fail_open"], false);
    assert_eq!(wasm["vm_config"]["code"]["local"]["filename"], "/etc/baton/modules/plugin.wasm");
    wasm["vm_config"]["code"]["local"]["filename"] =
        json!(wasm_file("obo_credential_injection").to_string_lossy());
    let host_env: Vec<String> =
        serde_json::from_value(wasm["vm_config"]["environment_variables"]["host_env_keys"].clone()).unwrap();

    // Every variable the filter reads is passed to the VM and set by the
    // Deployment from a Secret.
    let store = &config["store"];
    let read = [
        config["idps"][0]["clientSecretEnv"].as_str().unwrap(),
        store["sealingKeys"][0]["secretEnv"].as_str().unwrap(),
    ];
    let deployment = find(&manifests, "Deployment", "baton-obo-gateway");
    let pod = &deployment.doc["spec"]["template"]["spec"];
    let envoy = pod["containers"].as_array().unwrap().iter().find(|c| c["name"] == "envoy").unwrap();
    for variable in read {
        assert!(host_env.iter().any(|key| key == variable), "{variable} not passed to the VM");
        let set = envoy["env"].as_array().unwrap().iter().find(|e| e["name"] == variable).unwrap();
        assert!(set["valueFrom"]["secretKeyRef"]["name"].is_string(), "{variable} not from a Secret");
    }

    // The store's cluster reaches the members' client Service.
    let clusters = bootstrap["static_resources"]["clusters"].as_array().unwrap();
    let etcd = clusters.iter().find(|c| c["name"] == store["etcd"]["cluster"]).unwrap();
    let address =
        &etcd["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    let service = find(&manifests, "Service", "etcd-client");
    let dns =
        format!("etcd-client.{}.svc.cluster.local", service.doc["metadata"]["namespace"].as_str().unwrap());
    assert_eq!(
        (address["address"].as_str(), address["port_value"].as_u64()),
        (Some(dns.as_str()), Some(2379))
    );
    assert_eq!(store["etcd"]["authority"], dns);
    assert_eq!(etcd["type"], "STRICT_DNS", "every member the Service publishes");
    assert!(etcd["outlier_detection"].is_object(), "a member that stops answering leaves the rotation");

    // A real Envoy takes the bootstrap: the filter configures with the
    // secrets from the environment.
    let dir = std::env::temp_dir().join(format!("baton-deploy-replicas-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("envoy.json");
    fs::write(&path, bootstrap.to_string()).unwrap();
    let key = random_key();
    let env = [(read[0], "broker-secret"), (read[1], key.as_str())];
    let output = validate_config(&path, &dir, &env)
        .unwrap_or_else(|output| panic!("Envoy refused the gateway's bootstrap:\n{output}"));
    assert!(output.contains("baton obo-credential-injection: configured"), "{output}");
    // Without the sealing key it refuses (and so serves nothing).
    let output = validate_config(&path, &dir, &env[..1]).unwrap_or_else(|output| output);
    assert!(!output.contains("baton obo-credential-injection: configured"), "{output}");
    assert!(output.contains("store.sealingKeys[0].secretEnv"), "the field is named: {output}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_secret_holds_no_key_and_the_filter_refuses_it() {
    let manifests = manifests();
    let secret = find(&manifests, "Secret", "baton-store-sealing");
    let placeholder = secret.doc["stringData"]["k1"].as_str().unwrap();
    let mut bootstrap = bootstrap(&manifests);
    let (_, mut config) = obo_filter(&mut bootstrap);
    config["idps"][0]["clientSecret"] = json!("broker-secret");
    config["idps"][0].as_object_mut().unwrap().remove("clientSecretEnv");
    config["store"]["sealingKeys"][0] = json!({"id": "k1", "secret": placeholder});
    let error = obo_credential_injection::config::parse(config.to_string().as_bytes()).unwrap_err();
    assert!(error.to_string().contains("store.sealingKeys[0].secret"), "{error}");
    // A real key of that shape is taken: the refusal is the placeholder's.
    config["store"]["sealingKeys"][0] = json!({"id": "k1", "secret": random_key()});
    obo_credential_injection::config::parse(config.to_string().as_bytes()).unwrap();
}

#[test]
fn three_replicas_and_three_members_each_kept_through_a_drain() {
    let manifests = manifests();
    for (kind, name, members, budget) in [
        ("Deployment", "baton-obo-gateway", 3, json!({"minAvailable": 2})),
        ("StatefulSet", "etcd", 3, json!({"maxUnavailable": 1})),
    ] {
        let workload = find(&manifests, kind, name);
        assert_eq!(workload.doc["spec"]["replicas"], members, "{kind} {name}");
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
    let gateway = find(&manifests, "Deployment", "baton-obo-gateway");
    let gateway_labels = &gateway.doc["spec"]["template"]["metadata"]["labels"];
    let rules = policy.doc["spec"]["ingress"].as_array().unwrap();
    let clients: Vec<&Value> = rules
        .iter()
        .filter(|rule| rule["ports"].as_array().unwrap().iter().any(|port| port["port"] == 2379))
        .flat_map(|rule| rule["from"].as_array().unwrap())
        .collect();
    assert_eq!(clients.len(), 2, "the gateway, and the members themselves: {clients:?}");
    let from_gateway = clients.iter().find(|peer| peer["namespaceSelector"].is_object()).unwrap();
    assert_eq!(
        from_gateway["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        gateway.doc["metadata"]["namespace"]
    );
    for (label, value) in from_gateway["podSelector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&gateway_labels[label], value);
    }
}
