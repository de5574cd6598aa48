"""The dashboard in a real browser: headless Chromium (Debian's, installed by scripts/bootstrap)
driven by Selenium against the app, the delivery worker and the session's database.

One stack and one browser serve the whole module; the app runs in a thread with its own event
loop, so the browser's blocking calls never stall it. Each view is saved as a screenshot under
.artifacts/dashboard/ (git-ignored). Every wait is on a condition the page shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from pydantic import BaseModel
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from jobhook import JobContext, PermanentJobError, vault
from jobhook.config import Settings
from jobhook.devstack.cluster import free_port
from jobhook.devstack.stack import Served, serve
from jobhook.registry import Registry
from tests import handlers_for_tests
from tests.conftest import LOCAL_STACK, TEST_JOB_TYPES, Stack, insert_job

pytestmark = [pytest.mark.e2e, pytest.mark.commits]

API_KEY = "b" * 40
ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 20.0

registry = Registry()
for known in handlers_for_tests.registry:
    registry.add(known)


class Nothing(BaseModel):
    pass


@registry.job(max_attempts=1)
async def fails_first(params: Nothing, ctx: JobContext) -> dict[str, int]:
    """Fail for good on the first attempt; complete on any later one (after a retry)."""
    if ctx.attempt == 1:
        raise PermanentJobError("the first attempt always fails: retry me")
    return {"attempt": ctx.attempt}


@registry.job(timeout_seconds=60, max_attempts=1)
async def held(params: Nothing, ctx: JobContext) -> None:
    """Run, reporting progress, until cancelled (or a minute has passed)."""
    for step in range(600):
        await ctx.progress(min(99, step), "holding on")
        await asyncio.sleep(0.1)


class BackgroundStack:
    """The app and the delivery worker, served from a thread of their own."""

    def __init__(self, settings: Settings, port: int, delivery_url: str) -> None:
        from functions.app import create_app

        self.app = create_app(settings, job_registry=registry, configure_logging=False)
        self.settings = settings
        self.port = port
        self.delivery_url = delivery_url
        self.served: Served | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the test thread
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self.settings, delivery_url=self.delivery_url, port=self.port, app=self.app
        ) as served:
            self.served = served
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> BackgroundStack:
        self._thread.start()
        self._ready.wait(90)
        if self._error is not None or self.served is None:
            raise RuntimeError(f"the app did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)


@pytest.fixture(scope="module")
def stack(test_db: Stack) -> Iterator[BackgroundStack]:
    handlers_for_tests.database_url = test_db.url
    port = free_port()
    with psycopg.connect(test_db.url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_URL, f"http://127.0.0.1:{port}/webhooks/jobs")
    settings = Settings(
        DATABASE_URL=test_db.url,
        JOBHOOK_API_KEY=API_KEY,
        **{**LOCAL_STACK, "JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS": "false"},  # type: ignore[arg-type]
    )
    try:
        with BackgroundStack(settings, port, test_db.admin_url) as running:
            yield running
    finally:
        with psycopg.connect(test_db.url, autocommit=True) as conn:
            conn.execute(
                "truncate public.jobs, net.http_request_queue, net._http_response,"
                " jobhook.operator_actions"
            )
            conn.execute("delete from jobhook.job_types")
            with conn.cursor() as cursor:
                cursor.executemany(
                    "insert into jobhook.job_types (name, max_attempts, timeout_seconds,"
                    " backoff_base_seconds) values (%s, %s, %s, %s)",
                    TEST_JOB_TYPES,
                )
            vault.write(conn, vault.WEBHOOK_URL, test_db.webhook_url)


@pytest.fixture(scope="module")
def browser(stack: BackgroundStack) -> Iterator[WebDriver]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("Chromium and its driver are missing: run ./scripts/bootstrap")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # as root in CI containers
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def url(stack: BackgroundStack, path: str) -> str:
    return f"http://127.0.0.1:{stack.port}{path}"


def wait_until(browser: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    def check(driver: WebDriver) -> Any:
        # A live fragment may be replaced between finding an element and reading it.
        with contextlib.suppress(StaleElementReferenceException):
            return condition(driver)
        return False

    try:
        return WebDriverWait(browser, WAIT, poll_frequency=0.1).until(check)
    except WebDriverException as exc:
        shot(browser, "failed-wait")
        raise AssertionError(f"the page never showed {what}; at {browser.current_url}") from exc


def text_of(browser: WebDriver, css: str) -> str:
    found = browser.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def shot(browser: WebDriver, name: str) -> None:
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def sign_in(browser: WebDriver, stack: BackgroundStack, credential: str = API_KEY) -> None:
    browser.get(url(stack, "/dashboard/login"))
    browser.find_element(By.ID, "credential").send_keys(credential)
    browser.find_element(By.ID, "sign-in").click()


def row_status(browser: WebDriver, job_id: UUID) -> str | None:
    rows = browser.find_elements(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')
    return rows[0].get_attribute("data-status") if rows else None


def test_wrong_credentials_are_refused(browser: WebDriver, stack: BackgroundStack) -> None:
    browser.delete_all_cookies()
    browser.get(url(stack, "/dashboard"))
    assert browser.current_url.endswith("/dashboard/login")
    sign_in(browser, stack, "not-the-key-" + "x" * 30)
    error = wait_until(browser, lambda d: text_of(d, "#login-error"), "the refusal")
    assert "neither the service API key nor a JWT" in error
    assert browser.get_cookie("jobhook_session") is None
    shot(browser, "sign-in-refused")


def test_jobs_appear_and_finish_without_a_reload(
    browser: WebDriver, stack: BackgroundStack, test_db: Stack
) -> None:
    sign_in(browser, stack)
    wait_until(browser, lambda d: d.find_elements(By.ID, "running"), "the overview")
    cookie = browser.get_cookie("jobhook_session")
    assert cookie is not None
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    browser.get(url(stack, "/dashboard/jobs"))
    # Set on this page's window: still there later means the page was never reloaded.
    browser.execute_script("window.notReloaded = true")
    ids = [
        insert_job(test_db.url, "sample_task", {"steps": 3, "step_seconds": 0.3}) for _ in range(3)
    ]
    wait_until(browser, lambda d: all(row_status(d, i) for i in ids), "the new jobs in the list")
    wait_until(
        browser,
        lambda d: all(row_status(d, i) == "completed" for i in ids),
        "the jobs completed",
    )
    assert browser.execute_script("return window.notReloaded") is True
    shot(browser, "jobs")
    browser.get(url(stack, "/dashboard"))
    wait_until(
        browser,
        lambda d: int(text_of(d, '[data-count="sample_task:completed"]') or 0) >= 3,
        "three completed sample_task jobs in the overview",
    )
    shot(browser, "overview")


def test_a_failed_job_shows_its_errors_and_completes_once_retried(
    browser: WebDriver, stack: BackgroundStack, test_db: Stack
) -> None:
    job_id = insert_job(test_db.url, "fails_first")
    browser.get(url(stack, f"/dashboard/jobs/{job_id}"))
    wait_until(browser, lambda d: text_of(d, "#job-status") == "failed", "the job failed")
    assert "the first attempt always fails: retry me" in text_of(browser, "#errors")
    assert "attempt 1" in text_of(browser, "#errors")
    shot(browser, "job-failed")
    browser.find_element(By.ID, "retry").click()
    wait_until(browser, lambda d: text_of(d, "#job-status") == "completed", "the job completed")
    assert text_of(browser, "#job-attempt") == "2"
    assert '"attempt": 2' in text_of(browser, "#result")
    assert "service key" in text_of(browser, "#operator-actions")
    shot(browser, "job-retried")


def test_a_running_job_is_cancelled(
    browser: WebDriver, stack: BackgroundStack, test_db: Stack
) -> None:
    job_id = insert_job(test_db.url, "held")
    browser.get(url(stack, f"/dashboard/jobs/{job_id}"))
    wait_until(browser, lambda d: text_of(d, "#job-status") == "processing", "the job running")
    wait_until(browser, lambda d: d.find_elements(By.ID, "cancel"), "the cancel button")
    browser.find_element(By.ID, "cancel").click()
    wait_until(browser, lambda d: text_of(d, "#job-status") == "cancelled", "the job cancelled")
    shot(browser, "job-cancelled")


def test_bulk_retry_by_filter_says_how_many_first(
    browser: WebDriver, stack: BackgroundStack, test_db: Stack
) -> None:
    ids = [insert_job(test_db.url, "fails_first") for _ in range(3)]
    browser.get(url(stack, "/dashboard/jobs?status=failed&job_type=fails_first"))
    wait_until(
        browser, lambda d: all(row_status(d, i) == "failed" for i in ids), "three failed jobs"
    )
    browser.find_element(By.ID, "bulk-retry").click()
    count = wait_until(browser, lambda d: text_of(d, "#confirm-count"), "the confirmation")
    assert count.startswith("This will retry 3 job(s)"), count
    shot(browser, "bulk-confirm")
    browser.find_element(By.ID, "confirm").click()
    notice = wait_until(browser, lambda d: text_of(d, "#notice"), "the outcome")
    assert notice == "retry: 3 of 3 job(s)"
    browser.get(url(stack, "/dashboard/jobs?job_type=fails_first&status=completed"))
    wait_until(
        browser,
        lambda d: all(row_status(d, i) == "completed" for i in ids),
        "the three jobs completed",
    )


def test_a_forged_csrf_token_is_refused(
    browser: WebDriver, stack: BackgroundStack, test_db: Stack
) -> None:
    job_id = insert_job(test_db.url, "fails_first")
    browser.get(url(stack, f"/dashboard/jobs/{job_id}"))
    wait_until(browser, lambda d: d.find_elements(By.ID, "retry"), "the retry button")
    browser.execute_script(
        "document.querySelector('#retry').form.querySelector('[name=csrf]').value = 'forged'"
    )
    browser.find_element(By.ID, "retry").click()
    assert "did not come from this dashboard" in wait_until(
        browser, lambda d: text_of(d, "#forged"), "the refusal"
    )
    shot(browser, "csrf-refused")
    with psycopg.connect(test_db.url) as conn:
        [(status,)] = conn.execute(
            "select status::text from public.jobs where id = %s", (job_id,)
        ).fetchall()
    assert status == "failed"


def test_the_health_panel_reports_injected_faults(
    browser: WebDriver, stack: BackgroundStack, test_db: Stack
) -> None:
    down = f"http://127.0.0.1:{free_port()}/webhooks/jobs"
    with psycopg.connect(test_db.url, autocommit=True) as conn:
        conn.execute("insert into jobhook.job_types (name) values ('no_handler_here')")
        vault.write(conn, vault.WEBHOOK_URL, down)
    try:
        for _ in range(3):
            insert_job(test_db.url, "sample_task")
        browser.get(url(stack, "/dashboard/health"))

        def severity(check: str) -> str | None:
            rows = browser.find_elements(By.CSS_SELECTOR, f'tr[data-check="{check}"]')
            return rows[0].get_attribute("data-severity") if rows else None

        wait_until(browser, lambda d: severity("pg_net") == "fault", "pg_net's failures")
        assert severity("job_types") == "fault"
        checks = text_of(browser, "#checks")
        assert "no_handler_here" in checks
        assert "doorbell(s) failed" in checks
        assert browser.find_elements(By.CSS_SELECTOR, "#failed-replies td + td")
        shot(browser, "health")
    finally:
        with psycopg.connect(test_db.url, autocommit=True) as conn:
            conn.execute("delete from jobhook.job_types where name = 'no_handler_here'")
            vault.write(conn, vault.WEBHOOK_URL, url(stack, "/webhooks/jobs"))
