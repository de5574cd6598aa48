"""Dependency aliases, so routes read like sentences (`runtime: RuntimeDep`).

Every dependency is `async def`: FastAPI runs a plain `def` dependency in a thread pool, which
cost the webhook a third of a millisecond per request for a dictionary lookup.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from jobhook.executor import Executor
from jobhook.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_executor(request: Request) -> Executor:
    executor = (await get_runtime(request)).executor
    assert executor is not None, "the executor is created when the app starts"
    return executor


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ExecutorDep = Annotated[Executor, Depends(get_executor)]
