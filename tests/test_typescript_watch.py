"""The helper's `watch`, run by node through the real supabase-js, follows real jobs (the app,
pg_net's delivery worker, the runner, the database) to their final status, also when Realtime
delivers nothing.

Supabase's API gateway cannot run here, so the test serves the two parts of it supabase-js
talks to on a loopback port, over the real database: PostgREST's requests for public.jobs (the
caller's JWT verified, then `set role authenticated` and `request.jwt.claims`, as PostgREST
does, so RLS and the column grants decide) and Realtime's websocket (Phoenix protocol 2.0.0,
the `postgres_changes` join and messages), fed by a trigger's NOTIFY of each row change and
sending each to the row's owner only, as Realtime's RLS check does. The test decides which
messages it drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from aiohttp import WSMsgType, web
from psycopg import sql

from jobhook.config import LOCAL_JWT_SECRET
from jobhook.devstack.cluster import free_port
from jobhook.devstack.stack import Served
from tests.conftest import DEMO_USER, Stack, user_token

pytestmark = pytest.mark.commits

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "typescript"
TSC = CLIENT / "node_modules" / ".bin" / "tsc"
DRIVER = Path(__file__).resolve().parent / "typescript" / "watch_driver.ts"
CHANNEL = "jobhook_test_changes"
TIMESTAMPS = ("run_at", "created_at", "updated_at", "started_at", "finished_at")

NOTIFY_CHANGES = f"""
create function public.test_notify_job_change() returns trigger
language plpgsql set search_path = '' as $$
begin
  perform pg_catalog.pg_notify('{CHANNEL}', pg_catalog.jsonb_build_object(
    'type', tg_op, 'record', pg_catalog.to_jsonb(new))::text);
  return null;
end $$;
create trigger test_notify_job_change after insert or update on public.jobs
  for each row execute function public.test_notify_job_change();
"""
DROP_NOTIFY = """
drop trigger if exists test_notify_job_change on public.jobs;
drop function if exists public.test_notify_job_change();
"""


@dataclass
class Subscription:
    socket: web.WebSocketResponse
    topic: str
    join_ref: str
    user_id: str | None  # None: the anon key's subscription, which sees no one's rows
    bindings: list[dict[str, Any]]


@dataclass
class Supabase:
    """PostgREST's and Realtime's side of supabase-js, on loopback, over the test database."""

    database_url: str
    deliver: bool = True  # False: Realtime drops every message
    log: list[tuple[str, float]] = field(default_factory=list)  # (what, when)
    sent: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    _binding_ids: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**6)))

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_route("*", "/rest/v1/jobs", self.rest)
        app.router.add_get("/realtime/v1/websocket", self.realtime)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        listener = asyncio.create_task(self._listen())
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await runner.cleanup()

    # -- PostgREST ------------------------------------------------------------------------

    async def rest(self, request: web.Request) -> web.Response:
        try:
            claims = _verify(request.headers.get("Authorization", "").removeprefix("Bearer "))
        except jwt.InvalidTokenError:
            return _pgrst_error(401, "PGRST301", "JWT is invalid")
        self.log.append((request.method, time.monotonic()))
        job_id = request.query.get("id", "").removeprefix("eq.") or None
        body = await request.json() if request.can_read_body else None
        try:
            rows = await self._as_user(claims, request.method, job_id, body)
        except psycopg.Error as exc:
            status = {"42501": 403, "23505": 409}.get(exc.sqlstate or "", 400)
            return _pgrst_error(
                status,
                exc.sqlstate or "",
                exc.diag.message_primary or str(exc),
                exc.diag.message_detail,
                exc.diag.message_hint,
            )
        status = 201 if request.method == "POST" else 200
        if "vnd.pgrst.object+json" in request.headers.get("Accept", ""):
            if len(rows) != 1:
                return _pgrst_error(
                    406, "PGRST116", "Cannot coerce the result to a single JSON object"
                )
            return web.json_response(rows[0], status=status)
        return web.json_response(rows, status=status)

    async def _as_user(
        self, claims: dict[str, Any], method: str, job_id: str | None, body: Any
    ) -> list[Any]:
        async with await psycopg.AsyncConnection.connect(self.database_url) as conn:
            await conn.execute(
                "select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),)
            )
            await conn.execute("set local role authenticated")
            if method == "POST":
                rows = body if isinstance(body, list) else [body]
                columns = sql.SQL(", ").join(map(sql.Identifier, sorted(set().union(*rows))))
                query = sql.SQL(
                    "insert into public.jobs as j ({columns}) select {columns}"
                    " from jsonb_populate_recordset(null::public.jobs, %s::jsonb)"
                    " returning to_jsonb(j)"
                ).format(columns=columns)
                found = await (await conn.execute(query, (json.dumps(rows),))).fetchall()
            elif method == "GET":
                found = await (
                    await conn.execute(
                        "select to_jsonb(j) from public.jobs j where j.id = %s", (job_id,)
                    )
                ).fetchall()
            elif method == "PATCH":
                assignments = sql.SQL(", ").join(
                    sql.SQL("{0} = r.{0}").format(sql.Identifier(name)) for name in body
                )
                query = sql.SQL(
                    "update public.jobs j set {assignments}"
                    " from jsonb_populate_record(null::public.jobs, %s::jsonb) r"
                    " where j.id = %s returning to_jsonb(j)"
                ).format(assignments=assignments)
                found = await (await conn.execute(query, (json.dumps(body), job_id))).fetchall()
            else:
                raise AssertionError(f"supabase-js sent {method}")
            await conn.commit()
        return [row[0] for row in found]

    # -- Realtime -------------------------------------------------------------------------

    async def realtime(self, request: web.Request) -> web.StreamResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        async for message in socket:
            if message.type != WSMsgType.TEXT:
                continue
            join_ref, ref, topic, event, payload = json.loads(message.data)
            reply: dict[str, Any] = {}
            if event == "phx_join":
                # Realtime takes the user's token from the join, else the socket's apikey.
                token = payload.get("access_token") or request.query.get("apikey", "")
                try:
                    claims = _verify(token)
                except jwt.InvalidTokenError as exc:
                    refused = {"status": "error", "response": {"reason": str(exc)}}
                    await socket.send_str(json.dumps([join_ref, ref, topic, "phx_reply", refused]))
                    continue
                bindings = [
                    {**wanted, "id": next(self._binding_ids)}
                    for wanted in payload["config"]["postgres_changes"]
                ]
                self.subscriptions.append(
                    Subscription(socket, topic, join_ref, claims.get("sub"), bindings)
                )
                self.log.append(("join", time.monotonic()))
                reply = {"postgres_changes": bindings}
            elif event == "access_token":
                # supabase-js joins with the anon key first when the user's token comes from
                # an async callback, then sends the token: Realtime switches to it.
                user = _verify(payload["access_token"]).get("sub")
                for sub in self.subscriptions:
                    if sub.socket is socket and sub.topic == topic:
                        sub.user_id = user
                continue
            elif event == "phx_leave":
                self.subscriptions = [s for s in self.subscriptions if s.topic != topic]
            await socket.send_str(
                json.dumps([join_ref, ref, topic, "phx_reply", {"status": "ok", "response": reply}])
            )
        self.subscriptions = [s for s in self.subscriptions if s.socket is not socket]
        return socket

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            await conn.execute(f"listen {CHANNEL}")
            async for notice in conn.notifies():
                change = json.loads(notice.payload)
                await self._publish(change["type"], change["record"])

    async def _publish(self, kind: str, record: dict[str, Any]) -> None:
        # Realtime's records carry PostgreSQL's text for timestamps ("2026-12-03 08:55:06+00").
        text = {
            key: value.replace("T", " ").replace("+00:00", "+00")
            if key in TIMESTAMPS and isinstance(value, str)
            else value
            for key, value in record.items()
        }
        columns = [
            {"name": key, "type": "timestamptz" if key in TIMESTAMPS else "jsonb"} for key in text
        ]
        for sub in list(self.subscriptions):
            if sub.user_id != record["user_id"]:
                continue  # row-level security: owners only
            ids = [
                b["id"]
                for b in sub.bindings
                if b["event"] in ("*", kind) and _matches(b.get("filter"), record)
            ]
            if not ids or not self.deliver:
                continue
            data = {
                "schema": "public",
                "table": "jobs",
                "commit_timestamp": text["updated_at"],
                "type": kind,
                "columns": columns,
                "record": text,
                "old_record": {"id": record["id"]},
                "errors": None,
            }
            message = [
                sub.join_ref,
                None,
                sub.topic,
                "postgres_changes",
                {"ids": ids, "data": data},
            ]
            await sub.socket.send_str(json.dumps(message))
            self.sent.append(record)


def _verify(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token, LOCAL_JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False}
    )
    return claims


def _matches(wanted: str | None, record: dict[str, Any]) -> bool:
    if not wanted:
        return True
    column, _, value = wanted.partition("=eq.")
    return str(record.get(column)) == value


def _pgrst_error(
    status: int, code: str, message: str, details: str | None = None, hint: str | None = None
) -> web.Response:
    body = {"code": code, "message": message, "details": details, "hint": hint}
    return web.json_response(body, status=status)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The helper and the driver compiled to JavaScript beside clients/typescript's
    node_modules, so node resolves @supabase/supabase-js as an application would."""
    if not TSC.exists():
        pytest.fail("the TypeScript toolchain is missing: run ./scripts/bootstrap (npm ci)")
    build = CLIENT / f".watch-test-{uuid.uuid4().hex[:8]}"
    build.mkdir()
    try:
        shutil.copy(CLIENT / "src" / "jobs.ts", build / "jobs.ts")
        shutil.copy(DRIVER, build / "watch_driver.ts")
        config = {
            "extends": "../tsconfig.json",
            "compilerOptions": {"rootDir": ".", "outDir": "js", "skipLibCheck": True},
            "include": ["*.ts"],
        }
        (build / "tsconfig.json").write_text(json.dumps(config))
        built = subprocess.run(  # noqa: S603 - the toolchain bootstrap installed
            [str(TSC), "-p", str(build)], capture_output=True, text=True, timeout=120, check=False
        )
        assert built.returncode == 0, built.stdout + built.stderr
        yield build / "js" / "watch_driver.js"
    finally:
        shutil.rmtree(build)


@pytest.fixture
def notified_changes(committed: Stack) -> Iterator[None]:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(DROP_NOTIFY + NOTIFY_CHANGES)
    try:
        yield
    finally:
        with psycopg.connect(committed.url, autocommit=True) as conn:
            conn.execute(DROP_NOTIFY)


async def run_watch(
    driver: Path, url: str, job: dict[str, Any], poll_ms: int, supabase: Supabase | None = None
) -> list[Any]:
    node = await asyncio.create_subprocess_exec(
        "node",
        "--experimental-websocket",  # Node 20's WebSocket, which Node 22 has by default
        "--no-warnings",
        str(driver),
        url,
        ANON_KEY,
        user_token(DEMO_USER),
        json.dumps(job),
        str(poll_ms),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(node.communicate(), 30)
    except TimeoutError:
        node.kill()
        stdout, stderr = await node.communicate()
        seen = supabase.log if supabase else None
        pytest.fail(f"watch did not finish in 30 s: {stdout.decode()} {stderr.decode()} {seen}")
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    assert node.returncode == 0, (lines, stderr.decode())
    return lines


# The anon key as the supabase CLI's local project issues it: a JWT with role anon, no user.
ANON_KEY = jwt.encode(
    {"iss": "supabase-demo", "role": "anon", "exp": int(time.time()) + 86400},
    LOCAL_JWT_SECRET,
    algorithm="HS256",
)
SHORT_JOB = {"job_type": "sample_task", "payload": {"steps": 2, "step_seconds": 0.2, "result": 7}}


def completed(lines: list[Any]) -> dict[str, Any]:
    done: dict[str, Any] = lines[-1]["done"]
    assert (done["status"], done["progress"], done["result"]) == (
        "completed",
        100,
        {"steps": 2, "attempt": 1, "result": 7},
    )
    assert done["payload"] == SHORT_JOB["payload"]
    return done


async def test_watch_subscribes_then_inserts_and_follows_realtimes_messages(
    committed: Stack, app_stack: Served, notified_changes: None, driver: Path
) -> None:
    supabase = Supabase(committed.url)
    async with supabase.serving() as url:
        # Reads every minute only: what gets the job to its end here is Realtime's messages.
        lines = await run_watch(driver, url, SHORT_JOB, poll_ms=60_000)
    done = completed(lines)
    steps = [what for what, _ in supabase.log]
    assert steps[:2] == ["join", "POST"], steps  # subscribed before inserting
    assert "GET" not in steps
    assert [line["change"] for line in lines[:-1]][-1] == "completed"
    assert "processing" in [line["change"] for line in lines[:-1]]
    assert {record["id"] for record in supabase.sent} == {done["id"]}


async def test_watch_reaches_the_end_when_realtime_delivers_nothing(
    committed: Stack, app_stack: Served, notified_changes: None, driver: Path
) -> None:
    supabase = Supabase(committed.url, deliver=False)
    async with supabase.serving() as url:
        lines = await run_watch(driver, url, SHORT_JOB, poll_ms=300)
    completed(lines)
    assert supabase.sent == []
    assert "GET" in [what for what, _ in supabase.log]


def readme_snippet() -> str:
    """The README's first supabase-js example: subscribe, insert, follow."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From the browser (supabase-js)") :]
    return section.split("```js\n", 1)[1].split("```", 1)[0]


async def test_the_readmes_snippet_runs_and_sees_its_job_complete(
    committed: Stack, app_stack: Served, notified_changes: None, driver: Path
) -> None:
    script = driver.parent / "readme_snippet.mjs"
    script.write_text(
        "import { createClient } from '@supabase/supabase-js'\n"
        "const [url, anonKey, token] = process.argv.slice(2)\n"
        "const supabase = createClient(url, anonKey, { accessToken: async () => token })\n"
        # A signed-in app's client has handed Realtime the user's token long before it
        # subscribes; a client made a moment ago has not yet (see watch in jobs.ts).
        "await supabase.realtime.setAuth()\n"
        "const log = console.log\n"
        "console.log = (...values) => {\n"
        "  log(JSON.stringify(values))\n"
        "  if (values[0] === 'completed') process.exit(0)\n"
        "}\n" + readme_snippet()
    )
    supabase = Supabase(committed.url)
    async with supabase.serving() as url:
        node = await asyncio.create_subprocess_exec(
            "node",
            "--experimental-websocket",
            "--no-warnings",
            str(script),
            url,
            ANON_KEY,
            user_token(DEMO_USER),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(node.communicate(), 30)
        finally:
            if node.returncode is None:
                node.kill()
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert node.returncode == 0, (lines, stderr.decode())
    assert lines[-1][:2] == ["completed", 100], lines
    assert lines[-1][3] == {"steps": 5, "attempt": 1, "result": None}
    steps = [what for what, _ in supabase.log]
    assert steps[:2] == ["join", "POST"], steps
