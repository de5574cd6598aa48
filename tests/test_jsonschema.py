"""The dev stack's pg_jsonschema against two reference validators, case by case.

Hosted Supabase runs pg_jsonschema 0.3.3: the Rust crate `jsonschema` 0.17.1 in Draft 7 with
formats asserted. Each case below goes through the stand-in, the `jsonschema` package's
Draft7Validator (with its format checker) and `jsonschema_rs`, the same crate's Python binding
(a newer release), in Draft 7 with formats on; the verdicts must all agree, and the stand-in's
messages must be the crate's.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

import jsonschema
import jsonschema_rs
import psycopg
import pytest
from pydantic import BaseModel, Field, ValidationError

from jobhook import parameters

Case = tuple[Any, Any]

CASES: list[Case] = [
    # type, one or many
    ({"type": "integer"}, 3),
    ({"type": "integer"}, "three"),
    ({"type": "integer"}, 3.5),
    ({"type": "integer"}, 3.0),
    ({"type": "integer"}, True),
    ({"type": "number"}, 3),
    ({"type": "number"}, "3"),
    ({"type": "string"}, None),
    ({"type": "boolean"}, 0),
    ({"type": "null"}, None),
    ({"type": "array"}, {}),
    ({"type": "object"}, []),
    ({"type": ["integer", "string"]}, None),
    ({"type": ["integer", "string"]}, "a"),
    # numbers
    ({"minimum": 1}, 0),
    ({"minimum": 1}, 1),
    ({"maximum": 1.5}, 1.6),
    ({"exclusiveMinimum": 1}, 1),
    ({"exclusiveMaximum": 10}, 10),
    ({"exclusiveMaximum": 10}, 9.99),
    ({"multipleOf": 2}, 3),
    ({"multipleOf": 2}, 4),
    ({"minimum": 1}, "not a number"),
    # strings
    ({"minLength": 2}, "a"),
    ({"maxLength": 1}, "ab"),
    ({"maxLength": 3}, "ééé"),
    ({"maxLength": 1}, 12345),
    ({"pattern": "^[a-z]+$"}, "abc"),
    ({"pattern": "^[a-z]+$"}, "abC"),
    ({"pattern": "b"}, "abc"),
    ({"pattern": "^a.c$"}, "a\nc"),
    ({"pattern": "^a.c$"}, "abc"),
    ({"pattern": "^[0-9]{3}-[0-9]{4}$"}, "555-1234"),
    ({"pattern": "^[0-9]{3}-[0-9]{4}$"}, "5551234"),
    ({"pattern": "^\\d+$"}, "123"),
    ({"pattern": "^\\d+$"}, "12a"),
    ({"pattern": "^\\w+$"}, "snake_case"),
    ({"pattern": "^\\w+$"}, "kebab-case"),
    ({"pattern": "^\\s*$"}, " \t"),
    ({"pattern": "^[\\w.-]+$"}, "a.b-c_d"),
    ({"pattern": "^[\\w.-]+$"}, "a/b"),
    ({"pattern": "^\\x41$"}, "A"),
    ({"pattern": "^\\x41B$"}, "AB"),
    ({"pattern": "^(?:ab)+$"}, "abab"),
    ({"pattern": "^(?!tmp)[a-z]+$"}, "tmpfile"),
    ({"pattern": "^(?!tmp)[a-z]+$"}, "file"),
    ({"pattern": "^[^/]+$"}, "a/b"),
    ({"pattern": "^\\/root"}, "/root/x"),
    ({"pattern": "^a{2,3}$"}, "aaaa"),
    ({"pattern": "cat|dog"}, "hotdog"),
    # formats Draft 7 asserts
    ({"format": "date-time"}, "2026-12-03T08:00:00Z"),
    ({"format": "date-time"}, "2026-12-03T08:00:00.123+01:00"),
    ({"format": "date-time"}, "2026-12-03t08:00:00z"),
    ({"format": "date-time"}, "2026-12-03T08:00:00"),
    ({"format": "date-time"}, "2026-02-30T08:00:00Z"),
    ({"format": "date-time"}, "2024-02-29T23:59:59Z"),
    ({"format": "date-time"}, "2026-12-03 08:00:00Z"),
    ({"format": "date-time"}, "2026-12-03T25:00:00Z"),
    ({"format": "date-time"}, "yesterday"),
    ({"format": "date"}, "2026-12-03"),
    ({"format": "date"}, "2026-13-03"),
    ({"format": "date"}, "2023-02-29"),
    ({"format": "date"}, "2026-1-3"),
    ({"format": "date"}, 20261203),
    ({"format": "ipv4"}, "192.168.0.1"),
    ({"format": "ipv4"}, "256.1.1.1"),
    ({"format": "ipv4"}, "1.2.3"),
    ({"format": "ipv4"}, "01.2.3.4"),
    ({"format": "ipv6"}, "::1"),
    ({"format": "ipv6"}, "2001:db8::8a2e:370:7334"),
    ({"format": "ipv6"}, "2001:db8::g"),
    ({"format": "ipv6"}, "1.2.3.4"),
    ({"format": "ipv6"}, "::1/128"),
    ({"format": "uri"}, "https://example.com/a?b#c"),
    ({"format": "uri"}, "no scheme here"),
    ({"format": "uri"}, "/relative/path"),
    ({"format": "uuid"}, "not checked in Draft 7"),
    ({"format": "duration"}, "not checked in Draft 7"),
    # arrays
    ({"items": {"type": "string"}}, ["a", 1, "b", 2]),
    ({"items": {"type": "string"}}, ["a"]),
    ({"items": False}, [1]),
    ({"items": True}, [1]),
    ({"minItems": 2}, [1]),
    ({"maxItems": 1}, [1, 2]),
    ({"maxItems": 1}, "not an array"),
    ({"uniqueItems": True}, [1, 2, 1]),
    ({"uniqueItems": True}, [1, 1.0]),
    ({"uniqueItems": True}, [{"a": 1}, {"a": 2}]),
    ({"uniqueItems": False}, [1, 1]),
    # objects
    ({"required": ["a", "b"]}, {"a": 1}),
    ({"required": ["a"]}, "not an object"),
    ({"properties": {"a": {"type": "integer"}}}, {"a": "x", "b": "y"}),
    ({"properties": {"a": {}}, "additionalProperties": False}, {"a": 1, "zz": 2, "b": 3}),
    ({"properties": {"a": {}}, "additionalProperties": False}, {"a": 1}),
    ({"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}, {"a": "x", "b": "y"}),
    ({"additionalProperties": {"type": "integer"}}, {"b": 1, "c": 2}),
    # the verdict's own path (keys walked in jsonb's order, not byte order): keys of several
    # lengths, the failing one neither first nor last
    (
        {"properties": {"a": {"type": "integer"}, "bb": {"type": "string"}, "ccc": {"minimum": 3}}},
        {"ccc": 1, "a": 1, "bb": "x", "zz": 0},
    ),
    (
        {"properties": {"a": {"type": "integer"}, "bb": {"type": "string"}, "ccc": {"minimum": 3}}},
        {"ccc": 5, "a": 1, "bb": "x"},
    ),
    ({"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}, {"ab": 1, "b": "x"}),
    ({"properties": {"a": {}}, "additionalProperties": {"type": "integer"}}, {"ab": 1, "b": 2}),
    ({"required": ["é", 'a"b', "c"]}, {"é": 1, "c": 2}),
    ({"required": ["é", 'a"b']}, {"é": 1, 'a"b': 2}),
    ({"type": "object", "properties": {}, "additionalProperties": False}, {}),
    ({"type": "object", "properties": {}, "additionalProperties": False}, {"x": 1}),
    (
        {"type": "object", "properties": {"o": {"type": "object", "required": ["k"]}}},
        {"o": {"j": 1}},
    ),
    ({"minProperties": 1}, {}),
    ({"maxProperties": 1}, {"a": 1, "b": 2}),
    ({"propertyNames": {"pattern": "^[a-z]+$"}}, {"ok": 1, "Not": 2}),
    ({"propertyNames": {"maxLength": 3}}, {"abcd": 1}),
    # enum and const
    ({"enum": ["red", "green"]}, "blue"),
    ({"enum": ["red", "green"]}, "red"),
    ({"enum": [1, None, {"a": 1}]}, {"a": 1}),
    ({"enum": [1]}, 1.0),
    ({"const": "x"}, "y"),
    ({"const": {"a": [1, 2]}}, {"a": [1, 2]}),
    ({"const": None}, 0),
    # combinators
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, 1),
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, None),
    ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, 1),
    ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, -1),
    ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, -1.5),
    ({"allOf": [{"minimum": 0}, {"maximum": 10}]}, 11),
    ({"allOf": [{"type": "string"}, {"type": "integer"}]}, 1.5),
    ({"not": {"type": "integer"}}, 1),
    ({"not": {"type": "integer"}}, "a"),
    # references, Draft 7: keywords beside $ref are ignored
    ({"$defs": {"N": {"type": "integer"}}, "items": {"$ref": "#/$defs/N"}}, [1, "x"]),
    (
        {"definitions": {"N": {"minimum": 5}}, "properties": {"a": {"$ref": "#/definitions/N"}}},
        {"a": 1},
    ),
    (
        {
            "$defs": {"N": {"type": "integer"}},
            "properties": {"a": {"$ref": "#/$defs/N", "type": "string"}},
        },
        {"a": 1},
    ),
    ({"$defs": {"a/b": {"type": "integer"}}, "items": {"$ref": "#/$defs/a~1b"}}, ["x"]),
    (
        {
            "$defs": {
                "Node": {
                    "type": "object",
                    "properties": {
                        "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}
                    },
                    "additionalProperties": False,
                }
            },
            "$ref": "#/$defs/Node",
        },
        {"children": [{"children": []}, {"children": [{"x": 1}]}]},
    ),
    # booleans and annotations
    (False, 1),
    (True, 1),
    ({"title": "T", "description": "d", "default": 3, "examples": [1]}, "anything"),
    ({"type": "integer", "minimum": 10, "multipleOf": 3}, 4),
]

# Where the two references disagree with each other: `jsonschema` (Python's `re`) lets `$`
# match before a final newline; the crate, and ECMA-262, do not. The stand-in follows the crate.
CRATE_ONLY: list[Case] = [
    ({"pattern": "^[a-z]+$"}, "abc\n"),
]


def _standin(db: psycopg.Connection[Any], schema: Any, instance: Any) -> tuple[bool, list[str]]:
    row = db.execute(
        "select extensions.jsonb_matches_schema(%(s)s::json, %(i)s::jsonb),"
        " extensions.json_matches_schema(%(s)s::json, %(i)s::json),"
        " extensions.jsonschema_validation_errors(%(s)s::json, %(i)s::json)",
        {"s": json.dumps(schema), "i": json.dumps(instance)},
    ).fetchone()
    assert row is not None
    assert row[0] == row[1], "json and jsonb disagree"
    return row[0], list(row[2])


def _crate(schema: Any, instance: Any) -> tuple[bool, list[str]]:
    validator = jsonschema_rs.Draft7Validator(schema, validate_formats=True)
    return validator.is_valid(instance), [e.message for e in validator.iter_errors(instance)]


def _python(schema: Any, instance: Any) -> bool:
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    return bool(validator.is_valid(instance))


def _comparable(message: str) -> str:
    # The one message the crate reworded after 0.17 (the release pg_jsonschema 0.3.3 ships):
    # 0.17 lists the options as JSON ('is not one of ["a","b"]'), later releases in words.
    if " is not one of " in message:
        return message.split(" is not one of ")[0] + " is not one of ..."
    # The binding keeps a Python dict's order; pg_jsonschema's crate holds an object in a
    # serde_json map (keys in byte order), which is the order the stand-in names them in.
    if message.startswith("Additional properties are not allowed ("):
        names = message.split("(")[1].rsplit(" ", 2)[0]
        return "Additional properties: " + ", ".join(sorted(names.split(", ")))
    return message


@pytest.mark.parametrize(("schema", "instance"), CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_standin_agrees_with_both_references(
    db: psycopg.Connection[Any], schema: Any, instance: Any
) -> None:
    valid, errors = _standin(db, schema, instance)
    crate_valid, crate_errors = _crate(schema, instance)
    assert valid == crate_valid == _python(schema, instance)
    assert valid == (errors == [])
    assert sorted(map(_comparable, errors)) == sorted(map(_comparable, crate_errors))


@pytest.mark.parametrize(("schema", "instance"), CRATE_ONLY)
def test_standin_follows_the_crate_where_the_references_differ(
    db: psycopg.Connection[Any], schema: Any, instance: Any
) -> None:
    assert _standin(db, schema, instance) == _crate(schema, instance)
    assert _python(schema, instance) != _crate(schema, instance)[0]


def test_enum_message_is_the_one_pg_jsonschema_0_3_3_gives(db: psycopg.Connection[Any]) -> None:
    # jsonschema 0.17.1, src/error.rs:873: `{instance} is not one of {options}`, both as JSON.
    _, errors = _standin(db, {"enum": ["red", "green"]}, "blue")
    assert errors == ['"blue" is not one of ["red","green"]']


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"prefixItems": [{"type": "integer"}]}, "prefixItems"),
        ({"items": [{"type": "integer"}]}, "items"),
        ({"if": {"type": "integer"}, "then": {"minimum": 0}}, "if"),
        ({"patternProperties": {"^a": {}}}, "patternProperties"),
        ({"properties": {"deep": {"contains": {"type": "integer"}}}}, "contains"),
        ({"format": "uri-reference"}, "uri-reference"),
        ({"pattern": "^\\p{L}+$"}, "\\p"),
        ({"pattern": "^(?<year>[0-9]{4})$"}, "named groups"),
        ({"$ref": "https://example.com/schema.json"}, "https://example.com/schema.json"),
    ],
)
def test_what_the_standin_cannot_check_is_refused_by_name(
    db: psycopg.Connection[Any], schema: Any, named: str
) -> None:
    with pytest.raises(psycopg.errors.FeatureNotSupported, match=named.replace("\\", "\\\\")):
        db.execute("select extensions.jsonschema_is_valid(%s::json)", (json.dumps(schema),))
    db.rollback()


def test_is_valid_reads_a_schema_not_its_data(db: psycopg.Connection[Any]) -> None:
    # A property called "type" or "pattern" is a name, and a default is data, not a schema.
    schema = {
        "properties": {"type": {"type": "string"}, "pattern": {"default": {"if": 1}}},
        "required": ["type"],
    }
    assert db.execute(
        "select extensions.jsonschema_is_valid(%s::json)", (json.dumps(schema),)
    ).fetchone() == (True,)
    assert db.execute(
        "select extensions.jsonschema_is_valid(%s::json)", (json.dumps({"type": "integr"}),)
    ).fetchone() == (False,)


# Parameter models as handlers write them: every verdict of the stored schema in the database
# must be pydantic's strict verdict, so an insert is refused exactly when the job would fail.


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


class Size(BaseModel):
    width: int = Field(ge=1, le=10_000)
    height: int = Field(ge=1, le=10_000)


class Crop(BaseModel):
    kind: Literal["crop"] = "crop"
    size: Size


class Blur(BaseModel):
    kind: Literal["blur"] = "blur"
    radius: float = Field(gt=0, le=100)


class Resize(BaseModel):
    image: UUID
    name: str = Field(min_length=1, max_length=40, pattern="^[a-z0-9][a-z0-9_-]*$")
    size: Size
    colour: Colour = Colour.RED
    tags: list[str] = Field(default_factory=list, max_length=3)
    labels: dict[str, int] = Field(default_factory=dict)
    not_before: datetime | None = None
    effects: list[Annotated[Crop | Blur, Field(discriminator="kind")]] = Field(default_factory=list)
    quality: Literal["low", "high"] = "high"
    dry_run: bool = False


IMAGE = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
OK = {"image": IMAGE, "name": "cat", "size": {"width": 1, "height": 2}}
PAYLOADS: list[Any] = [
    {"image": IMAGE, "name": "cat", "size": {"width": 10, "height": 20}},
    {"image": IMAGE.replace("-", ""), "name": "cat", "size": {"width": 10, "height": 20}},
    {"image": "{" + IMAGE + "}", "name": "cat", "size": {"width": 1, "height": 1}},
    {"image": "urn:uuid:" + IMAGE, "name": "cat", "size": {"width": 1, "height": 1}},
    {"image": "not-a-uuid", "name": "cat", "size": {"width": 10, "height": 20}},
    {"image": IMAGE, "name": "Cat", "size": {"width": 10, "height": 20}},
    {"image": IMAGE, "name": "", "size": {"width": 10, "height": 20}},
    {"image": IMAGE, "name": "x" * 41, "size": {"width": 10, "height": 20}},
    {"image": IMAGE, "name": "cat", "size": {"width": "10", "height": 20}},
    {"image": IMAGE, "name": "cat", "size": {"width": 0, "height": 20}},
    {"image": IMAGE, "name": "cat", "size": {"width": 10}},
    {"image": IMAGE, "name": "cat"},
    {"image": IMAGE, "name": "cat", "size": {"width": 10, "height": 20}, "colour": "blue"},
    {**OK, "colour": "green"},
    {**OK, "tags": ["a", "b", "c", "d"]},
    {**OK, "tags": ["a", 1]},
    {**OK, "labels": {"a": 1}},
    {**OK, "labels": {"a": "1"}},
    {**OK, "not_before": None},
    {**OK, "not_before": "2026-12-03T08:00:00Z"},
    {**OK, "not_before": "tomorrow"},
    {**OK, "not_before": 1764748800},
    {**OK, "effects": [{"kind": "blur", "radius": 2.5}, {"kind": "crop", "size": OK["size"]}]},
    {**OK, "effects": [{"kind": "blur", "radius": 0}]},
    {**OK, "effects": [{"kind": "sharpen"}]},
    {**OK, "quality": "medium"},
    {**OK, "dry_run": "yes"},
    {**OK, "dry_run": 1},
    {**OK, "nmae": "typo"},
    {"image": 7, "name": ["cat"], "size": None},
]  # fmt: skip


def _pydantic_accepts(model: type[BaseModel], payload: Any) -> bool:
    try:
        parameters.validate(model, payload)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("payload", PAYLOADS, ids=[str(i) for i in range(len(PAYLOADS))])
def test_the_stored_schema_refuses_exactly_what_the_strict_model_refuses(
    db: psycopg.Connection[Any], payload: Any
) -> None:
    model = parameters.strict_model(Resize)
    schema = parameters.stored_schema(model)
    assert parameters.portability_problems(schema) == []
    valid, _ = _standin(db, schema, payload)
    assert valid == _pydantic_accepts(model, payload) == _crate(schema, payload)[0]
