"""The Modal deployment: the web app and one runner function per resource tier.

    jobhook secrets --env prod --run      # the Modal secret, from deploy/prod.env
    jobhook deploy --env prod             # uv run modal deploy modal_app.py, as jobhook-prod

The environment (JOBHOOK_ENV, set by `jobhook deploy`) names its settings file,
deploy/<env>.env: the app and secret names, the GPU type and the containers come from there
(jobhook.deployment), never from the deployer's shell. Without JOBHOOK_ENV the defaults stand:
app `jobhook`, secret `jobhook`, GPU T4.

SUPABASE_URL alone verifies tokens from the project's new signing keys (its JWKS); a project that
still signs with the legacy HS256 secret needs SUPABASE_JWT_SECRET=<that secret> as well. There is
no default: with neither, user requests are refused with 503 (docs/deploy.md).

This module only wires entry points to the runtime. It imports without Modal credentials (the
tests import it and call the functions with `.local()`).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import modal
from fastapi import FastAPI

import handlers
from jobhook.deployment import DEPLOY_KEYS, Deployment
from jobhook.registry import registry

handlers.load_all()

ENV = os.environ.get("JOBHOOK_ENV") or None
# Deploying (local): the environment's file. In a container the file is not there; the image
# carries the values it was deployed with (below), so the container defines the same app.
DEPLOYMENT = (
    Deployment.read(ENV)
    if modal.is_local()
    else Deployment(ENV, {key: os.environ[key] for key in DEPLOY_KEYS if os.environ.get(key)})
)
APP_NAME = DEPLOYMENT.app_name
GPU = DEPLOYMENT.gpu
# Job timeouts are enforced by the runner; the function's own timeout only has to outlast the
# longest job of its tier, plus the time to claim and write back.
MARGIN_SECONDS = 60

app = modal.App(APP_NAME)


# What stays on the developer's machine: the dev stack and the CLI are jobhook's subpackages,
# but nothing deployed imports them (tests/test_layout.py holds the runtime to that).
LOCAL_ONLY = (("jobhook", "devstack"), ("jobhook", "cli"))


def not_shipped(path: Path) -> bool:
    parts = path.parts
    pairs = set(itertools.pairwise(parts))
    return "__pycache__" in parts or any(pair in pairs for pair in LOCAL_ONLY)


image = (
    modal.Image.debian_slim(python_version="3.11")
    # Production dependencies only: the dev stack's and the CLI's are the dev group's.
    .uv_sync(frozen=True, extra_options="--no-dev")
    # What the container needs to define the same functions as the deployer did.
    .env(
        {"JOBHOOK_ENV": ENV or ""}
        | {k: v for k, v in DEPLOYMENT.values.items() if k in DEPLOY_KEYS}
    )
    # The packages carry SQL files (named queries) beside the Python modules.
    .add_local_python_source("jobhook", "functions", "handlers", ignore=not_shipped)
)
secrets = [modal.Secret.from_name(DEPLOYMENT.secret_name, required_keys=["DATABASE_URL"])]


def tier_timeout(tier: str) -> int:
    timeouts = [t.timeout_seconds for t in registry if t.tier == tier]
    return min(max(timeouts, default=300) + MARGIN_SECONDS, 24 * 3600)


async def _run(job_ids: list[str], tier: str) -> list[str]:
    from jobhook.config import Settings
    from jobhook.worker import run_jobs

    return [outcome.value for outcome in await run_jobs(job_ids, registry, Settings(), tier)]


# max_containers bounds each function's share of the pooler's connections (docs/deploy.md, "The
# connection budget"): every container opens up to JOBHOOK_DB_POOL_SIZE of them. Per
# environment: JOBHOOK_RUNNER_CONTAINERS and JOBHOOK_API_CONTAINERS in deploy/<env>.env.
RUNNER_CONTAINERS = DEPLOYMENT.runner_containers
API_CONTAINERS = DEPLOYMENT.api_containers


@app.function(
    image=image, secrets=secrets, timeout=tier_timeout("cpu"), max_containers=RUNNER_CONTAINERS
)
@modal.concurrent(max_inputs=20)
async def run_cpu(job_ids: list[str]) -> list[str]:
    return await _run(job_ids, "cpu")


@app.function(
    image=image,
    secrets=secrets,
    gpu=GPU,
    timeout=tier_timeout("gpu"),
    max_containers=RUNNER_CONTAINERS,
)
async def run_gpu(job_ids: list[str]) -> list[str]:
    return await _run(job_ids, "gpu")


@app.function(
    image=image,
    secrets=secrets,
    memory=4096,
    timeout=tier_timeout("browser"),
    max_containers=RUNNER_CONTAINERS,
)
@modal.concurrent(max_inputs=4)
async def run_browser(job_ids: list[str]) -> list[str]:
    return await _run(job_ids, "browser")


@app.function(
    image=image, secrets=secrets, timeout=tier_timeout("llm"), max_containers=RUNNER_CONTAINERS
)
@modal.concurrent(max_inputs=100)
async def run_llm(job_ids: list[str]) -> list[str]:
    return await _run(job_ids, "llm")


RUNNERS: dict[str, Any] = {"cpu": run_cpu, "gpu": run_gpu, "browser": run_browser, "llm": run_llm}


# min_containers=1: a cold start can take longer than the webhook's timeout, and this container
# also rings for delayed jobs and retries every second.
@app.function(image=image, secrets=secrets, min_containers=1, max_containers=API_CONTAINERS)
@modal.concurrent(max_inputs=100)
# The label is the URL: https://<workspace>--<app>-api.modal.run (jobhook-api by default).
@modal.asgi_app(label=f"{APP_NAME}-api")
def api() -> FastAPI:
    from functions.app import create_app
    from jobhook.executor import ModalExecutor

    return create_app(executor_factory=lambda runtime: ModalExecutor(RUNNERS, runtime.registry))
