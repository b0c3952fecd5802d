"""Validates Kubernetes objects against the API's own schemas, with
kubernetes-validate (strict: a field the schema does not declare is an
error). Used by tests/deploy_schemas.rs.

    .venv-schemas/bin/python validate_kubernetes.py < documents.json

Input: a JSON array of {"name": "...", "doc": {...}}. Output: one line per
document, `ok <name>` or `error <name>: <reason>`; the exit status is 1 when
any document is refused, 2 when the input cannot be read. A kind without a
schema is refused, not passed over (the kubernetes-validate command only
warns about it).
"""

import json
import sys

import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

# The Kubernetes version the objects are checked against, pinned: the
# newest that Istio 1.27 (the oldest Istio the manifests support) supports.
KUBERNETES_VERSION = "1.33.0"


def check(doc):
    """The reason `doc` is refused, or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("apiVersion"), str) or not isinstance(doc.get("kind"), str):
        return "not an object with apiVersion and kind"
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except SchemaNotFoundError as error:
        return error.message
    except ValidationError as error:
        path = "/".join(str(item) for item in error.path)
        return f"Kubernetes {error.version}: /{path}: {error.message}"
    return None


def main():
    try:
        documents = json.load(sys.stdin)
        if not isinstance(documents, list):
            raise ValueError("expected a JSON array of {name, doc}")
    except ValueError as error:
        print(f"validate_kubernetes: {error}", file=sys.stderr)
        return 2
    refused = 0
    for document in documents:
        reason = check(document["doc"])
        if reason is None:
            print(f"ok {document['name']}")
        else:
            refused += 1
            print(f"error {document['name']}: {reason}")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
