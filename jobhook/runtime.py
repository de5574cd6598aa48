"""What the app holds for its lifetime: the pool, the verifier, the runner and the executor.

Start-up never fails on an unreachable database: the app comes up, reports why in /ready, and
keeps trying in the background. (On Modal, a web container whose start-up raised would be
restarted in a loop, and no health check could say why.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from psycopg_pool import AsyncConnectionPool

from jobhook import alerts, vault
from jobhook.config import Settings
from jobhook.doorbell import Verifier
from jobhook.executor import Executor, LocalExecutor
from jobhook.jobs import SetupError
from jobhook.linger import Linger
from jobhook.registry import SERVE_SECONDS, Registry
from jobhook.runner import Runner, new_worker_id
from jobhook.store import Store, new_pool

log = structlog.get_logger("jobhook.app")

# How often due jobs (delayed, retries after backoff) are looked for; pg_cron's sweep is the
# once-a-minute safety net behind this.
TICK_SECONDS = 1.0
# How often a doorbell that fails to verify may make the app re-read the secret in Vault.
ROTATION_CHECK_SECONDS = 1.0
# How often a live app renews its job types, well inside the time a renewal holds.
RENEW_SECONDS = 60.0
GC_THRESHOLD = 20_000

ExecutorFactory = Callable[["Runtime"], Executor]


@dataclass
class Runtime:
    settings: Settings
    registry: Registry
    store: Store
    runner: Runner
    # The REST API's connections: a burst of requests cannot take the runner's, nor the other
    # way round.
    api_pool: AsyncConnectionPool[Any]
    executor: Executor | None = None
    verifier: Verifier | None = None
    # Why the app is not ready yet (None once it is).
    not_ready: str | None = "starting"
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _schedule_changed: asyncio.Event = field(default_factory=asyncio.Event)
    # The secrets the verifier holds, and when Vault was last asked for a rotated one.
    _verified_with: list[str] = field(default_factory=list)
    _rotation_checked: float = float("-inf")

    @classmethod
    def create(cls, settings: Settings, registry: Registry) -> Runtime:
        runner = new_runner(settings, registry, min_connections=2)
        api_pool = new_pool(settings.database_url, max_size=settings.api_pool_size)
        runtime = cls(settings, registry, runner.store, runner, api_pool)
        runtime.runner.on_retry = runtime._schedule_changed.set
        return runtime

    async def follow_rotation(self) -> bool:
        """With the secret read from Vault (JOBHOOK_WEBHOOK_SECRETS unset): re-read it, at most
        once per ROTATION_CHECK_SECONDS, and verify with the new one beside the old; True when
        it changed. A doorbell that fails to verify calls this, so a secret rotated in Vault is
        followed at the first doorbell it signs, while forged ones cost at most one read per
        interval."""
        if self.settings.webhook_secrets or self.verifier is None:
            return False
        now = time.monotonic()
        if now - self._rotation_checked < ROTATION_CHECK_SECONDS:
            return False
        self._rotation_checked = now
        secrets = await self.verify_secrets()
        return bool(secrets) and self.adopt(secrets[0])

    @property
    def verified_with(self) -> tuple[str, ...]:
        """The secrets doorbells verify with now (none until the app is ready)."""
        return tuple(self._verified_with)

    def accepts(self, secret: str) -> bool:
        """Whether doorbells signed with `secret` verify here."""
        return secret in self._verified_with

    def adopt(self, secret: str) -> bool:
        """With the secret read from Vault: verify with `secret` too, if it is new (a rotation
        in Vault); True when it was."""
        if self.settings.webhook_secrets or self.verifier is None or self.accepts(secret):
            return False
        # The old secret stays accepted: doorbells it signed may still be on their way.
        self._verified_with = [secret, *self._verified_with][:2]
        self.verifier = Verifier(self._verified_with)
        log.info("the webhook secret was rotated in Vault; verifying with the new one")
        return True

    async def verify_secrets(self) -> list[str]:
        """JOBHOOK_WEBHOOK_SECRETS, or else the signing secret the database uses, from Vault."""
        if self.settings.webhook_secrets:
            return self.settings.webhook_secrets
        secret = (await self.store.readiness()).secret
        return [secret] if secret else []

    async def _warm_up(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.store.ping()
                await asyncio.to_thread(self._sync_catalogue)
                secrets = await self.verify_secrets()
                if not secrets:
                    self.not_ready = (
                        f"no webhook secret: set JOBHOOK_WEBHOOK_SECRETS or the Vault secret "
                        f"{vault.WEBHOOK_SECRET}"
                    )
                else:
                    self.verifier = Verifier(secrets)
                    self._verified_with = secrets
                    self.not_ready = None
                    self._ready.set()
                    log.info("ready", job_types=sorted(t.name for t in self.registry))
                    return
            except (psycopg.Error, OSError) as exc:
                self.not_ready = f"database unreachable: {exc}"
            except SetupError as exc:
                self.not_ready = str(exc)
            log.warning("not ready; retrying", reason=self.not_ready, delay=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    def _sync_catalogue(self) -> None:
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            disabled = self.registry.sync(conn)
            if disabled:
                log.warning("job types no deployment serves were disabled", job_types=disabled)
            minutes = self.settings.job_stuck_timeout_minutes
            if minutes is not None:
                conn.execute("update jobhook.settings set stuck_timeout_minutes = %s", (minutes,))

    async def _tick(self) -> None:
        """Ring for delayed jobs and retries as they fall due: at the latest every TICK_SECONDS,
        sooner when the database says the next one is due sooner."""
        pause = TICK_SECONDS
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation that
            # shuts the ticker down if the event is set at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._schedule_changed.wait()
            self._schedule_changed.clear()
            pause = TICK_SECONDS
            if self.not_ready:
                continue
            try:
                _, next_due_in = await self.store.dispatch_due()
            except psycopg.Error as exc:
                log.warning("dispatch of due jobs failed", error=str(exc))
                continue
            if next_due_in is not None:
                pause = min(TICK_SECONDS, max(0.001, next_due_in.total_seconds()))

    async def _renew_job_types(self) -> None:
        """Say every minute that this deployment still serves its job types, so that a newer
        deployment starting beside it does not disable them (see jobhook.registry)."""
        await self._ready.wait()  # the start-up sync wrote them just now
        names = [job_type.name for job_type in self.registry]
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                disabled = await self.store.renew_job_types(names, SERVE_SECONDS)
            except psycopg.Error as exc:
                log.warning("renewing the job types failed", error=str(exc))
                continue
            if disabled:
                log.warning("job types no deployment serves were disabled", job_types=disabled)

    @contextlib.asynccontextmanager
    async def running(self, executor_factory: ExecutorFactory | None) -> AsyncIterator[Runtime]:
        tune_garbage_collector()
        await self.store.pool.open(wait=False)
        await self.api_pool.open(wait=False)
        self.executor = (executor_factory or local_executor)(self)
        self._tasks = [
            asyncio.create_task(self._warm_up()),
            asyncio.create_task(self._tick()),
            asyncio.create_task(self._renew_job_types()),
        ]
        if self.settings.alert_webhook_url:
            self._tasks.append(asyncio.create_task(alerts.watch(self.store, self.settings)))
        try:
            yield self
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.executor.aclose(self.settings.shutdown_grace_seconds)
            await self.store.pool.close()
            await self.api_pool.close()

    async def wait_ready(self) -> None:
        """Wait until the app can take deliveries (tests and the dev stack use this)."""
        await self._ready.wait()


def new_runner(settings: Settings, registry: Registry, *, min_connections: int) -> Runner:
    """The runner and its store (an unopened pool), wired the same way for the web app and for
    Modal's runner functions (jobhook.worker)."""
    store = Store.open(
        settings.database_url,
        min_size=min_connections,
        max_size=settings.db_pool_size,
        limits=settings.limits,
    )
    return Runner(
        store,
        registry,
        settings.worker_id or new_worker_id(),
        progress_interval=settings.progress_interval_seconds,
        max_result_bytes=settings.max_result_bytes,
    )


def tune_garbage_collector() -> None:
    """Collect less often: with thousands of jobs in flight, the default thresholds run full
    collections over every live task, context and coroutine many times a second (seen in the
    benchmark's profile as time charged to whatever allocated next). Objects made at start-up
    are frozen out of collection altogether."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 50, 100)


def local_executor(runtime: Runtime) -> Executor:
    settings = runtime.settings
    linger = None
    if settings.drain_linger_ms > 0:
        linger = Linger(runtime.runner.store, settings.drain_linger_ms, settings.drain_poll_ms)
    return LocalExecutor(
        runtime.runner,
        max_concurrency=settings.max_concurrency,
        max_per_type=settings.max_concurrency_per_type,
        linger=linger,
    )
