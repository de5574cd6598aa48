"""One error family per audience: every exception jobhook defines belongs to exactly one.

Handler authors raise `JobError`, API clients are answered with a `ClientError`, operators fix
what a `SetupError` names. The one exception outside them is `JobCancelled`, a signal that
travels through handler code the way asyncio's CancelledError does, not an error with a message.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import functions
import jobhook
from jobhook.context import JobCancelled
from jobhook.jobs import ClientError, JobError, SetupError

FAMILIES = (JobError, ClientError, SetupError)
SIGNALS = (JobCancelled,)


def defined_exceptions() -> list[type[BaseException]]:
    found = []
    for package in (jobhook, functions):
        for module_info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module_info.name.endswith(".__main__"):
                continue  # runs the CLI
            module = importlib.import_module(module_info.name)
            for name, value in vars(module).items():
                if (
                    inspect.isclass(value)
                    and issubclass(value, BaseException)
                    and value.__module__ == module.__name__
                    and not name.startswith("_")
                ):
                    found.append(value)
    return found


def test_every_exception_belongs_to_one_family() -> None:
    exceptions = defined_exceptions()
    assert len(exceptions) >= 10, exceptions  # the walk found the modules
    outside = [
        e
        for e in exceptions
        if e not in FAMILIES + SIGNALS and sum(issubclass(e, f) for f in FAMILIES) != 1
    ]
    assert outside == [], f"in no family, or in two: {outside}"


def test_the_families_do_not_overlap() -> None:
    for family in FAMILIES:
        assert [f for f in FAMILIES if f is not family and issubclass(family, f)] == []
