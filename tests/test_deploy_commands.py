"""`jobhook deploy`, `jobhook secrets` and `jobhook vault set`, and modal_app's settings per
environment. Modal's cloud cannot run here: a stand-in `modal` on PATH records what it was asked
to do, which is the whole of what these commands decide."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from jobhook import vault
from jobhook.devstack.database import PROJECT_DIR
from tests.cli_process import explained, run
from tests.conftest import Stack

pytestmark = pytest.mark.commits

PROD = """\
# deployment
JOBHOOK_MODAL_ENVIRONMENT=main
JOBHOOK_GPU=A100
JOBHOOK_RUNNER_CONTAINERS=3
# the app's secret
DATABASE_URL=postgresql://postgres.ref:pw@aws-0-eu.pooler.supabase.com:6543/postgres
SUPABASE_URL=https://ref.supabase.co
JOBHOOK_API_KEY='a key with spaces, quotes " and 32+ characters'
OPENAI_API_KEY=sk-handler-secret
"""


@pytest.fixture
def deploy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "deploy"
    folder.mkdir()
    (folder / "prod.env").write_text(PROD)
    return folder


@pytest.fixture
def fake_modal(tmp_path: Path) -> tuple[Path, Path]:
    """A `modal` executable that appends its argv and JOBHOOK_ENV to a file, as JSON."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    script = bin_dir / "modal"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"with open({str(calls)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'env': os.environ.get('JOBHOOK_ENV'),"
        " 'cwd': os.getcwd()}) + '\\n')\n"
    )
    script.chmod(0o755)
    return bin_dir, calls


def with_modal(bin_dir: Path, deploy_dir: Path) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "JOBHOOK_DEPLOY_DIR": str(deploy_dir)}


def calls(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_deploy_runs_modal_deploy_for_the_environment(
    tmp_path: Path, deploy_dir: Path, fake_modal: tuple[Path, Path]
) -> None:
    bin_dir, recorded = fake_modal
    result = run("deploy", "--env", "prod", data_dir=tmp_path, env=with_modal(bin_dir, deploy_dir))
    assert result.returncode == 0, result.stderr
    assert "deploying jobhook-prod (secret jobhook-prod)" in result.stdout
    [call] = calls(recorded)
    assert call == {
        "argv": ["deploy", "modal_app.py", "--env", "main"],
        "env": "prod",
        "cwd": str(PROJECT_DIR),
    }


def test_deploy_without_the_environments_file_says_how_to_make_it(tmp_path: Path) -> None:
    message = explained(
        run("deploy", "--env", "dev", data_dir=tmp_path, env={"JOBHOOK_DEPLOY_DIR": str(tmp_path)})
    )
    assert "deploy/dev.env does not exist" in message
    assert "cp .env.example deploy/dev.env" in message
    assert "must be dev or prod" in explained(run("deploy", "--env", "staging", data_dir=tmp_path))


def test_secrets_prints_the_modal_command_from_the_file(
    tmp_path: Path, deploy_dir: Path, fake_modal: tuple[Path, Path]
) -> None:
    bin_dir, recorded = fake_modal
    env = with_modal(bin_dir, deploy_dir)
    printed = run("secrets", "--env", "prod", data_dir=tmp_path, env=env)
    assert printed.returncode == 0, printed.stderr
    argv = shlex.split(printed.stdout)
    assert argv[:7] == ["uv", "run", "modal", "secret", "create", "--force", "jobhook-prod"]
    pairs = dict(pair.split("=", 1) for pair in argv[7:-2])
    assert argv[-2:] == ["--env", "main"]
    # Every variable of the file but the deployment's own, the handler's secret included.
    assert pairs == {
        "DATABASE_URL": "postgresql://postgres.ref:pw@aws-0-eu.pooler.supabase.com:6543/postgres",
        "SUPABASE_URL": "https://ref.supabase.co",
        "JOBHOOK_API_KEY": 'a key with spaces, quotes " and 32+ characters',
        "OPENAI_API_KEY": "sk-handler-secret",
    }
    assert not recorded.exists()  # printed, not run

    ran = run("secrets", "--env", "prod", "--run", data_dir=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    [call] = calls(recorded)
    assert call["argv"] == argv[3:]


def test_modal_app_takes_its_tiers_from_the_environments_file(deploy_dir: Path) -> None:
    probe = (
        "import json, modal_app as m; print(json.dumps([m.APP_NAME, m.GPU, m.RUNNER_CONTAINERS,"
        " m.API_CONTAINERS, m.DEPLOYMENT.secret_name]))"
    )

    def settings(**env: str) -> list[object]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("JOBHOOK_")}
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-c", probe],
            env=base | {"JOBHOOK_DEPLOY_DIR": str(deploy_dir)} | env,
            cwd=PROJECT_DIR,
            capture_output=True,
            text=True,
            check=True,
        )
        return list(json.loads(result.stdout.splitlines()[-1]))

    assert settings(JOBHOOK_ENV="prod") == ["jobhook-prod", "A100", 3, 2, "jobhook-prod"]
    # The deployer's shell does not pick the GPU or the containers.
    assert settings(JOBHOOK_ENV="prod", JOBHOOK_GPU="H100", JOBHOOK_RUNNER_CONTAINERS="99") == [
        "jobhook-prod", "A100", 3, 2, "jobhook-prod",
    ]  # fmt: skip
    assert settings(JOBHOOK_GPU="H100") == ["jobhook", "T4", 10, 2, "jobhook"]
    # In a container the file is absent: the values the image was deployed with stand.
    baked = {"JOBHOOK_ENV": "prod", "JOBHOOK_GPU": "A100", "JOBHOOK_RUNNER_CONTAINERS": "3"}
    probe = "import modal; modal.is_local = lambda: False\n" + probe
    assert settings(**baked, JOBHOOK_DEPLOY_DIR="/nonexistent") == [
        "jobhook-prod", "A100", 3, 2, "jobhook-prod",
    ]  # fmt: skip


def test_every_modal_function_has_max_containers() -> None:
    """Modal keeps the limit server-side (the local function object does not expose it), so
    read the decorators: each `@app.function(...)` passes one, from the environment's file."""
    import ast

    tree = ast.parse((PROJECT_DIR / "modal_app.py").read_text())
    decorated = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and ast.unparse(decorator.func) == "app.function"
                ):
                    keywords = {k.arg: ast.unparse(k.value) for k in decorator.keywords}
                    decorated[node.name] = keywords.get("max_containers")
    assert decorated == {
        "run_cpu": "RUNNER_CONTAINERS",
        "run_gpu": "RUNNER_CONTAINERS",
        "run_browser": "RUNNER_CONTAINERS",
        "run_llm": "RUNNER_CONTAINERS",
        "api": "API_CONTAINERS",
    }


def test_vault_set_writes_the_url_and_a_fresh_secret(tmp_path: Path, committed: Stack) -> None:
    url = "https://example--jobhook-prod-api.modal.run/webhooks/jobs"
    with psycopg.connect(committed.url, autocommit=True) as conn:
        before = vault.read(conn, vault.WEBHOOK_SECRET)
    result = run(
        "vault", "set", "--database-url", committed.url, "--webhook-url", url, data_dir=tmp_path
    )
    assert result.returncode == 0, result.stderr
    with psycopg.connect(committed.url, autocommit=True) as conn:
        assert vault.read(conn, vault.WEBHOOK_URL) == url
        after = vault.read(conn, vault.WEBHOOK_SECRET)
    assert after is not None
    assert after.startswith("whsec_")
    assert after != before
    assert f"jobhook_webhook_secret = {after}" in result.stdout
    assert "keeps accepting the old one" in result.stdout
    assert "postgres:postgres@" not in result.stdout

    refused = run(
        "vault", "set", "--database-url", committed.url, "--webhook-url", "http://x.example/w",
        data_dir=tmp_path,
    )  # fmt: skip
    assert "--webhook-url must be https://" in explained(refused)


def test_env_example_documents_every_variable() -> None:
    import re

    from jobhook.config import Settings
    from jobhook.deployment import DEPLOY_KEYS

    documented = set(
        re.findall(r"^#? ?([A-Z][A-Z0-9_]+)[= ]", (PROJECT_DIR / ".env.example").read_text(), re.M)
    )
    settings = {str(field.validation_alias) for field in Settings.model_fields.values()}
    read_directly = {"SUPABASE_SERVICE_ROLE_KEY", "JOBHOOK_DATA_DIR", "JOBHOOK_PG_BIN"}
    read_directly |= {"JOBHOOK_DEPLOY_DIR", "JOBHOOK_ENV"}
    missing = (settings | DEPLOY_KEYS | read_directly) - documented
    assert missing == set()


def test_the_dev_stack_hands_dot_env_to_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobhook.devstack.stack import load_env_file

    dot_env = tmp_path / ".env"
    dot_env.write_text("HANDLER_API_KEY=from-dot-env\nSHELL_WINS=from-dot-env\nBLANK=\n")
    monkeypatch.setenv("SHELL_WINS", "from-the-shell")
    monkeypatch.delenv("HANDLER_API_KEY", raising=False)
    monkeypatch.delenv("BLANK", raising=False)
    assert load_env_file(dot_env) == {
        "HANDLER_API_KEY": "from-dot-env",
        "SHELL_WINS": "from-dot-env",
    }
    assert os.environ["HANDLER_API_KEY"] == "from-dot-env"
    assert os.environ["SHELL_WINS"] == "from-the-shell"
    assert "BLANK" not in os.environ
    monkeypatch.delenv("HANDLER_API_KEY")
    assert load_env_file(tmp_path / "absent.env") == {}
