// Validates Kubernetes manifests against the API's own schemas
// (kubernetes-models, from the npm registry: JSON schemas generated from
// the Kubernetes OpenAPI, checked with ajv).  Every document must be a kind
// we know, and valid; prints one line per document, exits 1 on any problem.
//   node validate_k8s.mjs FILE...
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const tools = process.env.WS_NODE_TOOLS || new URL("../tools/node_modules/", import.meta.url).pathname;
const req = createRequire(tools.replace(/\/?$/, "/"));
const YAML = req("yaml");

const kinds = {
  "v1/Namespace": "kubernetes-models/v1/Namespace",
  "v1/ServiceAccount": "kubernetes-models/v1/ServiceAccount",
  "v1/ConfigMap": "kubernetes-models/v1/ConfigMap",
  "v1/Secret": "kubernetes-models/v1/Secret",
  "v1/Service": "kubernetes-models/v1/Service",
  "apps/v1/Deployment": "kubernetes-models/apps/v1/Deployment",
  "policy/v1/PodDisruptionBudget": "kubernetes-models/policy/v1/PodDisruptionBudget",
  "networking.k8s.io/v1/NetworkPolicy": "kubernetes-models/networking.k8s.io/v1/NetworkPolicy",
};

let bad = 0;
for (const file of process.argv.slice(2)) {
  const docs = YAML.parseAllDocuments(readFileSync(file, "utf8"));
  docs.forEach((doc, i) => {
    const where = `${file}: document ${i + 1}`;
    if (doc.errors.length) {
      console.log(`${where}: YAML: ${doc.errors[0].message}`);
      bad++;
      return;
    }
    const obj = doc.toJS();
    const key = `${obj.apiVersion}/${obj.kind}`;
    const mod = kinds[key];
    if (!mod) {
      console.log(`${where}: unknown kind ${key}`);
      bad++;
      return;
    }
    const Model = Object.values(req(mod)).find((v) => typeof v === "function");
    try {
      new Model(obj).validate();
      console.log(`${where}: ${key} ${obj.metadata.name}: valid`);
    } catch (e) {
      console.log(`${where}: ${key} ${obj.metadata && obj.metadata.name}: ${e.message}`);
      bad++;
    }
  });
}
process.exit(bad ? 1 : 0);
