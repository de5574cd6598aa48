"""Job types, one module each. Adding a module here is all it takes to add a job type."""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    """Import every handler module, which registers its job types with `jobhook.job`."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
