"""Lints, renders and validates charts/warden for tests/tests/helm.rs, with helm-python-sdk (Helm's
Go SDK, no helm binary) and kubernetes-validate (Kubernetes' OpenAPI schemas, offline).

    chart.py render OUT.json VALUES.yaml...   lint (strict), schema, render and validate each
                                              values file; the manifests go to OUT.json
    chart.py refuse OUT.json VALUES.yaml...   what the chart says to each (bad) values file
    chart.py reference [--check|--write] DOC  the values reference of docs/deploy.md, generated
                                              from values.schema.json and values.yaml

A string value "@repo:PATH" in a values file stands for the text of the repository's file PATH
(policies whose schema must be the binary's own). Exits 1 with the reasons on any failure.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "warden"
# How many of the newest Kubernetes minor versions kubernetes-validate knows are checked.
KUBERNETES_VERSIONS = 5
# Kinds kubernetes-validate has no schema for (CRDs); tests/tests/helm.rs checks their shape.
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "HTTPRoute", "Certificate"}
RELEASE = "gw"
NAMESPACE = "ai-gateway"


class StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate keys (a template that emits a key twice)."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def resolve(value: Any) -> Any:
    """Replaces "@repo:PATH" strings with the file's text."""
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if isinstance(value, str) and value.startswith("@repo:"):
        return (ROOT / value[len("@repo:") :]).read_text()
    return value


def load_values(path: pathlib.Path) -> dict:
    return resolve(yaml.safe_load(path.read_text()) or {})


def kubernetes_versions() -> list[str]:
    from kubernetes_validate import utils

    minors = sorted({utils.major_minor(v) for v in utils.all_versions()}, key=lambda v: tuple(map(int, v.split("."))))
    return minors[-KUBERNETES_VERSIONS:]


def render(out: pathlib.Path, files: list[pathlib.Path]) -> int:
    import helm_python as helm
    from kubernetes_validate import utils

    versions = kubernetes_versions()
    problems: list[str] = []
    cases: dict[str, Any] = {}
    for path in files:
        name = path.stem
        values = load_values(path)
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{versions[-1]}.0")
        for message in report.get("messages", []):
            if message.get("severity", 0) >= 2:
                problems.append(f"{name}: helm lint: {message.get('path')}: {message.get('error')}")
        problems.extend(f"{name}: helm lint: {e}" for e in report.get("errors", []))
        with helm.Chart.load(CHART) as chart:
            try:
                chart.validate_schema(values)
                rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            except helm.HelmError as e:
                problems.append(f"{name}: refused: {e}")
                continue
        manifests: list[dict] = []
        notes = ""
        for template, text in sorted(rendered.items()):
            if template.endswith("NOTES.txt"):
                notes = text
                continue
            try:
                docs = [d for d in yaml.load_all(text, Loader=StrictLoader) if d]
            except yaml.YAMLError as e:
                problems.append(f"{name}: {template}: not YAML: {e}")
                continue
            for doc in docs:
                doc_name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
                if doc.get("kind") not in CUSTOM_KINDS:
                    for version in versions:
                        try:
                            utils.validate(doc, version, strict=True)
                        except utils.ValidationError as e:
                            where = ".".join(str(p) for p in e.path)
                            problems.append(f"{name}: {template}: {doc_name} is invalid on Kubernetes {version}: {where}: {e.message}")
                        except utils.SchemaNotFoundError as e:
                            problems.append(f"{name}: {template}: {doc_name}: {e.message}")
                manifests.append({"template": template, "manifest": doc})
        config = next(
            (
                yaml.safe_load(m["manifest"]["data"]["warden.yaml"])
                for m in manifests
                if m["manifest"].get("kind") == "ConfigMap" and "warden.yaml" in m["manifest"].get("data", {})
            ),
            None,
        )
        cases[name] = {"manifests": manifests, "notes": notes, "config": config}
    out.write_text(json.dumps({"kubernetes_versions": versions, "cases": cases}, indent=1))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def refuse(out: pathlib.Path, files: list[pathlib.Path]) -> int:
    import helm_python as helm

    answers = {}
    for path in files:
        values = load_values(path)
        with helm.Chart.load(CHART) as chart:
            try:
                chart.validate_schema(values)
                chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
                answers[path.name] = {"refused": False, "message": ""}
            except helm.HelmError as e:
                answers[path.name] = {"refused": True, "message": str(e)}
    out.write_text(json.dumps(answers, indent=1))
    return 0


BEGIN = "<!-- values-reference: generated by tests/helm/chart.py reference --write docs/deploy.md -->"
END = "<!-- values-reference: end -->"


def _default(value: Any) -> str:
    if value is None:
        return "none"
    text = json.dumps(value, separators=(", ", ": "))
    if len(text) > 60:
        text = text[:57] + "…"
    return "`" + text.replace("|", "\\|") + "`"


def _type(schema: dict) -> str:
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}` only"
    kinds = schema.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    text = " or ".join({"array": "list", "object": "map"}.get(k, k) for k in kinds)
    if "enum" in schema:
        text += ": " + ", ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    return text


def _rows(schema: dict, values: Any, path: str) -> list[str]:
    props = schema.get("properties")
    # `config` is Warden's own configuration (docs/configuration.md): one row.
    if props and path != "config":
        rows = []
        for key, sub in props.items():
            sub_values = values.get(key) if isinstance(values, dict) else None
            rows.extend(_rows(sub, sub_values, f"{path}.{key}" if path else key))
        return rows
    description = " ".join(schema.get("description", "").split()).replace("|", "\\|")
    return [f"| `{path}` | {_type(schema)} | {_default(values)} | {description} |"]


def reference_text() -> str:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    lines = [BEGIN, "", "| value | type | default | meaning |", "|---|---|---|---|"]
    lines.extend(_rows(schema, values, ""))
    lines.extend(["", END])
    return "\n".join(lines)


def reference(mode: str, doc: pathlib.Path) -> int:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        print(f"{doc}: no values reference block ({BEGIN} … {END})", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    updated = head + reference_text() + tail
    if mode == "--write":
        doc.write_text(updated)
        return 0
    if updated != text:
        print(
            f"{doc}: the values reference is out of date with charts/warden/values.schema.json "
            "and values.yaml; run: tests/.venv/bin/python tests/helm/chart.py reference --write docs/deploy.md",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "render":
        return render(pathlib.Path(argv[1]), [pathlib.Path(a) for a in argv[2:]])
    if len(argv) >= 3 and argv[0] == "refuse":
        return refuse(pathlib.Path(argv[1]), [pathlib.Path(a) for a in argv[2:]])
    if len(argv) == 3 and argv[0] == "reference" and argv[1] in ("--check", "--write"):
        return reference(argv[1], pathlib.Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
