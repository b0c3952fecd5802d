// Validates Kubernetes custom resources against the schemas of the
// @kubernetes-models packages (generated from the projects' own schemas):
// Istio, Envoy Gateway and Gateway API. Used by tests/deploy_schemas.rs.
//
//   node validate-k8s-models.mjs < documents.json
//
// Input: a JSON array of {"name": "...", "doc": {...}}. Output: one line
// per document, `ok <name>` or `error <name>: <reasons>`; the exit status is
// 1 when any document is refused, 2 when the input cannot be read.
//
// A document is refused when:
// - its apiVersion/kind is not a resource of a known package (no class);
// - the class's validate() throws (types, enums, required fields, patterns,
//   formats: the schema as generated);
// - it holds a field the schema does not declare. The generated validators
//   let unknown fields through (the CRDs' schemas have no
//   additionalProperties: false; the API server prunes or, with strict
//   field validation, the kubectl default, refuses them). So the document
//   is watched while the validator runs: a field of an object whose
//   declared fields the validator looked up, that it never looked up
//   itself, is unknown. Objects whose fields the validator never looks at
//   (x-kubernetes-preserve-unknown-fields, such as a WasmPlugin's
//   pluginConfig) and maps (every key is read) are left as they are.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

/** The package that holds the models of each API group. */
const PACKAGES = {
  "extensions.istio.io": "@kubernetes-models/istio",
  "networking.istio.io": "@kubernetes-models/istio",
  "security.istio.io": "@kubernetes-models/istio",
  "telemetry.istio.io": "@kubernetes-models/istio",
  "gateway.envoyproxy.io": "@kubernetes-models/envoy-gateway",
  "gateway.networking.k8s.io": "@kubernetes-models/gateway-api",
};

/** The resource class of an apiVersion and kind, or an error message. */
async function resourceClass(apiVersion, kind) {
  const [group, version, ...rest] = String(apiVersion).split("/");
  const pkg = PACKAGES[group];
  if (!pkg || !version || rest.length || !/^v[0-9a-z]+$/.test(version) || !/^[A-Z][A-Za-z0-9]*$/.test(kind)) {
    return `no schema for apiVersion ${JSON.stringify(apiVersion)} kind ${JSON.stringify(kind)}`;
  }
  let module;
  try {
    module = await import(`${pkg}/${group}/${version}/${kind}`);
  } catch (error) {
    if (error.code === "ERR_MODULE_NOT_FOUND" || error.code === "ERR_PACKAGE_PATH_NOT_EXPORTED") {
      return `no schema for ${apiVersion} ${kind} in ${pkg}`;
    }
    throw error;
  }
  const cls = module[kind];
  // Sub-schemas (WasmEnv, ...) have modules too; a resource's class says
  // which apiVersion and kind it is.
  if (typeof cls !== "function" || cls.apiVersion !== apiVersion || cls.kind !== kind) {
    return `no schema for ${apiVersion} ${kind} in ${pkg} (not a resource)`;
  }
  return cls;
}

/**
 * Wraps `value` so that every property the validator reads is recorded.
 * Returns the wrapped value and a function listing the unknown fields.
 */
function watched(value) {
  const reads = new Map(); // plain object -> Set of keys read
  const proxies = new WeakMap();
  const wrap = (target) => {
    if (target === null || typeof target !== "object") return target;
    let proxy = proxies.get(target);
    if (!proxy) {
      if (!Array.isArray(target)) reads.set(target, new Set());
      proxy = new Proxy(target, {
        get(object, key, receiver) {
          if (typeof key === "string" && reads.has(object)) reads.get(object).add(key);
          return wrap(Reflect.get(object, key, receiver));
        },
      });
      proxies.set(target, proxy);
    }
    return proxy;
  };
  const unknown = () => {
    const out = [];
    const walk = (node, path) => {
      if (node === null || typeof node !== "object") return;
      if (Array.isArray(node)) {
        node.forEach((item, i) => walk(item, `${path}/${i}`));
        return;
      }
      const read = reads.get(node);
      // Never looked into: free-form (or under a field already reported).
      if (!read || read.size === 0) return;
      for (const [key, member] of Object.entries(node)) {
        if (read.has(key)) walk(member, `${path}/${key}`);
        else out.push(`${path}/${key}`);
      }
    };
    walk(value, "");
    return out;
  };
  return [wrap(value), unknown];
}

async function check(doc) {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) return ["not an object"];
  const cls = await resourceClass(doc.apiVersion, doc.kind);
  if (typeof cls === "string") return [cls];
  const [proxy, unknown] = watched(doc);
  const reasons = [];
  try {
    // The class's own validate(), run on the document as it is (a model
    // made from it would be a copy, unwatched).
    cls.prototype.validate.call(proxy);
  } catch (error) {
    if (!Array.isArray(error.errors)) throw error;
    // ajv's errors (runValidateFunc has put their messages in English),
    // with the choices an enum allows.
    for (const e of error.errors) {
      const allowed = e.params?.allowedValues;
      const choices = allowed ? ` (${allowed.map((v) => JSON.stringify(v)).join(", ")})` : "";
      reasons.push(`data${e.instancePath} ${e.message}${choices}`);
    }
  }
  for (const path of unknown()) reasons.push(`data${path} is not a field of the schema`);
  return reasons;
}

// A package that is not installed is not a document without a schema.
const require = createRequire(import.meta.url);
for (const pkg of new Set(Object.values(PACKAGES))) {
  try {
    require.resolve(`${pkg}/package.json`);
  } catch {
    console.error(`validate-k8s-models: ${pkg} is not installed (make test-tools installs it in tests/schemas)`);
    process.exit(2);
  }
}

let input;
try {
  input = JSON.parse(readFileSync(0, "utf8"));
  if (!Array.isArray(input)) throw new Error("expected a JSON array of {name, doc}");
} catch (error) {
  console.error(`validate-k8s-models: ${error.message}`);
  process.exit(2);
}
let refused = 0;
for (const { name, doc } of input) {
  const reasons = await check(doc);
  if (reasons.length) {
    refused++;
    console.log(`error ${name}: ${reasons.join("; ")}`);
  } else {
    console.log(`ok ${name}`);
  }
}
process.exitCode = refused ? 1 : 0;
