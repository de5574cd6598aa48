"""Structured logs: one JSON object per line, carrying request_id and job_id where known."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import sys
from collections.abc import Coroutine
from typing import IO, Any, TypeVar

import structlog

T = TypeVar("T")


def detached_task(coro: Coroutine[Any, Any, T], **bound: object) -> asyncio.Task[T]:
    """A task that carries only `bound` in its log context, not the context of its creator.

    A task copies the context it is created in. A long-lived task started while a request is
    handled (the executor's claimer, on the first doorbell) would otherwise stamp that
    request's id on every line it and its children write for the life of the process.
    """
    context = contextvars.Context()
    context.run(structlog.contextvars.bind_contextvars, **bound)
    return asyncio.create_task(coro, context=context)


def configure(level: str = "INFO", *, json: bool = True, stream: IO[str] | None = None) -> None:
    """Route structlog and the standard library (uvicorn, httpx) through one JSON renderer."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json
        # Plain tracebacks: rich's, with every frame's locals, cost milliseconds per failed
        # attempt, which a burst of failing jobs turns into minutes.
        else structlog.dev.ConsoleRenderer(
            colors=stream is None and sys.stderr.isatty(),
            exception_formatter=structlog.dev.plain_traceback,
        )
    )
    structlog.configure(
        # The level check first: a filtered-out event costs a comparison, not the whole chain
        # (the runner logs every attempt; at 10k jobs/s that matters).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # uvicorn's access log duplicates the app's own request log.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
