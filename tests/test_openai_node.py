"""The real `openai` npm package against the live server: one call, one stream, one bad key.

tests/node/chat.mjs does the calls and prints JSON; its package is installed with
`npm ci` (pinned by package-lock.json) the first time this runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fake_upstream import DEFAULT_PROMPT_TOKENS, DEFAULT_REPLY, words
from tests.fixtures_gateway import MODEL_ID, UPSTREAM_MODEL

# Registers the fixtures (fake upstream, chat route, keys, live clients) for this module.
pytest_plugins = ["tests.fixtures_gateway"]

NODE_DIR = Path(__file__).resolve().parent / "node"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None, reason="Node.js (node and npm) is not installed"
)


@pytest.fixture(scope="module")
def node_sdk() -> Path:
    if not (NODE_DIR / "node_modules" / "openai" / "package.json").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )
    return NODE_DIR / "chat.mjs"


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
def test_node_openai_sdk_chats_and_streams(node_sdk, live_api, chat_route, raw_key, fake_upstream, prefix):
    run = subprocess.run(
        ["node", str(node_sdk), live_api + prefix, raw_key, MODEL_ID],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["completion"] == {
        "model": MODEL_ID,
        "content": DEFAULT_REPLY,
        "finish_reason": "stop",
        "usage": out["completion"]["usage"],
    }
    assert out["completion"]["usage"]["prompt_tokens"] == DEFAULT_PROMPT_TOKENS
    assert out["stream"]["models"] == [MODEL_ID]
    assert out["stream"]["content"] == DEFAULT_REPLY
    assert out["stream"]["pieces"] == len(words(DEFAULT_REPLY))
    assert out["stream"]["usage"]["completion_tokens"] == len(words(DEFAULT_REPLY))
    assert out["auth_error"]["status"] == 401
    assert out["auth_error"]["code"] == "invalid_api_key"
    assert [r.json["model"] for r in fake_upstream.chat_requests] == [UPSTREAM_MODEL, UPSTREAM_MODEL]
    for received in fake_upstream.chat_requests:
        assert raw_key not in received.raw()
