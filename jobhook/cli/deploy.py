"""`jobhook deploy`, `jobhook secrets` and `jobhook vault set`: a deployment environment from its
settings file, `deploy/<env>.env` (jobhook.deployment), in the commands Modal and Vault take."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from typing import Annotated

import psycopg
import typer

from jobhook import vault
from jobhook.cli.failures import CliError
from jobhook.cli.target import masked
from jobhook.deployment import ENVIRONMENTS, PROJECT_DIR, Deployment, env_file

EnvOption = Annotated[
    str, typer.Option("--env", help=f"the deployment environment: {' or '.join(ENVIRONMENTS)}")
]
vault_app = typer.Typer(help="The webhook's URL and signing secret in a project's Vault.")


def _deployment(env: str) -> Deployment:
    if env not in ENVIRONMENTS:
        raise CliError(f"--env must be {' or '.join(ENVIRONMENTS)}, got {env!r}")
    path = env_file(env)
    if not path.exists():
        raise CliError(
            f"deploy/{env}.env does not exist: the {env} environment has no settings",
            f"mkdir -p deploy && cp .env.example deploy/{env}.env, then fill in its deployment "
            "section (docs/deploy.md)",
        )
    return Deployment.read(env)


def _modal() -> list[str]:
    """Modal's CLI, as `uv run modal` finds it: the environment's own, else through Python."""
    found = shutil.which("modal")
    return [found] if found else [sys.executable, "-m", "modal"]


def _with_environment(deployment: Deployment, argv: list[str]) -> list[str]:
    if deployment.modal_environment:
        return [*argv, "--env", deployment.modal_environment]
    return argv


def _call(argv: list[str], env: dict[str, str] | None = None) -> int:
    try:
        return subprocess.run(argv, env=env, cwd=PROJECT_DIR, check=False).returncode  # noqa: S603
    except FileNotFoundError:
        raise CliError(
            "Modal's CLI is not installed here", "run `uv sync`, then `uv run modal token new`"
        ) from None


def deploy(env: EnvOption) -> None:
    """Deploy the app to Modal as that environment's app, with its secret and tier settings."""
    deployment = _deployment(env)
    argv = _with_environment(deployment, [*_modal(), "deploy", "modal_app.py"])
    print(f"deploying {deployment.app_name} (secret {deployment.secret_name}): modal deploy")
    # modal_app.py reads the tier settings from deploy/<env>.env, named by JOBHOOK_ENV.
    code = _call(argv, {**os.environ, "JOBHOOK_ENV": env})
    if code != 0:
        raise CliError(
            f"modal deploy failed (exit {code})",
            "not logged in? `uv run modal token new`; missing secret? "
            f"`jobhook secrets --env {env} --run`",
            code=code,
        )


def secrets(
    env: EnvOption,
    run: Annotated[bool, typer.Option("--run", help="run the command instead of printing it")] = (
        False
    ),
) -> None:
    """The `modal secret create` command that gives the app its settings from deploy/<env>.env
    (printed; with --run, run). Re-running it replaces the secret (--force): redeploy after."""
    deployment = _deployment(env)
    values = deployment.secrets
    if "DATABASE_URL" not in values:
        raise CliError(
            f"deploy/{env}.env has no DATABASE_URL, which the app needs",
            "add the project's pooler URL (docs/deploy.md, section 2)",
        )
    pairs = [f"{key}={value}" for key, value in values.items()]
    argv = _with_environment(
        deployment, ["secret", "create", "--force", deployment.secret_name, *pairs]
    )
    if not run:
        print(shlex.join(["uv", "run", "modal", *argv]))
        return
    code = _call([*_modal(), *argv])
    if code != 0:
        raise CliError(f"modal secret create failed (exit {code})", "`uv run modal token new`?")
    print(f"secret {deployment.secret_name} set; `jobhook deploy --env {env}` makes the app use it")


@vault_app.command("set")
def vault_set(
    database_url: Annotated[
        str, typer.Option("--database-url", help="the project's database (direct or pooler URL)")
    ],
    webhook_url: Annotated[
        str,
        typer.Option(
            "--webhook-url", help="where the database rings: https://<app>.modal.run/webhooks/jobs"
        ),
    ],
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="the signing secret to use (default: a fresh one)"),
    ] = None,
) -> None:
    """Set the webhook URL and a fresh signing secret in the project's Vault."""
    if not webhook_url.startswith("https://") and "127.0.0.1" not in webhook_url:
        raise CliError(
            f"--webhook-url must be https://, got {webhook_url!r}",
            "use the app's URL from `jobhook deploy`, ending in /webhooks/jobs",
        )
    new = secret or vault.new_webhook_secret()
    if not new.startswith("whsec_"):
        raise CliError("--secret must be a Standard Webhooks secret (whsec_...)")
    with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
        old = vault.read(conn, vault.WEBHOOK_SECRET)
        with conn.transaction():
            vault.write(conn, vault.WEBHOOK_URL, webhook_url)
            vault.write(conn, vault.WEBHOOK_SECRET, new)
    print(f"Vault of {masked(database_url)}:")
    print(f"  {vault.WEBHOOK_URL} = {webhook_url}")
    print(f"  {vault.WEBHOOK_SECRET} = {new}")
    if old and old != new:
        print(
            "rotated: an app that reads the secret from Vault (JOBHOOK_WEBHOOK_SECRETS unset) "
            "follows it at the next doorbell and keeps accepting the old one; an app with "
            "JOBHOOK_WEBHOOK_SECRETS must list this secret first (new,old) and be redeployed"
        )


def register(app: typer.Typer) -> None:
    app.command()(deploy)
    app.command()(secrets)
    app.add_typer(vault_app, name="vault")
