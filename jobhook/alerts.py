"""Alerts to a Slack-compatible webhook, so a dashboard nobody watches still wakes someone.

Every live app looks once per CHECK_SECONDS at what happened since its last look (the
`alert_facts` query): jobs that failed for good, failed sweeps, a burst of pg_net's failed
replies, a due job waiting too long. Each kind is sent at most once per
JOBHOOK_ALERT_EVERY_SECONDS across all containers: jobhook.take_alert_turn hands the turn to one
caller per interval, so two containers seeing the same failure send one message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import structlog

from jobhook.config import Settings
from jobhook.store import Store

log = structlog.get_logger("jobhook.alerts")

CHECK_SECONDS = 30.0
# pg_net's failed replies since the last look that make a burst, not a cold start.
REPLY_BURST = 5


@dataclass(frozen=True)
class Alert:
    kind: str
    text: str


def alerts_in(facts: dict[str, Any], waiting_seconds: float) -> list[Alert]:
    found = []
    if facts["failed_jobs"]:
        sample = "; ".join(
            f"{f['job_type']} {f['id']}: {f['error']}" for f in facts["failed_sample"]
        )
        found.append(
            Alert("failed_jobs", f"{facts['failed_jobs']} job(s) failed for good: {sample}")
        )
    if facts["failed_sweeps"]:
        found.append(
            Alert(
                "sweep",
                f"jobhook.sweep() failed {facts['failed_sweeps']} time(s): {facts['sweep_error']}",
            )
        )
    if facts["failed_replies"] >= REPLY_BURST:
        found.append(
            Alert(
                "pg_net",
                f"{facts['failed_replies']} doorbells failed or timed out (net._http_response): "
                "is the webhook URL in Vault reaching the app?",
            )
        )
    oldest = facts["oldest_due"]
    if oldest is not None and oldest["waiting_seconds"] > waiting_seconds:
        found.append(
            Alert(
                "waiting",
                f"a due {oldest['job_type']} job ({oldest['id']}) has waited "
                f"{oldest['waiting_seconds']:.0f} s to start",
            )
        )
    return found


class Alerter:
    def __init__(self, store: Store, settings: Settings, client: httpx.AsyncClient) -> None:
        assert settings.alert_webhook_url is not None
        self.store = store
        self.url = settings.alert_webhook_url
        self.every = settings.alert_every_seconds
        self.waiting = settings.alert_waiting_seconds
        self.client = client
        # The first look covers one interval back: an app's start does not replay old failures.
        self._since = datetime.now(UTC) - timedelta(seconds=CHECK_SECONDS)

    async def check_once(self) -> list[Alert]:
        """Look, and send what is new and whose turn this process got; return what was sent."""
        [facts] = await self.store.fetch("alert_facts", {"since": self._since})
        self._since = facts["checked_at"]
        sent = []
        for alert in alerts_in(facts, self.waiting):
            [row] = await self.store.fetch(
                "take_alert_turn", {"kind": alert.kind, "every_seconds": self.every}
            )
            if row["turn"] and await self._send(alert):
                sent.append(alert)
        return sent

    async def _send(self, alert: Alert) -> bool:
        try:
            reply = await self.client.post(self.url, json={"text": f"jobhook: {alert.text}"})
        except httpx.HTTPError as exc:
            log.warning("alert not delivered", kind=alert.kind, error=str(exc))
            return False
        if reply.is_error:
            log.warning("alert refused", kind=alert.kind, status=reply.status_code)
            return False
        log.info("alert sent", kind=alert.kind)
        return True

    async def watch(self) -> None:
        while True:
            try:
                await self.check_once()
            except psycopg.Error as exc:
                log.warning("alerts could not look", error=str(exc))
            await asyncio.sleep(CHECK_SECONDS)


async def watch(store: Store, settings: Settings) -> None:
    """Look for alerts until cancelled (the runtime starts it when an alert URL is set)."""
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        await Alerter(store, settings, client).watch()
