"""A job type's parameters: one model, checked the same way at insert and when the job runs.

Two validators see a job's parameters. PostgreSQL checks every insert against the JSON Schema
stored in `jobhook.job_types.params_schema` (pg_jsonschema, in the enqueue trigger), so a direct
supabase-js insert is refused as early as `POST /jobs`; the runner checks the payload against the
pydantic model again when the job runs, since the model may have changed since the insert.

For the two to agree, the model validates strictly (pydantic's lax mode takes "3" for an int,
JSON Schema does not), refuses unknown fields unless its own config says `extra="allow"`, and its
schema stays within what both understand the same way; `strict_model` and `portability_problems`
see to that when a type is registered, so a type that would be checked differently at insert and
at run time fails at `jobhook types sync`, before any job is accepted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

# What pydantic emits for a parameter model and Draft 7 (what pg_jsonschema checks) asserts the
# same way; jobhook/devstack/platform/pg_jsonschema--0.3.3.sql implements exactly these.
ASSERTIONS = frozenset(
    {
        "type", "enum", "const", "properties", "required", "additionalProperties",
        "minProperties", "maxProperties", "propertyNames", "items", "minItems", "maxItems",
        "uniqueItems", "minLength", "maxLength", "pattern", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "anyOf", "oneOf", "allOf", "not",
        "format", "$ref",
    }
)  # fmt: skip
ANNOTATIONS = frozenset(
    {
        "$defs", "definitions", "title", "description", "default", "examples", "$comment",
        "readOnly", "writeOnly", "deprecated", "discriminator",
    }
)  # fmt: skip
# Formats Draft 7 checks as pydantic does. "uri" is checked at insert only for its scheme (the
# `url` crate, which both pg_jsonschema and pydantic-core build on, accepts nearly any text
# after one); pydantic's URL types check the rest at POST /jobs and again when the job runs.
FORMATS = frozenset({"date-time", "date", "ipv4", "ipv6", "uri"})
# Checked by Draft 7 differently from pydantic: a value one accepts, the other refuses.
DIVERGENT_FORMATS = {
    "email": "Draft 7 only looks for an '@', pydantic's EmailStr checks the whole address",
    "idn-email": "Draft 7 only looks for an '@'",
    "time": "Draft 7 (pg_jsonschema) wants exactly six fraction digits and an offset",
    "uri-reference": "Draft 7 and pydantic parse URLs differently",
    "iri": "Draft 7 and pydantic parse URLs differently",
    "iri-reference": "Draft 7 and pydantic parse URLs differently",
    "hostname": "Draft 7's check is not pydantic's",
    "idn-hostname": "Draft 7's check is not pydantic's",
    "regex": "Draft 7 compiles ECMA-262, pydantic does not check it",
}
# The forms pydantic reads as a UUID (pydantic-core parses them with the `uuid` crate): Draft 7
# does not check "format": "uuid" at all, so the stored schema says it with a pattern.
UUID_PATTERN = (
    "^(urn:uuid:)?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    "|[0-9a-fA-F]{32}"
    "|\\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\\})$"
)
# Shorthands whose sets differ: pydantic's regex engine reads \d, \w, \s and \b as Unicode
# classes, pg_jsonschema as ASCII ones (its `convert_regex`); so "٣" would be a digit to one.
_SHORTHAND = re.compile(r"\\[dDwWsSbB]")
_UNPORTABLE = (
    (re.compile(r"\\[pPk]"), "Unicode property classes and named back-references"),
    (re.compile(r"\(\?<(?![=!])|\(\?P"), "named groups"),
    (re.compile(r"\(\?[a-zA-Z]"), "inline flags"),
    (re.compile(r"\[:"), "POSIX classes"),
)


def strict_model(model: type[BaseModel]) -> type[BaseModel]:
    """`model`, strict and refusing unknown fields, unless its own config allows extra ones.

    A subclass, so a handler annotated with `model` still receives an instance of it."""
    extra = model.model_config.get("extra")
    config = ConfigDict(strict=True, extra="allow" if extra == "allow" else "forbid")
    if model.model_config.get("strict") and extra in ("forbid", "allow"):
        return model
    namespace = {"model_config": config, "__module__": model.__module__, "__doc__": model.__doc__}
    return type(model.__name__, (model,), namespace)


def stored_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema the database checks inserts against: pydantic's, with UUID formats also
    said as a pattern (Draft 7 does not assert "format": "uuid")."""
    schema = model.model_json_schema()
    for node in _schemas(schema):
        if str(node.get("format", "")).startswith("uuid") and "pattern" not in node:
            node["pattern"] = UUID_PATTERN
    return schema


def portability_problems(schema: dict[str, Any]) -> list[str]:
    """What in `schema` the database's validator would check differently from pydantic, each
    as 'where: what, and the fix'; empty when the two agree."""
    problems = []
    for where, node in _located(schema, "parameters"):
        for keyword, value in node.items():
            if keyword in ANNOTATIONS or keyword.startswith("x-"):
                continue
            if keyword not in ASSERTIONS:
                problems.append(f"{where}: {_unsupported(keyword)}")
            elif keyword == "items" and not isinstance(value, dict | bool):
                problems.append(f"{where}: a list of item schemas is not supported")
            elif keyword == "$ref" and not str(value).startswith("#"):
                problems.append(f"{where}: the reference {value!r} points outside the schema")
            elif keyword == "format":
                problem = _format_problem(str(value))
                if problem:
                    problems.append(f"{where}: {problem}")
            elif keyword == "pattern":
                problem = _pattern_problem(str(value))
                if problem:
                    problems.append(f"{where}: {problem}")
    return problems


def validate(model: type[BaseModel], payload: Any) -> BaseModel:
    """The payload as `model`, validated as JSON in strict mode: the way it was checked at insert
    (a UUID or a date-time arrives as a string, as in JSON)."""
    return model.model_validate_json(json.dumps(payload), strict=True)


def problems_of(exc: ValidationError) -> list[dict[str, str]]:
    """One {"field", "message"} per problem, the field as a dotted path."""
    problems = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "parameters"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown parameter"
        elif error["type"] != "missing":
            message = f"{message} (got {json.dumps(error['input'], default=str)})"
        problems.append({"field": field, "message": message})
    return problems


def describe(problems: list[dict[str, str]]) -> str:
    """'steps: Input should be a valid integer (got "three"); stepz: unknown parameter'."""
    return "; ".join(f"{p['field']}: {p['message']}" for p in problems)


def _unsupported(keyword: str) -> str:
    if keyword == "prefixItems":
        return (
            "tuples are not supported (Draft 7 ignores prefixItems); use a list or a nested model"
        )
    return f'the JSON Schema keyword "{keyword}" is not supported by the insert check'


def _format_problem(fmt: str) -> str | None:
    if fmt in FORMATS or fmt.startswith("uuid") or fmt not in DIVERGENT_FORMATS:
        return None
    return (
        f'format "{fmt}" cannot be checked at insert as pydantic checks it '
        f"({DIVERGENT_FORMATS[fmt]}); declare the field as str and check it in the handler"
    )


def _pattern_problem(pattern: str) -> str | None:
    shorthand = _SHORTHAND.search(pattern.replace("\\\\", ""))
    if shorthand:
        return (
            f"pattern {pattern!r} uses {shorthand.group()}, which pydantic reads as a Unicode "
            "class and JSON Schema as an ASCII one; spell the set out, e.g. [0-9] for \\d"
        )
    for construct, name in _UNPORTABLE:
        if construct.search(pattern):
            return f"pattern {pattern!r} uses {name}, which the insert check cannot read"
    return None


def _schemas(node: Any) -> Iterator[dict[str, Any]]:
    for _, schema in _located(node, ""):
        yield schema


def _located(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object inside `node` with a readable path to it (not data such as defaults)."""
    if not isinstance(node, dict):
        return
    yield where, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _located(sub, f"{where}.{name}" if where else name)
    for name, sub in (node.get("$defs") or {}).items():
        yield from _located(sub, name)
    for name, sub in (node.get("definitions") or {}).items():
        yield from _located(sub, name)
    for keyword in ("additionalProperties", "items", "propertyNames", "not"):
        yield from _located(node.get(keyword), f"{where}[{keyword}]")
    for keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for index, sub in enumerate(node.get(keyword) or []):
            yield from _located(sub, f"{where}[{keyword} {index}]")
