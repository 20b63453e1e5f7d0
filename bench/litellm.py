"""LiteLLM, the peer: its install into ``.venv/litellm`` from bench/litellm-requirements.txt,
and its proxy (one worker, no database, no callbacks, nothing fetched at start-up) in front of
the mock."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import orjson

from bench.scenarios import HOST, MODEL, ROOT
from bench.stack import Server, start_server

LITELLM_REQUIREMENTS = Path(__file__).resolve().parent / "litellm-requirements.txt"
LITELLM_VENV = ROOT / ".venv" / "litellm"
LITELLM_INSTALL_TIMEOUT = 900.0


# Of its log, the lines worth reporting (its banner and start-up notes are not).
LITELLM_PROBLEMS = re.compile(r"ERROR|CRITICAL|Traceback|Exception")
# Where LiteLLM would fetch its model price map and other files at start-up: loopback's discard
# port (refused at once), besides the LITELLM_LOCAL_* switches that keep it on its packaged copies.
NOWHERE = f"http://{HOST}:9/"


def _rel(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def ensure_litellm() -> tuple[Path | None, str]:
    """The LiteLLM proxy's command in LITELLM_VENV, which is made (again, when the requirements
    changed) from LITELLM_REQUIREMENTS; (None, why) when that fails, offline for one."""
    wanted = hashlib.sha256(LITELLM_REQUIREMENTS.read_bytes()).hexdigest()
    stamp = LITELLM_VENV / ".installed-stamp"
    command = LITELLM_VENV / "bin" / "litellm"
    with contextlib.suppress(OSError):
        if command.exists() and stamp.read_text().strip() == wanted:
            return command, ""
    print(
        f"Installing LiteLLM into {_rel(LITELLM_VENV)} from {_rel(LITELLM_REQUIREMENTS)} "
        "(once; a minute or two) ...",
        flush=True,
    )
    pip = [str(LITELLM_VENV / "bin" / "python"), "-m", "pip"]
    steps = (
        [sys.executable, "-m", "venv", "--clear", str(LITELLM_VENV)],
        [
            *pip,
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--timeout",
            "30",
            "--retries",
            "2",
            "--requirement",
            str(LITELLM_REQUIREMENTS),
        ],
    )
    for step in steps:
        what = " ".join(Path(step[0]).name if i == 0 else part for i, part in enumerate(step[:5]))
        try:
            done = subprocess.run(  # noqa: S603 (fixed command line, no shell)
                step,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=LITELLM_INSTALL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"`{what}` failed: {error}"
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            errors = [line for line in lines if line.startswith("ERROR")] or lines
            return None, f"`{what}` exited with {done.returncode}: {' / '.join(errors[-3:])}"
    if not command.exists():
        return None, f"no {_rel(command)} after the install"
    stamp.write_text(wanted + "\n")
    return command, ""


def litellm_version() -> str | None:
    """The version of the litellm package in LITELLM_VENV."""
    for info in sorted(LITELLM_VENV.glob("lib/python*/site-packages/litellm-*.dist-info")):
        return info.name.removeprefix("litellm-").removesuffix(".dist-info")
    return None


def litellm_config(directory: Path, mock_port: int, master_key: str) -> Path:
    """The proxy's config.yaml (JSON is YAML): the benchmark's model on the mock, no callbacks,
    no database, no spend or error logs; the master key is the only key."""
    config = {
        "model_list": [
            {
                "model_name": MODEL,
                "litellm_params": {
                    "model": f"openai/{MODEL}",
                    "api_base": f"http://{HOST}:{mock_port}/v1",
                    "api_key": "mock",
                },
            }
        ],
        "litellm_settings": {
            "callbacks": [],
            "success_callback": [],
            "failure_callback": [],
            "service_callback": [],
            "turn_off_message_logging": True,
        },
        "general_settings": {
            "master_key": master_key,
            "disable_spend_logs": True,
            "disable_spend_updates": True,
            "disable_error_logs": True,
            "background_health_checks": False,
        },
    }
    path = directory / "config.yaml"
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    return path


def litellm_env(home: Path) -> dict[str, str]:
    """A clean environment: nothing of the shell's (provider keys, DATABASE_URL, REDIS_URL,
    LITELLM_*, OTEL_*, ...) reaches the proxy, so it runs without database, cache or callback."""
    env = {k: v for k in ("PATH", "LANG", "LC_ALL", "TZ") if (v := os.environ.get(k))}
    env.update(
        HOME=str(home),
        PYTHONUNBUFFERED="1",
        LITELLM_MODE="PRODUCTION",  # loads no .env file
        LITELLM_LOG="WARNING",  # also uvicorn's level: no access log, as the gateway runs
        LITELLM_DONT_SHOW_FEEDBACK_BOX="True",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS="True",
        LITELLM_LOCAL_BLOG_POSTS="True",
        LITELLM_LOCAL_AUTOROUTER_PRESETS="True",
        LITELLM_LOCAL_POLICY_TEMPLATES="True",
        LITELLM_MODEL_COST_MAP_URL=NOWHERE,
        LITELLM_ANTHROPIC_BETA_HEADERS_URL=NOWHERE,
        LITELLM_BLOG_POSTS_URL=NOWHERE,
        LITELLM_AUTOROUTER_PRESETS_URL=NOWHERE,
    )
    return env


def start_litellm(command: Path, mock_port: int, port: int, logs: Path) -> tuple[Server, str]:
    """The proxy, one uvicorn worker (in its own process), and its master key."""
    directory = logs / "litellm"
    directory.mkdir()
    master_key = f"sk-{secrets.token_hex(32)}"
    config = litellm_config(directory, mock_port, master_key)
    server = start_server(
        "litellm",
        [
            str(command),
            "--config",
            str(config),
            "--host",
            HOST,
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        litellm_env(directory),
        logs,
        cwd=directory,
        single_process=True,
        problem=LITELLM_PROBLEMS,
    )
    return server, master_key
