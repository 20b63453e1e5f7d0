"""The documentation's client examples, run as written against a live gateway.

``doc_examples/`` holds every client example of the API Endpoints page, the API Reference
page and Aqueduct's chat completions page (a peer gateway's, whose examples customers bring
along), each a file copied verbatim from its page. Only what a reader replaces is replaced
here, in a copy made at run time: the base URL, the key and, on Aqueduct's page, the model
name. Each runs with the client it was written for: the current OpenAI Python SDK, the
legacy ``openai==0.28`` SDK (its own virtualenv, ``.venv/legacy-openai``), the OpenAI JS SDK
and Node's ``fetch`` (``doc_examples/node_modules``, from the committed lock file) and
curl. ``make clients`` installs the legacy SDK and the Node packages; the ``doc_clients``
fixture runs it once per test run, so a clean clone needs no manual step.

The assertions are the pages' own promises: what an example prints, and the documented
response shapes. A missing tool fails the test: CI has them all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.mock_provider.replies import text_pieces
from gateway.tests.conftest import ROOT, LiveGateway, MakeKey

EXAMPLES = Path(__file__).resolve().parent / "doc_examples"
ENDPOINTS_PAGE = EXAMPLES / "api_endpoints_page"
REFERENCE_PAGE = EXAMPLES / "api_reference_page"
AQUEDUCT_PAGE = EXAMPLES / "aqueduct_chat_page"
LEGACY_PYTHON = ROOT / ".venv" / "legacy-openai" / "bin" / "python"
NODE_MODULES = EXAMPLES / "node_modules"

# What a reader of each page replaces before running an example.
BASE_URLS = ("https://api.aqta.ai", "https://your-aqueduct-domain.com")
KEYS = ("sk-aqta-your-key-here", "sk-aqta-YOUR_KEY", "YOUR_AQUEDUCT_TOKEN")
AQUEDUCT_MODEL = ("your-model-name", "gpt-4o-mini")
TIMEOUT_SECONDS = 30


@pytest.fixture(scope="session")
def doc_clients() -> None:
    """The legacy SDK's virtualenv and the Node packages (a no-op once installed)."""
    make = required_tool("make")
    done = subprocess.run(
        [make, "--no-print-directory", "-s", "clients"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        pytest.fail(f"`make clients` failed:\n{done.stdout}\n{done.stderr}", pytrace=False)


@pytest.fixture
def key(gw, make_key: MakeKey) -> str:
    """A Pro key (the tier that may call every model the examples name)."""
    secret, _ = make_key(tier="pro")
    return secret


def required_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed; the documentation's examples need it")
    return path


def run_example(
    example: Path,
    command: list[str],
    gw: LiveGateway,
    key: str,
    tmp_path: Path,
    *,
    model: tuple[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a copy of ``example`` pointed at ``gw`` with ``key``; the file stays as documented."""
    documented = example.read_text()
    text = documented
    for url in BASE_URLS:
        text = text.replace(url, gw.url)
    for placeholder in KEYS:
        text = text.replace(placeholder, key)
    if model is not None:
        text = text.replace(*model)
    assert gw.url in text and key in text, f"{example.name} names no base URL or key to replace"
    script = tmp_path / example.name
    script.write_text(text)
    if example.suffix == ".mjs":
        # ES modules resolve `import ... from 'openai'` from the script's own directory.
        (tmp_path / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    # A proxy from the environment must not stand between the example and the gateway.
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    return subprocess.run(
        [*command, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )


def python() -> list[str]:
    return [sys.executable]


def legacy_python() -> list[str]:
    if not LEGACY_PYTHON.exists():
        pytest.fail(f"{LEGACY_PYTHON} is missing: `make clients` builds it")
    return [str(LEGACY_PYTHON)]


def node() -> list[str]:
    if not (NODE_MODULES / "openai").is_dir():
        pytest.fail(f"{NODE_MODULES} has no openai package: `make clients` installs it")
    return [required_tool("node")]


def sh() -> list[str]:
    required_tool("curl")
    return [required_tool("bash")]


def story(gw: LiveGateway) -> str:
    """The whole text the mock provider answers, streamed or not."""
    return "".join(text_pieces(gw.mock.config.reply_text, gw.mock.config.chunks))


def assert_ran(done: subprocess.CompletedProcess[str], *, stdout: str) -> None:
    """Exit 0, exactly ``stdout`` printed, nothing on stderr (compared whole, shown whole)."""
    assert (done.returncode, done.stdout, done.stderr) == (0, stdout, ""), (
        f"exit status {done.returncode}, stdout {done.stdout!r}, stderr:\n{done.stderr}"
    )


def json_output(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"not JSON: {done.stdout!r}")


def mock_stats(gw: LiveGateway) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(gw.mock.url + "/_mock/stats").json()
    return stats


def completion_mismatches(body: Any, *, model: str) -> list[str]:
    """Where ``body`` departs from an OpenAI chat completion answering ``model``."""
    if not isinstance(body, dict) or "choices" not in body:
        return [f"not a chat completion: {body!r}"]
    problems = []
    if body.get("object") != "chat.completion":
        problems.append(f"object is {body.get('object')!r}")
    if not str(body.get("model", "")).startswith(model):
        problems.append(f"model is {body.get('model')!r}, asked for {model!r}")
    choice = body["choices"][0] if body["choices"] else {}
    message = choice.get("message") or {}
    if message.get("role") != "assistant" or not isinstance(message.get("content"), str):
        problems.append(f"message is {message!r}")
    if choice.get("finish_reason") != "stop":
        problems.append(f"finish_reason is {choice.get('finish_reason')!r}")
    usage = body.get("usage") or {}
    if usage.get("total_tokens") != usage.get("prompt_tokens", 0) + usage.get(
        "completion_tokens", 0
    ):
        problems.append(f"usage is {usage!r}")
    return problems


def documented_completion_mismatches(body: Any, *, model: str) -> list[str]:
    """Where ``body`` departs from our pages' response: the OpenAI one plus ``aqta``."""
    problems = completion_mismatches(body, model=model)
    if isinstance(body, dict) and "choices" in body:
        problems += documented_aqta_mismatches(body.get("aqta"))
    return problems


def documented_aqta_mismatches(aqta: Any) -> list[str]:
    """The ``aqta`` object of both pages' responses: ``tr_`` trace ids, EUR as a number."""
    if not isinstance(aqta, dict):
        return [f"no aqta object: {aqta!r}"]
    problems = []
    trace_id = aqta.get("trace_id")
    if not (isinstance(trace_id, str) and trace_id.startswith("tr_")):
        problems.append(f"aqta.trace_id {trace_id!r} does not start with 'tr_'")
    cost = aqta.get("cost_eur")
    if not (isinstance(cost, int | float) and not isinstance(cost, bool) and cost > 0):
        problems.append(f"aqta.cost_eur {cost!r} is not a positive JSON number")
    expected = {"provider": "openai", "status": "passed", "cached": False, "loop_detected": False}
    for name, value in expected.items():
        if aqta.get(name) != value:
            problems.append(f"aqta.{name} is {aqta.get(name)!r}, documented {value!r}")
    return problems


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of a Server-Sent Events body, in order."""
    return [
        line.removeprefix("data:").strip()
        for event in text.replace("\r\n", "\n").split("\n\n")
        for line in event.split("\n")
        if line.startswith("data:")
    ]


# --- API Endpoints page ---------------------------------------------------------------------


def test_the_chat_request_example_answers_with_the_documented_response(
    gw, key, tmp_path, doc_clients
):
    done = run_example(ENDPOINTS_PAGE / "chat_request.sh", sh(), gw, key, tmp_path)

    body = json_output(done)
    problems = documented_completion_mismatches(body, model="gpt-4o")
    assert problems == [], "\n".join(problems)
    assert body["choices"][0]["message"]["content"] == story(gw)
    sent = mock_stats(gw)["last_request"]
    assert (sent["temperature"], sent["max_tokens"]) == (0.7, 500)


def test_the_streaming_example_prints_the_whole_story(gw, key, tmp_path, doc_clients):
    done = run_example(ENDPOINTS_PAGE / "stream.py", python(), gw, key, tmp_path)

    assert_ran(done, stdout=story(gw))
    assert mock_stats(gw)["streams_completed"] == 1


def test_the_models_example_lists_the_documented_models_and_providers(
    gw, key, tmp_path, doc_clients
):
    done = run_example(ENDPOINTS_PAGE / "models.sh", sh(), gw, key, tmp_path)

    body = json_output(done)
    assert body["object"] == "list"
    listed = {
        model["id"]: {name: model.get(name) for name in ("object", "owned_by", "provider")}
        for model in body["data"]
    }
    documented = {
        "gpt-4o": {"object": "model", "owned_by": "openai", "provider": "openai"},
        "claude-3-5-sonnet-20241022": {
            "object": "model",
            "owned_by": "anthropic",
            "provider": "anthropic",
        },
        "gemini-1.5-pro": {"object": "model", "owned_by": "google", "provider": "google"},
    }
    assert {model_id: listed.get(model_id) for model_id in documented} == documented


# --- API Reference page ---------------------------------------------------------------------


def test_the_legacy_sdk_example_completes_a_gpt_4_call(gw, key, tmp_path, doc_clients):
    done = run_example(REFERENCE_PAGE / "legacy_sdk_chat.py", legacy_python(), gw, key, tmp_path)

    assert_ran(done, stdout="")
    stats = mock_stats(gw)
    assert stats["chat_requests"] == 1
    assert stats["last_request"]["messages"] == [{"role": "user", "content": "Hello!"}]


def test_the_legacy_sdk_stream_example_prints_the_story(gw, key, tmp_path, doc_clients):
    # openai 0.28 reads the stream itself (requests' iter_lines, its own `data:` parsing),
    # and only when the response's Content-Type is text/event-stream.
    done = run_example(REFERENCE_PAGE / "legacy_sdk_stream.py", legacy_python(), gw, key, tmp_path)

    assert_ran(done, stdout=story(gw))
    assert mock_stats(gw)["streams_completed"] == 1


def test_the_js_sdk_example_completes_a_gpt_4_call(gw, key, tmp_path, doc_clients):
    done = run_example(REFERENCE_PAGE / "js_sdk_chat.mjs", node(), gw, key, tmp_path)

    assert_ran(done, stdout="")
    stats = mock_stats(gw)
    assert stats["chat_requests"] == 1
    assert stats["last_request"]["messages"] == [{"role": "user", "content": "Hello!"}]


def test_the_curl_example_with_the_authorisation_header_answers_as_documented(
    gw, key, tmp_path, doc_clients
):
    done = run_example(REFERENCE_PAGE / "curl_chat.sh", sh(), gw, key, tmp_path)

    body = json_output(done)
    problems = documented_completion_mismatches(body, model="gpt-4")
    assert problems == [], "\n".join(problems)
    assert body["choices"][0]["message"]["content"] == story(gw)


def test_the_fetch_example_with_the_authorisation_header_logs_the_reply(
    gw, key, tmp_path, doc_clients
):
    done = run_example(REFERENCE_PAGE / "fetch_error_handling.mjs", node(), gw, key, tmp_path)

    assert_ran(done, stdout=story(gw) + "\n")


# --- Aqueduct's chat completions page ---------------------------------------------------------


def test_the_aqueduct_curl_example_is_answered_on_the_unprefixed_route(
    gw, key, tmp_path, doc_clients
):
    done = run_example(
        AQUEDUCT_PAGE / "curl_chat.sh", sh(), gw, key, tmp_path, model=AQUEDUCT_MODEL
    )

    body = json_output(done)
    problems = completion_mismatches(body, model=AQUEDUCT_MODEL[1])
    assert problems == [], "\n".join(problems)
    assert body["choices"][0]["message"]["content"] == story(gw)


def test_the_aqueduct_sdk_example_without_v1_in_the_base_url_prints_the_reply(
    gw, key, tmp_path, doc_clients
):
    done = run_example(
        AQUEDUCT_PAGE / "sdk_chat.py", python(), gw, key, tmp_path, model=AQUEDUCT_MODEL
    )

    assert_ran(done, stdout=story(gw) + "\n")


def test_the_aqueduct_streaming_example_streams_the_story_then_done(gw, key, tmp_path, doc_clients):
    done = run_example(
        AQUEDUCT_PAGE / "curl_stream.sh", sh(), gw, key, tmp_path, model=AQUEDUCT_MODEL
    )

    assert done.returncode == 0, done.stderr
    payloads = sse_data(done.stdout)
    assert payloads and payloads[-1] == "[DONE]", done.stdout
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert text == story(gw)


@pytest.mark.parametrize(
    "model", ["gpt-4o-mini", "claude-3-haiku-20240307", "gemini-2.0-flash", "sonar"]
)
def test_the_aqueduct_json_schema_response_format_is_answered_with_matching_json(gw, key, model):
    # The page gives `"response_format": {...}` as a member of the request body: it is put,
    # as written, into the smallest request around it.
    fragment = (AQUEDUCT_PAGE / "json_schema_response_format.fragment").read_text()
    request = json.dumps({"model": model, "messages": [{"role": "user", "content": "Greet me."}]})
    body = request.removesuffix("}") + ", " + fragment + "}"
    answer = httpx.post(
        gw.url + "/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=TIMEOUT_SECONDS,
    )

    assert answer.status_code == 200, answer.text
    content = json.loads(answer.json()["choices"][0]["message"]["content"])
    assert set(content) == {"greeting", "count"}
    assert isinstance(content["greeting"], str)
    assert isinstance(content["count"], int) and not isinstance(content["count"], bool)
