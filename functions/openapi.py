"""The OpenAPI document, with each job type's parameters, so a generated client is typed.

`POST /jobs` and `POST /service/jobs` take one body per job type, told apart by `job_type`
(a discriminated `oneOf`): a client generated from `/openapi.json` knows that `sample_task` takes
`steps` and `step_seconds`, not just "an object".
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from jobhook import parameters
from jobhook.registry import JobType, Registry

REF = "#/components/schemas/{model}"
CREATE_MODELS = ("JobCreate", "ServiceJobCreate")


def document(app: FastAPI, job_types: Registry) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components: dict[str, Any] = schema["components"]["schemas"]
    types = sorted(job_types, key=lambda job_type: job_type.name)
    for model in CREATE_MODELS:
        components[model]["properties"]["job_type"]["enum"] = [t.name for t in types]
    if not types:
        return schema
    parameter_refs = {t.name: _add_parameters(components, t) for t in types}
    for model in CREATE_MODELS:
        mapping = {}
        for job_type in types:
            variant = f"{model}_{job_type.name}"
            components[variant] = _variant(components[model], job_type, parameter_refs)
            mapping[job_type.name] = REF.format(model=variant)
        body = {
            "oneOf": [{"$ref": ref} for ref in mapping.values()],
            "discriminator": {"propertyName": "job_type", "mapping": mapping},
        }
        _replace_request_body(schema, REF.format(model=model), body)
    return schema


def _add_parameters(components: dict[str, Any], job_type: JobType) -> str:
    """Put the type's parameter schema (and the models it uses) among the components; return
    the reference to it. Named after the type, so two types' models cannot collide."""
    prefix = "".join(part.title() for part in job_type.name.split("_"))
    own = parameters.stored_schema(job_type.params)
    definitions = own.pop("$defs", {})
    renamed = {name: f"{prefix}_{name}" for name in definitions}
    top = f"{prefix}Parameters"

    def retarget(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node = {**node, "$ref": REF.format(model=renamed[ref.removeprefix("#/$defs/")])}
            return {key: retarget(value) for key, value in node.items()}
        if isinstance(node, list):
            return [retarget(item) for item in node]
        return node

    for name, definition in definitions.items():
        components[renamed[name]] = retarget(definition)
    components[top] = retarget(own) | {"title": f"{job_type.name} parameters"}
    return REF.format(model=top)


def _variant(base: dict[str, Any], job_type: JobType, refs: dict[str, str]) -> dict[str, Any]:
    variant = copy.deepcopy(base)
    variant["title"] = f"{base.get('title', 'JobCreate')} ({job_type.name})"
    variant.pop("examples", None)
    properties = variant["properties"]
    properties["job_type"] = {"type": "string", "const": job_type.name, "title": "Job Type"}
    for field in ("payload", "job_parameters"):
        if field in properties:
            description = properties[field].get("description")
            properties[field] = {
                "anyOf": [{"$ref": refs[job_type.name]}, {"type": "null"}],
                "description": description,
            }
    return variant


def _replace_request_body(schema: dict[str, Any], ref: str, body: dict[str, Any]) -> None:
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            media = content.get("application/json")
            if media and media.get("schema") == {"$ref": ref}:
                media["schema"] = body
