"""Job types: a handler, its parameter model and its options, registered by a decorator.

    @job(timeout_seconds=120, max_attempts=5)
    async def resize_image(params: ResizeParams, ctx: JobContext) -> dict[str, str]: ...

The name defaults to the function's, the parameter model to the first argument's annotation.
The registry is the source of truth for `jobhook.job_types`: `sync` writes every registered type
there (enabled, served by this deployment), and every live deployment renews its types each
minute; a type that no deployment renews is disabled, so clients cannot enqueue work that no
deployed handler would run, while a rolling deploy's old and new versions both keep theirs.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ValidationError

from jobhook import parameters
from jobhook.jobs import ClientError, SetupError
from jobhook.store import queries

if TYPE_CHECKING:
    from jobhook.context import JobContext

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TIER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

Handler = Callable[[Any, "JobContext"], Awaitable[Any] | Any]
F = TypeVar("F", bound=Callable[..., Any])


class RegistryError(SetupError):
    """A job type is declared wrongly; the message names it and the rule."""


class InvalidParameters(ClientError):
    """A payload that is not the job type's parameters; `problems` names each field. The API
    answers it as it is; the runner fails the job with its message."""

    status = 422
    code = "invalid_parameters"

    def __init__(self, job_type: str, problems: list[dict[str, str]]) -> None:
        super().__init__(f"invalid parameters: {parameters.describe(problems)}")
        self.job_type = job_type
        self.problems = problems
        self.details = problems


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Handler
    params: type[BaseModel]
    tier: str = "cpu"
    timeout_seconds: int = 300
    max_attempts: int = 3
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    max_unfinished_per_user: int | None = None
    # At most this many of one user's jobs of this type run at once (fairness); None: no cap.
    max_running_per_user: int | None = None
    description: str | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def parse(self, payload: Any) -> BaseModel:
        """The payload as this type's parameters, checked as strictly as at insert; raises
        InvalidParameters naming every field that is wrong."""
        try:
            return parameters.validate(self.params, payload)
        except ValidationError as exc:
            raise InvalidParameters(self.name, parameters.problems_of(exc)) from None

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_attempts": self.max_attempts,
            "timeout_seconds": self.timeout_seconds,
            "backoff_base_seconds": self.backoff_base_seconds,
            "backoff_max_seconds": self.backoff_max_seconds,
            "max_unfinished_per_user": self.max_unfinished_per_user,
            "max_running_per_user": self.max_running_per_user,
            "tier": self.tier,
            "params_schema": Jsonb(parameters.stored_schema(self.params)),
            "description": self.description,
        }


# How long a deployment's word that it serves its types holds; it renews it every minute, so
# a type outlives the last deployment that ran it by this much, no more.
SERVE_SECONDS = 300


class Registry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def __iter__(self) -> Iterator[JobType]:
        return iter(self._types.values())

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def get(self, name: str) -> JobType | None:
        return self._types.get(name)

    def add(self, job_type: JobType) -> JobType:
        if not NAME.match(job_type.name):
            raise RegistryError(
                f"job type name {job_type.name!r} must match {NAME.pattern} "
                "(lowercase letters, digits and _, starting with a letter)"
            )
        if not TIER.match(job_type.tier):
            raise RegistryError(
                f"job type {job_type.name!r}: tier {job_type.tier!r} must match {TIER.pattern}"
            )
        if not 1 <= job_type.max_attempts <= 100:
            raise RegistryError(f"job type {job_type.name!r}: max_attempts must be 1 to 100")
        if job_type.max_running_per_user is not None and job_type.max_running_per_user < 1:
            raise RegistryError(
                f"job type {job_type.name!r}: max_running_per_user must be at least 1 (or None)"
            )
        if not 1 <= job_type.timeout_seconds <= 86400:
            raise RegistryError(f"job type {job_type.name!r}: timeout_seconds must be 1 to 86400")
        existing = self._types.get(job_type.name)
        if existing is not None and existing.handler is not job_type.handler:
            raise RegistryError(f"job type {job_type.name!r} is registered twice")
        if job_type.params.model_config.get("extra") == "ignore":
            raise RegistryError(
                f"job type {job_type.name!r}: its parameter model says extra='ignore', which "
                "would drop a misspelt parameter silently; use 'forbid' (the default) or 'allow'"
            )
        job_type = dataclasses.replace(job_type, params=parameters.strict_model(job_type.params))
        problems = parameters.portability_problems(parameters.stored_schema(job_type.params))
        if problems:
            raise RegistryError(
                f"job type {job_type.name!r}: its parameters cannot be checked at insert the way "
                "the handler checks them: " + "; ".join(problems)
            )
        self._types[job_type.name] = job_type
        return job_type

    def job(
        self,
        name: str | None = None,
        *,
        params: type[BaseModel] | None = None,
        tier: str = "cpu",
        timeout_seconds: int = 300,
        max_attempts: int = 3,
        backoff_base_seconds: float = 2.0,
        backoff_max_seconds: float = 300.0,
        max_unfinished_per_user: int | None = None,
        max_running_per_user: int | None = None,
    ) -> Callable[[F], F]:
        def register(handler: F) -> F:
            self.add(
                JobType(
                    name=name or handler.__name__,
                    handler=handler,
                    params=params or _params_model(handler),
                    tier=tier,
                    timeout_seconds=timeout_seconds,
                    max_attempts=max_attempts,
                    backoff_base_seconds=backoff_base_seconds,
                    backoff_max_seconds=backoff_max_seconds,
                    max_unfinished_per_user=max_unfinished_per_user,
                    max_running_per_user=max_running_per_user,
                    description=inspect.getdoc(handler),
                )
            )
            return handler

        return register

    def sync(self, conn: psycopg.Connection[Any]) -> list[str]:
        """Write the registered types to jobhook.job_types as served by this deployment, and
        disable the types no live deployment serves any more; return the names disabled.

        Types another live deployment still renews stay enabled: while a deploy rolls, the old
        version's types are not taken away from it."""
        serve = {"serve_seconds": SERVE_SECONDS}
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(queries()["sync_job_type"], [t.row() | serve for t in self])
            return self._renew(cursor)

    def _renew(self, cursor: psycopg.Cursor[Any]) -> list[str]:
        cursor.execute(
            queries()["renew_job_types"],
            {"names": [t.name for t in self], "serve_seconds": SERVE_SECONDS},
        )
        return [str(row[0]) for row in cursor.fetchall()]


def _params_model(handler: Callable[..., Any]) -> type[BaseModel]:
    hints = get_type_hints(handler)
    first = next(iter(inspect.signature(handler).parameters), None)
    model = hints.get(first) if first else None
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        raise RegistryError(
            f"handler {handler.__name__!r}: annotate its first argument with a pydantic model, "
            "or pass params= to @job"
        )
    return model


registry = Registry()
job = registry.job
