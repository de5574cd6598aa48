"""One deployment environment (`dev`, `prod`): its settings file, `deploy/<env>.env`.

The file is git-ignored and lives on the deployer's machine. `jobhook deploy --env E` and
`jobhook secrets --env E` read it, and so does `modal_app.py` while Modal imports it to deploy:
the tier settings (GPU type, containers) and the Modal names come from the environment being
deployed, never from whatever the deployer's shell happens to export. The dev stack and the
client verbs never read it. Inside a running container the file is absent and the defaults
stand, which is harmless: Modal fixes a function's GPU and limits when it is deployed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

PROJECT_DIR = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("dev", "prod")
# What shapes the deployment itself: read at deploy time, not put in the app's Modal secret.
DEPLOY_KEYS = frozenset(
    {
        "JOBHOOK_MODAL_APP",
        "JOBHOOK_MODAL_SECRET",
        "JOBHOOK_MODAL_ENVIRONMENT",
        "JOBHOOK_GPU",
        "JOBHOOK_RUNNER_CONTAINERS",
        "JOBHOOK_API_CONTAINERS",
    }
)


def env_file(env: str, project_dir: Path = PROJECT_DIR) -> Path:
    """`deploy/<env>.env`, or `<env>.env` in JOBHOOK_DEPLOY_DIR when that names a folder."""
    folder = os.environ.get("JOBHOOK_DEPLOY_DIR")
    return (Path(folder) if folder else project_dir / "deploy") / f"{env}.env"


@dataclass(frozen=True)
class Deployment:
    env: str | None
    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, env: str | None, project_dir: Path = PROJECT_DIR) -> Deployment:
        """The environment's settings; no environment (or no file): the defaults."""
        if env is None:
            return cls(None)
        path = env_file(env, project_dir)
        if not path.exists():
            return cls(env)
        values = {k: v for k, v in dotenv_values(path).items() if v}
        return cls(env, values)

    def _name(self, key: str) -> str:
        return self.values.get(key) or ("jobhook" if self.env is None else f"jobhook-{self.env}")

    @property
    def app_name(self) -> str:
        return self._name("JOBHOOK_MODAL_APP")

    @property
    def secret_name(self) -> str:
        return self._name("JOBHOOK_MODAL_SECRET")

    @property
    def modal_environment(self) -> str | None:
        return self.values.get("JOBHOOK_MODAL_ENVIRONMENT") or None

    @property
    def gpu(self) -> str:
        return self.values.get("JOBHOOK_GPU") or "T4"

    @property
    def runner_containers(self) -> int:
        return int(self.values.get("JOBHOOK_RUNNER_CONTAINERS") or 10)

    @property
    def api_containers(self) -> int:
        return int(self.values.get("JOBHOOK_API_CONTAINERS") or 2)

    @property
    def secrets(self) -> dict[str, str]:
        """What goes into the app's Modal secret: every variable but the deployment's own."""
        return {k: v for k, v in self.values.items() if k not in DEPLOY_KEYS}
