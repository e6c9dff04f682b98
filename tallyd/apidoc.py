"""The API reference, written from the OpenAPI document: `tallyd api --reference`.

Each path and method of `/openapi.json` (as `tallyd serve` answers it with the
default settings) gives a section: its summary and description, a table of its
parameters and one of its answers; the schemas follow. `--write FILE` puts the
reference between the markers of FILE (docs/api.md); a test fails when the
checked-in reference differs from this one, so the docs follow the route table.
"""

from __future__ import annotations

import json
from typing import Any

from tallyd.generated import between, rewrite

BEGIN = "<!-- BEGIN API reference: made by `tallyd api --reference`, do not edit -->"
END = "<!-- END API reference -->"
COMMAND = "tallyd api --reference --write docs/api.md"
# HEAD answers wherever GET does, and OPTIONS is a CORS preflight: said once in the
# page's prose, not at every route.
METHODS = ("get", "post", "put", "delete")
# Patterns longer than this are left to /openapi.json (a date's can be 2,000 characters).
MAX_PATTERN = 80


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def kind(schema: dict[str, Any]) -> str:
    """A schema in a few words: its type, and what bounds it."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "const" in schema:
        return _code(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(_code(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(kind(s) for s in schema[key])
    words = [str(schema.get("type", "any"))]
    if "minimum" in schema or "maximum" in schema:
        words.append(f"{schema.get('minimum', '')}..{schema.get('maximum', '')}")
    if "minLength" in schema or "maxLength" in schema:
        words.append(f"length {schema.get('minLength', 0)}..{schema.get('maxLength', '')}")
    if "pattern" in schema:
        pattern = schema["pattern"]
        shown = _code(pattern) if len(pattern) <= MAX_PATTERN else "a pattern (see /openapi.json)"
        words.append("matching " + shown)
    if "default" in schema:
        words.append("default " + _code(schema["default"]))
    return ", ".join(words)


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    if op.get("summary"):
        lines += [op["summary"] + ".", ""]
    if op.get("description"):
        lines += [op["description"], ""]
    if op.get("security"):
        schemes = ", ".join(name for item in op["security"] for name in item)
        lines += [f"Needs the `{schemes}` credential (`Authorization: Bearer …`).", ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | | schema | |", "|---|---|---|---|---|"]
        for p in params:
            need = "required" if p.get("required") else ""
            schema = _cell(kind(p.get("schema", {})))
            desc = p.get("description", "")
            lines.append(f"| `{p['name']}` | {p['in']} | {need} | {schema} | {_cell(desc)} |")
        lines.append("")
    body = op.get("requestBody")
    if body:
        types = ", ".join(f"`{t}`" for t in body.get("content", {}))
        lines += [f"Body: {types}. {_cell(body.get('description', ''))}".rstrip(), ""]
    lines += ["| answer | content | |", "|---|---|---|"]
    for status, answer in op.get("responses", {}).items():
        content = answer.get("content", {})
        types = ", ".join(f"`{t}` ({_cell(kind(c.get('schema', {})))})" for t, c in content.items())
        lines.append(f"| {status} | {types} | {_cell(answer.get('description', ''))} |")
    return [*lines, ""]


def reference(document: dict[str, Any] | None = None) -> str:
    """The Markdown reference of every route and schema, in the document's order."""
    if document is None:
        from tallyd.app import OPENAPI

        document = json.loads(OPENAPI)
    lines = [f"OpenAPI {document['openapi']}: `/openapi.json` holds the same, whole.", ""]
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                lines += _operation(path, method, item[method])
    lines += ["## Schemas", ""]
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        text = json.dumps(schema, indent=2, ensure_ascii=False)
        lines += [f"### {name}", "", "```json", text, "```", ""]
    return "\n".join(lines)


def updated(text: str) -> str:
    """`text` with the reference between its markers replaced by the current one."""
    return between(text, BEGIN, END, reference())


def write(path: str) -> bool:
    """Rewrite the reference in the file at `path`; whether it changed."""
    return rewrite(path, BEGIN, END, reference())
