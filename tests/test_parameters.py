"""Parameters are checked when a job is created: by the model at `POST /jobs`, by the stored
JSON Schema in the enqueue trigger for any insert (supabase-js included), and by the model again
when the job runs."""

from __future__ import annotations

import json
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import BaseModel, ConfigDict, Field

from handlers.sample_task import SampleParams
from jobhook import JobContext, parameters
from jobhook.devstack.stack import Served
from jobhook.registry import InvalidParameters, Registry, RegistryError
from tests.conftest import DEMO_USER, Stack, act_as_user, user_token


def _registry() -> Registry:
    job_types = Registry()

    @job_types.job(name="sample_task")
    async def sample_task(params: SampleParams, ctx: JobContext) -> None: ...

    return job_types


def _insert_as_user(db: psycopg.Connection[Any], payload: Any) -> None:
    act_as_user(db, DEMO_USER)
    db.execute("set local role authenticated")
    db.execute(
        "insert into public.jobs (job_type, payload) values ('sample_task', %s)",
        (json.dumps(payload),),
    )


@pytest.fixture
def synced(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    _registry().sync(db)
    return db


def _refusal(db: psycopg.Connection[Any], payload: Any) -> psycopg.errors.InvalidParameterValue:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        _insert_as_user(db, payload)
    db.rollback()
    return caught.value


def test_a_mistyped_parameter_fails_the_insert_naming_the_field(
    synced: psycopg.Connection[Any],
) -> None:
    error = _refusal(synced, {"steps": "three"})
    assert error.diag.message_primary == (
        'invalid parameters for job type "sample_task": steps: "three" is not of type "integer"'
    )
    assert json.loads(error.diag.message_detail or "") == [
        {"field": "steps", "message": '"three" is not of type "integer"'}
    ]
    assert error.diag.message_hint == (
        'the parameters of "sample_task": fail_times, result, step_seconds, steps'
    )


def test_a_misspelt_parameter_fails_the_insert_instead_of_running_with_defaults(
    synced: psycopg.Connection[Any],
) -> None:
    error = _refusal(synced, {"stepz": 3, "step_seconds": -1})
    assert json.loads(error.diag.message_detail or "") == [
        {"field": "stepz", "message": "unknown parameter"},
        {"field": "step_seconds", "message": "-1 is less than the minimum of 0"},
    ]


def test_right_parameters_are_accepted_as_sent(synced: psycopg.Connection[Any]) -> None:
    _insert_as_user(synced, {"steps": 2, "result": {"any": ["json"]}})
    row = synced.execute("select payload from public.jobs").fetchone()
    assert row == ({"steps": 2, "result": {"any": ["json"]}},)


class Needs(BaseModel):
    storage_path: str = Field(min_length=1)


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    steps: int = 1


def test_required_parameters_are_named_when_missing(db: psycopg.Connection[Any]) -> None:
    job_types = Registry()

    @job_types.job(name="sample_task")
    async def needs(params: Needs, ctx: JobContext) -> None: ...

    job_types.sync(db)
    error = _refusal(db, {})
    assert json.loads(error.diag.message_detail or "") == [
        {"field": "storage_path", "message": "missing (a required parameter)"}
    ]


def test_a_type_that_allows_extra_parameters_says_so_in_its_model(
    db: psycopg.Connection[Any],
) -> None:
    job_types = Registry()

    @job_types.job(name="sample_task")
    async def open_ended(params: Open, ctx: JobContext) -> None: ...

    job_types.sync(db)
    _insert_as_user(db, {"steps": 1, "anything": "else"})
    job_type = job_types.get("sample_task")
    assert job_type is not None
    assert job_type.parse({"steps": 1, "anything": "else"}).model_extra == {"anything": "else"}


def test_the_model_is_strict_as_json_schema_is() -> None:
    job_type = _registry().get("sample_task")
    assert job_type is not None
    with pytest.raises(InvalidParameters) as caught:
        job_type.parse({"steps": "3", "step_seconds": True})
    assert caught.value.problems == [
        {"field": "steps", "message": 'Input should be a valid integer (got "3")'},
        {"field": "step_seconds", "message": "Input should be a valid number (got true)"},
    ]
    # Still the handler's own model: what it annotated is what it receives.
    assert isinstance(job_type.parse({"steps": 3}), SampleParams)


def test_extra_ignore_is_refused_at_registration() -> None:
    class Quiet(BaseModel):
        model_config = ConfigDict(extra="ignore")

    with pytest.raises(RegistryError, match="extra='ignore'"):
        Registry().job(name="quiet")(_handler_for(Quiet))


@pytest.mark.parametrize(
    ("annotation", "named"),
    [
        (tuple[int, str], "tuples are not supported"),
        (str, "uses \\\\d, which pydantic reads as a Unicode class"),
    ],
)
def test_a_model_the_database_would_check_differently_is_refused(
    annotation: Any, named: str
) -> None:
    field = Field(pattern="^\\d+$") if annotation is str else Field()
    model = type("Odd", (BaseModel,), {"__annotations__": {"value": annotation}, "value": field})
    with pytest.raises(RegistryError, match=f"job type 'odd'.*value: .*{named}"):
        Registry().job(name="odd")(_handler_for(model))


def test_the_database_refuses_a_schema_it_cannot_check(db: psycopg.Connection[Any]) -> None:
    schema = {"properties": {"pair": {"prefixItems": [{"type": "integer"}]}}}
    with pytest.raises(psycopg.errors.FeatureNotSupported, match='"prefixItems"'):
        db.execute(
            "insert into jobhook.job_types (name, params_schema) values ('pairs', %s)",
            (json.dumps(schema),),
        )


def test_uuid_fields_are_checked_at_insert_though_draft_7_ignores_their_format() -> None:
    class Doc(BaseModel):
        document: Any = Field(json_schema_extra={"format": "uuid", "type": "string"})

    schema = parameters.stored_schema(parameters.strict_model(Doc))
    assert schema["properties"]["document"]["pattern"] == parameters.UUID_PATTERN


def _handler_for(model: type[BaseModel]) -> Any:
    async def handler(params: Any, ctx: JobContext) -> None: ...

    handler.__annotations__["params"] = model
    return handler


@pytest.mark.commits
async def test_post_jobs_answers_422_naming_each_field(committed: Stack, app_stack: Served) -> None:
    async with httpx.AsyncClient(
        base_url=app_stack.url, headers={"Authorization": f"Bearer {user_token()}"}
    ) as http:
        reply = await http.post(
            "/jobs", json={"job_type": "sample_task", "payload": {"steps": "three", "stepz": 1}}
        )
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_parameters"
    assert error["details"] == [
        {"field": "steps", "message": 'Input should be a valid integer (got "three")'},
        {"field": "stepz", "message": "unknown parameter"},
    ]
    with psycopg.connect(committed.url) as conn:
        assert conn.execute("select count(*) from public.jobs").fetchone() == (0,)


@pytest.mark.commits
async def test_a_type_only_the_database_knows_is_checked_by_the_trigger(
    committed: Stack, app_stack: Served
) -> None:
    # Another deployment's type: this app has no model for it, the stored schema decides.
    schema = {"properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "insert into jobhook.job_types (name, params_schema) values ('elsewhere', %s)",
            (json.dumps(schema),),
        )
    async with httpx.AsyncClient(
        base_url=app_stack.url, headers={"Authorization": f"Bearer {user_token()}"}
    ) as http:
        reply = await http.post("/jobs", json={"job_type": "elsewhere", "payload": {"n": 1.5}})
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_parameters"
    assert error["message"] == (
        'invalid parameters for job type "elsewhere": n: 1.5 is not of type "integer"'
    )
    assert error["details"] == [{"field": "n", "message": '1.5 is not of type "integer"'}]


@pytest.mark.commits
async def test_openapi_carries_each_types_parameters_discriminated_by_job_type(
    app_stack: Served,
) -> None:
    async with httpx.AsyncClient(base_url=app_stack.url) as http:
        document = (await http.get("/openapi.json")).json()
    components = document["components"]["schemas"]
    body = document["paths"]["/jobs"]["post"]["requestBody"]["content"]["application/json"]
    mapping = body["schema"]["discriminator"]["mapping"]
    assert body["schema"]["discriminator"]["propertyName"] == "job_type"
    assert mapping["sample_task"] == "#/components/schemas/JobCreate_sample_task"
    variant = components["JobCreate_sample_task"]
    assert variant["properties"]["job_type"]["const"] == "sample_task"
    [ref, _] = variant["properties"]["payload"]["anyOf"]
    sample = components[ref["$ref"].rsplit("/", 1)[1]]
    assert set(sample["properties"]) == {"steps", "step_seconds", "fail_times", "result"}
    assert sample["additionalProperties"] is False
    assert len(body["schema"]["oneOf"]) == len(mapping)
