"""The local simulator speaks OpenAI's chat protocol well enough for the real SDK."""

import threading

import openai
import pytest
import requests

from gateway.simulator import MODEL_ID, count_tokens, make_server


@pytest.fixture(autouse=True)
def _clean_shared_state():
    """Overrides conftest's: these tests touch no Django state, so they need no database."""


@pytest.fixture(scope="module")
def simulator_url():
    server = make_server("127.0.0.1", 0, word_delay_ms=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def client(simulator_url):
    return openai.OpenAI(base_url=simulator_url, api_key="anything", max_retries=0, timeout=10)


def test_chat_answers_with_what_was_asked_and_counts_usage(client):
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What is a beluga?"}]
    )

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert "simulator" in choice.message.content
    assert "What is a beluga?" in choice.message.content
    assert completion.usage.prompt_tokens == count_tokens("What is a beluga?")
    assert completion.usage.completion_tokens == count_tokens(choice.message.content)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_content_parts_are_read_as_text(client):
    completion = client.chat.completions.create(
        model=MODEL_ID,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Describe this"}]},
        ],
    )

    assert "Describe this" in completion.choices[0].message.content


def test_stream_sends_role_first_then_words_then_finish_and_usage(client):
    stream = client.chat.completions.create(
        model=MODEL_ID,
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Stream please" in text
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 10  # word by word, not one blob
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == count_tokens(text)
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_without_include_usage_has_no_usage_chunk_and_ends_with_done(simulator_url):
    response = requests.post(
        f"{simulator_url}/chat/completions",
        json={"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "stream": True},
        stream=True,
        timeout=10,
    )

    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [line for line in response.iter_lines(decode_unicode=True) if line]
    assert events[-1] == "data: [DONE]"
    assert not any('"usage"' in event for event in events)


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client):
    completion = client.chat.completions.create(
        model=MODEL_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )

    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens <= 5


def test_models_lists_the_simulator(client):
    assert [m.id for m in client.models.list()] == [MODEL_ID]


def test_missing_messages_is_an_openai_shaped_400(client):
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model=MODEL_ID, messages=[])

    assert excinfo.value.body["param"] == "messages"
