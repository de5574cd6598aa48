"""The dev stack's pg_jsonschema against two reference validators, case by case.

Hosted Supabase runs pg_jsonschema 0.3.3: the Rust crate `jsonschema` 0.17.1 in Draft 7 with
formats asserted. Each case below goes through the stand-in, the `jsonschema` package's
Draft7Validator (with its format checker) and `jsonschema_rs`, the same crate's Python binding
(a newer release), in Draft 7 with formats on; the verdicts must all agree, and the stand-in's
messages must be the crate's.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import Annotated, Any, Literal
from uuid import UUID

import jsonschema
import jsonschema_rs
import psycopg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
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
    ({"type": ["string", "integer", "null"]}, 1.5),
    # numbers
    ({"minimum": 1}, 0),
    ({"minimum": 1}, 1),
    ({"maximum": 1.5}, 1.6),
    ({"exclusiveMinimum": 1}, 1),
    ({"exclusiveMaximum": 10}, 10),
    ({"exclusiveMaximum": 10}, 9.99),
    ({"multipleOf": 2}, 3),
    ({"multipleOf": 2}, 4),
    ({"multipleOf": 0.7}, 1.4),
    ({"multipleOf": 1.5}, 4.5),
    ({"multipleOf": 0.5}, 2.3),
    ({"multipleOf": 0.25}, -0.75),
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
    ({"uniqueItems": True}, [1, *range(1, 16)]),
    ({"uniqueItems": True}, [{"a": 1, "b": [2.5]}, {"b": [2.5], "a": 1}, *range(2, 16)]),
    ({"uniqueItems": True}, [1, 1.0, *range(2, 15)]),
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
    ({"propertyNames": False}, {"é": {}, "a": [], "aa": []}),
    ({"propertyNames": False}, {}),
    ({"additionalProperties": False}, {"b": None, "a b": [255, "a\nb"], "a": 1}),
    ({"additionalProperties": False}, {}),
    ({"additionalProperties": False, "properties": {}}, {"b": None, "a": 1}),
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


def _in_byte_order(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _in_byte_order(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_in_byte_order(item) for item in value]
    return value


def _crate(schema: Any, instance: Any) -> tuple[bool, list[str]]:
    # The binding keeps a Python dict's order where pg_jsonschema's crate holds an object in a
    # serde_json map, keys in byte order (which is where, say, "the first extra property" is).
    instance = _in_byte_order(instance)
    validator = jsonschema_rs.Draft7Validator(_in_byte_order(schema), validate_formats=True)
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
    # 0.17 names the types of a "type" list from a bit set, alphabetically
    # (src/primitive_type.rs); later releases in another order.
    if " is not of types " in message:
        instance, types = message.split(" is not of types ")
        return instance + " is not of types " + ", ".join(sorted(types.split(", ")))
    # 0.17 shows a divisor as an f64 in Rust's Display (2.0 as "2"), later releases as JSON.
    if " is not a multiple of " in message and message.endswith(".0"):
        return message.removesuffix(".0")
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


# Where the binding (a later release of the crate) and jsonschema 0.17.1 part ways, with what
# 0.17.1 says, read from its source at the rust-v0.17.1 tag. multipleOf
# (src/keywords/multiple_of.rs) divides in f64: a whole divisor needs `item % divisor == 0.`
# of the f64 item, so 2^53 + 1 (an f64 of 2^53) is even; a fractional one needs
# `(item / divisor) % 1. < f64::EPSILON`, which 0.3 / 0.1 (2.9999999999999996) fails and every
# negative quotient passes. Later releases decide multipleOf exactly. A "type" list is named
# alphabetically (src/primitive_type.rs, a bit set), and a divisor is shown as an f64.
# uniqueItems (src/keywords/unique_items.rs) compares up to 15 items by value, and hashes more:
# then 1 and 1.0, an integer and an f64 to serde_json, are two items.
CRATE_0_17_1: list[tuple[Any, Any, bool, list[str]]] = [
    ({"multipleOf": 0.1}, 0.3, False, ["0.3 is not a multiple of 0.1"]),
    ({"multipleOf": 0.01}, 0.07, False, ["0.07 is not a multiple of 0.01"]),
    ({"items": {"multipleOf": 0.1}}, [0.7], False, ["0.7 is not a multiple of 0.1"]),
    ({"multipleOf": 0.5}, -0.3, True, []),
    ({"multipleOf": 0.1}, -0.35, True, []),
    ({"multipleOf": 2}, 9007199254740993, True, []),
    ({"multipleOf": 2.0}, 3, False, ["3 is not a multiple of 2"]),
    ({"uniqueItems": True}, [1, 1.0, *range(2, 16)], True, []),
    ({"uniqueItems": True}, [{"a": [1]}, {"a": [1.0]}, *range(2, 16)], True, []),
    (
        {"type": ["object", "boolean", "string"]},
        None,
        False,
        ['null is not of types "boolean", "object", "string"'],
    ),
]


@pytest.mark.parametrize(("schema", "instance", "valid", "messages"), CRATE_0_17_1)
def test_standin_follows_jsonschema_0_17_1_where_the_binding_does_not(
    db: psycopg.Connection[Any], schema: Any, instance: Any, valid: bool, messages: list[str]
) -> None:
    assert _standin(db, schema, instance) == (valid, messages)
    assert _crate(schema, instance) != (valid, messages)


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


def _crate_compiles(schema: Any) -> bool:
    try:
        jsonschema_rs.Draft7Validator(schema)
    except jsonschema_rs.ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    "schema",
    [
        {"minLength": -1},
        {"maxItems": 1.5},
        {"multipleOf": 0},
        {"multipleOf": -1},
        {"uniqueItems": 1},
        {"required": ["a", "a"]},
        {"type": []},
        {"type": ["string", "string"]},
        {"type": [1]},
        {"pattern": 1},
        {"format": 1},
        {"properties": {"a": {"minProperties": -2}}},
    ],
)
def test_is_valid_refuses_what_the_meta_schema_refuses(
    db: psycopg.Connection[Any], schema: Any
) -> None:
    assert db.execute(
        "select extensions.jsonschema_is_valid(%s::json)", (json.dumps(schema),)
    ).fetchone() == (False,)
    assert not _crate_compiles(schema)
    with pytest.raises(jsonschema.SchemaError):
        jsonschema.Draft7Validator.check_schema(schema)


def test_is_valid_refuses_a_fractional_count_as_jsonschema_0_17_1_does(
    db: psycopg.Connection[Any],
) -> None:
    # The meta-schema takes 2.0 for an integer, but 0.17.1 then reads the bound with `as_u64`
    # (src/keywords/min_length.rs), which an f64 fails: the schema does not compile. Later
    # releases take it.
    schema = {"minLength": 2.0}
    assert db.execute(
        "select extensions.jsonschema_is_valid(%s::json)", (json.dumps(schema),)
    ).fetchone() == (False,)
    assert _crate_compiles(schema)


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


# Upstream's own tests: supabase/pg_jsonschema v0.3.3, src/lib.rs, the `#[pg_test]` functions
# in `mod tests`, with their inputs and the verdicts and messages they assert. The `_rs` tests
# there call the Rust functions with typed values and the `_spi` tests the SQL functions with
# untyped literals; here both go through SQL, the `_spi` ones with untyped parameters, so that
# PostgreSQL resolves the call as it resolves upstream's.

UPSTREAM_TYPED: list[tuple[str, Any, Any, bool]] = [
    # test_json_matches_schema_rs, test_json_not_matches_schema_rs
    ("json_matches_schema", {"maxLength": 5}, "foo", True),
    ("json_matches_schema", {"maxLength": 5}, "foobar", False),
    # test_jsonb_matches_schema_rs, test_jsonb_not_matches_schema_rs
    ("jsonb_matches_schema", {"maxLength": 5}, "foo", True),
    ("jsonb_matches_schema", {"maxLength": 5}, "foobar", False),
]

UPSTREAM_LITERAL: list[tuple[str, str, str, bool]] = [
    # test_json_matches_schema_spi, test_json_not_matches_schema_spi
    ("json_matches_schema", '{"type": "object"}', "{}", True),
    ("json_matches_schema", '{"type": "object"}', "1", False),
    # test_jsonb_matches_schema_spi, test_jsonb_not_matches_schema_spi
    ("jsonb_matches_schema", '{"type": "object"}', "{}", True),
    ("jsonb_matches_schema", '{"type": "object"}', "1", False),
]


@pytest.mark.parametrize(("function", "schema", "instance", "verdict"), UPSTREAM_TYPED)
def test_upstream_verdicts_of_typed_arguments(
    db: psycopg.Connection[Any], function: str, schema: Any, instance: Any, verdict: bool
) -> None:
    instance_type = "jsonb" if function.startswith("jsonb") else "json"
    row = db.execute(
        f"select extensions.{function}(%s::json, %s::{instance_type})",
        (json.dumps(schema), json.dumps(instance)),
    ).fetchone()
    assert row == (verdict,)


@pytest.mark.parametrize(("function", "schema", "instance", "verdict"), UPSTREAM_LITERAL)
def test_upstream_verdicts_of_literal_arguments(
    db: psycopg.Connection[Any], function: str, schema: str, instance: str, verdict: bool
) -> None:
    row = db.execute(f"select extensions.{function}(%s, %s)", (schema, instance)).fetchone()
    assert row == (verdict,)


@pytest.mark.parametrize(
    ("schema", "verdict"),
    [
        ({"type": "object"}, True),  # test_jsonschema_is_valid
        ({"type": "obj"}, False),  # test_jsonschema_is_not_valid
    ],
)
def test_upstream_schema_verdicts(db: psycopg.Connection[Any], schema: Any, verdict: bool) -> None:
    row = db.execute(
        "select extensions.jsonschema_is_valid(%s::json)", (json.dumps(schema),)
    ).fetchone()
    assert row == (verdict,)


@pytest.mark.parametrize(
    ("schema", "instance", "messages"),
    [
        # test_jsonschema_validation_errors_none
        ({"maxLength": 4}, "foo", []),
        # test_jsonschema_validation_erros_one (sic)
        ({"maxLength": 4}, "123456789", ['"123456789" is longer than 4 characters']),
        # test_jsonschema_validation_errors_multiple: a property named "additionalProperties"
        # (the instance has none), and the errors in the properties' byte order
        (
            {
                "type": "object",
                "properties": {
                    "foo": {"type": "string"},
                    "bar": {"type": "number"},
                    "baz": {"type": "boolean"},
                    "additionalProperties": False,
                },
            },
            {"foo": 1, "bar": [], "baz": "1"},
            [
                '[] is not of type "number"',
                '"1" is not of type "boolean"',
                '1 is not of type "string"',
            ],
        ),
    ],
)
def test_upstream_validation_errors(
    db: psycopg.Connection[Any], schema: Any, instance: Any, messages: list[str]
) -> None:
    row = db.execute(
        "select extensions.jsonschema_validation_errors(%s::json, %s::json)",
        (json.dumps(schema), json.dumps(instance)),
    ).fetchone()
    assert row == (messages,)


# A differential fuzz: generated schemas over the keywords the stand-in supports, generated
# instances, and the crate's binding as the reference for verdicts and messages. The value
# pools are small on purpose, so that keys meet properties, items repeat and numbers meet
# their bounds often enough for both verdicts to come up.

FUZZ_KEYS = ["a", "b", "aa", "B", "é", "a b"]
FUZZ_STRINGS = [
    "",
    "a",
    "ab",
    "abc",
    "ABC",
    "a1",
    "é",
    "ééé",
    "a\nb",
    " \t",
    "cat",
    "hotdog",
    "tmpfile",
    "2026-12-03",
    "2026-02-30",
    "2024-02-29",
    "2026-12-03T08:00:00Z",
    "2026-12-03T08:00:00.5+01:00",
    "2026-12-03T24:00:00Z",
    "08:00:00Z",
    "08:00:00.123456+01:00",
    "user@example.com",
    ".user@example.com",
    "example.com",
    "-example.com",
    "192.168.0.1",
    "01.2.3.4",
    "::1",
    "2001:db8::g",
    "https://example.com/a?b#c",
    "no scheme",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
]
# No exponents: serde_json writes 1e-7 where PostgreSQL writes 0.0000001, a difference of
# messages only, which the verdict-only comparison below does not need to skip.
FUZZ_NUMBERS: list[int | float] = [
    -3, -1, 0, 1, 2, 3, 4, 6, 10, 255, -0.5, 0.1, 0.2, 0.3, 0.5, 0.7, 1.5, 2.0, 2.5, 3.3, 7.25,
]  # fmt: skip
FUZZ_PATTERNS = [
    "^[a-z]+$",
    "b",
    "^a.c$",
    "^a.b$",
    "^\\d+$",
    "^\\w*$",
    "^[\\w.-]+$",
    "^[^/]+$",
    "cat|dog",
    "^.{2,3}$",
    "^(?!tmp)",
    "^\\s*$",
    "[A-Z]",
    "^$",
    "é",
]
FUZZ_FORMATS = [
    "date",
    "date-time",
    "time",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uuid",
    "duration",
]
FUZZ_TYPES = ["null", "boolean", "object", "array", "number", "integer", "string"]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(FUZZ_NUMBERS),
    st.integers(-5, 12),
    st.sampled_from(FUZZ_STRINGS),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=4),
)
FUZZ_INSTANCES: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FUZZ_KEYS), children, max_size=4),
    ),
    max_leaves=8,
)
# References reach shared definitions that hold no references themselves, so nothing recurses.
FUZZ_REFS = ["#/definitions/A", "#/$defs/B"]


def _keyword_values(children: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    counts = st.integers(0, 4)
    return {
        "type": st.sampled_from(FUZZ_TYPES)
        | st.lists(st.sampled_from(FUZZ_TYPES), min_size=1, max_size=3, unique=True),
        "required": st.lists(st.sampled_from(FUZZ_KEYS), max_size=3, unique=True),
        "properties": st.dictionaries(st.sampled_from(FUZZ_KEYS), children, max_size=3),
        "additionalProperties": children,
        "enum": st.lists(FUZZ_INSTANCES, min_size=1, max_size=3),
        "const": FUZZ_INSTANCES,
        "minimum": st.sampled_from(FUZZ_NUMBERS),
        "maximum": st.sampled_from(FUZZ_NUMBERS),
        "exclusiveMinimum": st.sampled_from(FUZZ_NUMBERS),
        "exclusiveMaximum": st.sampled_from(FUZZ_NUMBERS),
        "multipleOf": st.sampled_from([1, 2, 3, 0.5, 0.1, 0.25, 1.5, 0.01, 0.7, 2.0]),
        "minLength": counts,
        "maxLength": counts,
        "pattern": st.sampled_from(FUZZ_PATTERNS),
        "format": st.sampled_from(FUZZ_FORMATS),
        "items": children,
        "minItems": counts,
        "maxItems": counts,
        "uniqueItems": st.booleans(),
        "minProperties": counts,
        "maxProperties": counts,
        "propertyNames": children,
        "allOf": st.lists(children, min_size=1, max_size=3),
        "anyOf": st.lists(children, min_size=1, max_size=3),
        "oneOf": st.lists(children, min_size=1, max_size=3),
        "not": children,
    }


def _schema_objects(children: st.SearchStrategy[Any], refs: bool) -> st.SearchStrategy[Any]:
    values = _keyword_values(children)

    @st.composite
    def draw_schema(draw: st.DrawFn) -> dict[str, Any]:
        names = draw(st.lists(st.sampled_from(sorted(values)), max_size=3, unique=True))
        schema = {name: draw(values[name]) for name in names}
        if refs and draw(st.integers(0, 5)) == 0:
            # Draft 7: what stands beside a $ref is ignored.
            schema["$ref"] = draw(st.sampled_from(FUZZ_REFS))
        return schema

    return draw_schema()


def _schemas(refs: bool) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.booleans() | _schema_objects(st.booleans(), refs),
        lambda children: _schema_objects(children, refs),
        max_leaves=6,
    )


@st.composite
def _root_schemas(draw: st.DrawFn) -> dict[str, Any]:
    root: dict[str, Any] = draw(_schema_objects(_schemas(refs=True), refs=False))
    root["definitions"] = {"A": draw(_schemas(refs=False))}
    root["$defs"] = {"B": draw(_schemas(refs=False))}
    return root


FUZZ_SCHEMAS = _root_schemas()


def _found(value: Any, keyword: str | None) -> list[Any]:
    """The numbers in a JSON value, or with a keyword the values it has anywhere inside."""
    if isinstance(value, dict):
        own = [value[keyword]] if keyword in value else []
        return own + [found for item in value.values() for found in _found(item, keyword)]
    if isinstance(value, list):
        return [found for item in value for found in _found(item, keyword)]
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return [value] if keyword is None and is_number else []


def _multiple_in_f64(item: float, divisor: float) -> bool:
    # jsonschema 0.17.1, src/keywords/multiple_of.rs (see CRATE_0_17_1).
    item, divisor = float(item), float(divisor)
    if divisor.is_integer():
        return item.is_integer() and math.fmod(item, divisor) == 0
    quotient = item / divisor
    if not math.isfinite(quotient):
        return (Fraction(item) / Fraction(divisor)).denominator == 1
    return math.fmod(quotient, 1.0) < sys.float_info.epsilon


def _multiples_part_ways(schema: Any, instance: Any) -> bool:
    """Whether a divisor in the schema and a number in the instance are where 0.17.1 and the
    binding decide multipleOf differently: the fuzz has no reference there."""
    divisors = [d for d in _found(schema, "multipleOf") if isinstance(d, int | float)]
    return any(
        _multiple_in_f64(item, divisor)
        != ((Fraction(repr(item)) / Fraction(repr(divisor))).denominator == 1)
        for item in _found(instance, None)
        for divisor in divisors
        if divisor > 0
    )


def assert_agrees_with_the_crate(db: psycopg.Connection[Any], schema: Any, instance: Any) -> None:
    """The stand-in's verdict (both entry points) and messages, against the crate's binding."""
    valid, errors = _standin(db, schema, instance)
    crate_valid, crate_errors = _crate(schema, instance)
    assert valid == crate_valid
    assert valid == (errors == [])
    assert sorted(map(_comparable, errors)) == sorted(map(_comparable, crate_errors))


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(schema=FUZZ_SCHEMAS, instance=FUZZ_INSTANCES)
def test_fuzzed_schemas_agree_with_the_crate(
    db: psycopg.Connection[Any], schema: Any, instance: Any
) -> None:
    assume(not _multiples_part_ways(schema, instance))
    assert_agrees_with_the_crate(db, schema, instance)
