"""Check a decoded report against docs/report.schema.json before anything reads it.

`diff` compares reports from anywhere (an issue, a colleague, a CI artefact); a value of the
wrong type deep inside must be a one-line "not a valid envdoctor report: <where>", never an
internal error in the comparison. The validator knows the few JSON Schema keywords the report
schema uses (type, properties, required, items, additionalProperties, enum, pattern, anyOf,
$ref) and works without recursion, so no input can exhaust the stack.

Readers accept what a newer minor of the same schema adds (docs/report.md): unknown fields are
allowed even where the schema says ``additionalProperties: false`` (that is a promise about what
*this* envdoctor writes, which tests/ check with a full validator).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

MAX_DEPTH = 64  # a report is about 8 levels deep; `facts` and `extra` leave room for more
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "null": (type(None),),
    "integer": (int,), "number": (int, float),
}


def schema_path() -> Path:
    """report.schema.json inside the installed package, or docs/ of a source checkout."""
    here = Path(__file__).resolve().parent
    for cand in (here / "report.schema.json", here.parent / "docs" / "report.schema.json"):
        if cand.is_file():
            return cand
    raise FileNotFoundError("report.schema.json is missing from this installation")


@lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text(encoding="utf-8"))


def _where(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", p)
                                                    else f"[{p!r}]")
    return out.lstrip(".") or "the top level"


def _type_ok(value: Any, types: Any) -> bool:
    for t in types if isinstance(types, list) else [types]:
        py = _TYPES.get(t, ())
        if isinstance(value, bool) and t in ("integer", "number"):
            continue
        if isinstance(value, py):
            return True
    return False


def _describe(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null",
             int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def depth_error(data: Any) -> Optional[str]:
    """Where the data nests deeper than MAX_DEPTH (checked without recursion), else None."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return f"{_where(path[:8])}...: nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, dict):
            stack.extend((v, path + (str(k),)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, path + (i,)) for i, v in enumerate(value))
    return None


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 16:
        ref = schema["$ref"]
        node: Any = root
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        schema, seen = node, seen + 1
    return schema


def first_error(data: Any, schema: Optional[dict[str, Any]] = None) -> Optional[str]:
    """The first place (in document order) where data breaks the schema, as 'where: what'."""
    root = schema or report_schema()
    return _first(data, root, root, ())


def _first(data: Any, start: dict[str, Any], root: dict[str, Any], at: tuple[Any, ...]) -> Optional[str]:
    stack: list[tuple[Any, dict[str, Any], tuple[Any, ...]]] = [(data, start, at)]
    while stack:
        value, sch, path = stack.pop()
        sch = _resolve(sch, root)
        if "anyOf" in sch:  # recursion only as deep as the schema's own anyOf nesting
            errors = [_first(value, alt, root, path) for alt in sch["anyOf"]]
            if all(e is not None for e in errors):
                here = f"{_where(path)}: expected"
                # the form of the right type, failing deeper down, says the most
                deeper = [e for e in errors if e and not e.startswith(here)]
                return deeper[0] if deeper else f"{_where(path)}: {_describe(value)} matches none of the allowed forms"
            continue
        if "type" in sch and not _type_ok(value, sch["type"]):
            want = sch["type"] if isinstance(sch["type"], str) else " or ".join(sch["type"])
            return f"{_where(path)}: expected {want}, found {_describe(value)}"
        if "enum" in sch and value not in sch["enum"]:
            return f"{_where(path)}: {repr(value)[:40]} is not one of {', '.join(map(str, sch['enum']))}"
        if "pattern" in sch and isinstance(value, str) and not re.search(sch["pattern"], value):
            return f"{_where(path)}: {value[:40]!r} does not match {sch['pattern']}"
        if isinstance(value, dict):
            for key in sch.get("required", []):
                if key not in value:
                    return f"{_where(path)}: missing required field {key!r}"
            props = sch.get("properties", {})
            extra = sch.get("additionalProperties")
            children = []
            for k, v in value.items():
                if k in props:
                    children.append((v, props[k], path + (k,)))
                elif isinstance(extra, dict) and extra:
                    children.append((v, extra, path + (k,)))
            stack.extend(reversed(children))
        elif isinstance(value, list) and isinstance(sch.get("items"), dict):
            stack.extend(reversed([(v, sch["items"], path + (i,)) for i, v in enumerate(value)]))
    return None
