"""Speech and transcription: OpenAI's audio endpoints, relayed to an upstream and priced per unit.

Speech streams the audio as the upstream makes it, holds and charges exactly its characters, and is
recorded once when the body closes. Transcriptions are priced per second of audio, measured from the
upload before the call; uploads over the limit are refused before they are read.
"""

from __future__ import annotations

import io
import json
import math
import secrets
import socket
import threading
import wave
from urllib.parse import urlsplit

import openai
import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.test import RequestFactory

from billing.models import Balance, LedgerEntry, Reservation, UsageRecord
from gateway.media.speech import SpeechStreamBroken
from gateway.media.storage import media_open
from gateway.media.transcriptions import held_seconds
from gateway.models import MediaTask
from tests.fake_media import DEFAULT_TRANSCRIPT, SPEECH_CONTENT_TYPES
from tests.fixtures_gateway import error_of, wait_for_record

pytestmark = pytest.mark.usefixtures("ledger_invariants")

TTS = "test-tts"
TTS_STEERABLE = "test-tts-steerable"
STT = "test-stt"
STT_PLAIN = "test-stt-plain"  # json and text only, no translations
VOICES = ["alloy", "nova", "verse"]
TTS_PRICE = 10_500_000  # micro-USD per 1M characters: 10.5 a character, so odd lengths round up
STT_PRICE = 4_250  # micro-USD per minute: 70.83 a second, so durations round up
CREDIT = 100_000_000  # what user_factory grants a prepaid account
TEXT = "Hello from Beluga, speaking."  # 28 characters


def speech_cost(characters: int) -> int:
    return -(-characters * TTS_PRICE // 1_000_000)


def transcription_cost(seconds: int) -> int:
    return -(-seconds * STT_PRICE // 60)


def wav_file(seconds: float = 2.5, rate: int = 8000) -> bytes:
    """`seconds` of silence as a real WAV file (16-bit mono), as a microphone recording would be."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return out.getvalue()


# WebM (what browsers record): mutagen cannot read its length.
WEBM = b"\x1aE\xdf\xa3\x9fB\x86\x81\x01B\xf7\x81\x01B\xf2\x81\x04B\xf3\x81\x08B\x82\x84webm" + bytes(3000)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    """Stored audio and transcripts go to tmp_path (changing STORAGES resets default_storage)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }


@pytest.fixture
def audio_models(db, fake_media):
    """Speech and transcription models routed to the fake media upstream (OpenAI's audio API)."""
    from catalog.models import AIModel, Route, Upstream
    from catalog.selectors import catalog_cache_clear

    upstream = Upstream.objects.create(
        name="fake-audio",
        kind="openai",
        base_url=fake_media.api_url,
        api_key="audio-secret-" + secrets.token_hex(8),
        connect_timeout=2.0,
        read_timeout=5.0,
    )
    every_format = ["json", "text", "srt", "verbose_json", "vtt"]
    models = {
        TTS: ("audio-tts", {"per_1m_chars": TTS_PRICE}, {"voices": VOICES, "formats": list(SPEECH_CONTENT_TYPES)}),
        TTS_STEERABLE: ("audio-tts", {"per_1m_chars": TTS_PRICE}, {"instructions": True, "max_chars": 40}),
        STT: (
            "audio-stt",
            {"per_minute": STT_PRICE},
            {"formats": every_format, "translations": True, "timestamps": True},
        ),
        STT_PLAIN: ("audio-stt", {"per_minute": STT_PRICE}, {"formats": ["json", "text"]}),
    }
    for slug, (category, price, options) in models.items():
        model = AIModel.objects.create(
            slug=slug, name=slug, vendor="Test", category=category, media_options=options, **price
        )
        Route.objects.create(model=model, upstream=upstream, upstream_model=f"upstream-{slug}")
    catalog_cache_clear()
    return upstream


@pytest.fixture
def prepaid(user_factory, api_key_factory):
    """(user, raw key) of a prepaid account holding CREDIT."""
    user = user_factory(plan="pro", password=None)
    return user, api_key_factory(user=user)[1]


@pytest.fixture
def sdk(live_api, prepaid):
    with openai.OpenAI(base_url=live_api + "/v1", api_key=prepaid[1], max_retries=0, timeout=20) as client:
        yield client


def post_speech(client, raw_key: str, path: str = "/v1/audio/speech", HTTP_IDEMPOTENCY_KEY=None, **body):
    body = {"model": TTS, "input": TEXT, "voice": "alloy", **body}
    headers = {"HTTP_IDEMPOTENCY_KEY": HTTP_IDEMPOTENCY_KEY} if HTTP_IDEMPOTENCY_KEY else {}
    return client.post(
        path, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw_key}", **headers
    )


def post_audio(client, raw_key: str, data: bytes = b"", name: str = "speech.wav", task="transcriptions", **fields):
    form = {"model": STT, **fields}
    if data is not None:
        form["file"] = _named(data or wav_file(), name)
    return client.post(f"/v1/audio/{task}", data=form, HTTP_AUTHORIZATION=f"Bearer {raw_key}")


def _named(data: bytes, name: str) -> io.BytesIO:
    file = io.BytesIO(data)
    file.name = name
    return file


def only_record() -> UsageRecord:
    [record] = UsageRecord.objects.all()
    return record


def balance(user) -> int:
    return Balance.objects.get(user=user).balance_micro_usd


def open_speech(raw_key: str, **body):
    """The speech response as a WSGI server holds it: headers ready, the body not read, not closed."""
    from gateway.middleware import RequestIdMiddleware
    from gateway.views import audio_speech

    body = {"model": TTS, "input": TEXT, "voice": "alloy", **body}
    request = RequestFactory().post(
        "/v1/audio/speech",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )
    return RequestIdMiddleware(audio_speech)(request)


def close_response(response) -> None:
    """Close a response as the WSGI server does, keeping the test's own database connection open."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


# --- speech ---------------------------------------------------------------------------------


def test_speech_audio_arrives_before_the_upstream_has_finished(sdk, audio_models, fake_media, prepaid):
    user, _ = prepaid
    fake_media.speech_hold_last = threading.Event()
    whole = fake_media.speech_bytes("mp3")

    with sdk.audio.speech.with_streaming_response.create(model=TTS, input=TEXT, voice="nova") as response:
        assert response.headers["content-type"] == "audio/mpeg"
        assert response.headers["x-request-cost-micro-usd"] == str(speech_cost(len(TEXT)))
        chunks = response.iter_bytes()
        first = next(chunks)
        # The upstream still holds its last chunk back: these bytes were relayed as they came.
        [upstream_call] = fake_media.requests_to("/v1/audio/speech")
        assert not upstream_call.completed
        assert first and whole.startswith(first)
        fake_media.speech_hold_last.set()
        audio = first + b"".join(chunks)

    assert audio == whole
    record = wait_for_record()
    assert record.request_id == response.headers["x-request-id"]
    assert (record.status_code, record.stream, record.client_disconnected) == (200, True, False)
    assert (record.endpoint, record.protocol, record.upstream_model) == (
        "audio/speech",
        "openai.audio",
        f"upstream-{TTS}",
    )
    assert (record.media_unit, record.media_units, record.media_unit_price) == ("character", len(TEXT), TTS_PRICE)
    assert record.cost_micro_usd == speech_cost(len(TEXT)) == 294  # 28 x 10.5 = 294
    sent = upstream_call.json
    assert (sent["model"], sent["voice"], sent["response_format"]) == (f"upstream-{TTS}", "nova", "mp3")
    assert upstream_call.headers["authorization"] == f"Bearer {audio_models.api_key}"


@pytest.mark.parametrize("fmt", list(SPEECH_CONTENT_TYPES))
def test_each_speech_format_has_openais_content_type(client, audio_models, fake_media, prepaid, fmt):
    response = post_speech(client, prepaid[1], response_format=fmt)

    assert response.status_code == 200
    assert response["Content-Type"] == SPEECH_CONTENT_TYPES[fmt]
    assert b"".join(response.streaming_content) == fake_media.speech_bytes(fmt)
    assert fake_media.requests[-1].json["response_format"] == fmt


def test_speech_cost_is_exact_and_the_prepaid_balance_is_debited_once(client, audio_models, fake_media, prepaid):
    user, raw_key = prepaid
    text = "Odd length!"  # 11 characters x 10.5 = 115.5, rounded up once

    response = post_speech(client, raw_key, input=text, speed=1.25, instructions=None)
    b"".join(response.streaming_content)

    cost = speech_cost(len(text))
    assert cost == 116
    assert response["X-Request-Cost-Micro-Usd"] == str(cost)
    assert only_record().cost_micro_usd == cost
    kinds = list(LedgerEntry.objects.filter(user=user).order_by("id").values_list("kind", "amount_micro_usd"))
    assert kinds[1:] == [("reserve", 0), ("settle", -cost)]
    assert LedgerEntry.objects.get(user=user, kind="reserve").hold_micro_usd == cost  # held exactly the charge
    assert Reservation.objects.get().state == Reservation.State.SETTLED
    assert balance(user) == CREDIT - cost
    assert Balance.objects.get(user=user).reserved_micro_usd == 0


def test_speech_is_kept_as_a_completed_task(client, audio_models, fake_media, prepaid):
    user, raw_key = prepaid
    response = post_speech(client, raw_key, response_format="wav", voice="verse")
    audio = b"".join(response.streaming_content)

    task = MediaTask.objects.get(user=user)
    assert (task.kind, task.status, task.billed, task.progress) == ("speech", "completed", True, 100)
    assert task.request_id == response["X-Request-Id"]
    assert task.cost_micro_usd == speech_cost(len(TEXT))
    assert task.params["prompt"] == TEXT and task.params["voice"] == "verse" and task.params["format"] == "wav"
    assert task.params["charge"] == {"unit": "character", "units": len(TEXT), "unit_price": TTS_PRICE}
    [result] = task.results
    assert (result["content_type"], result["size"]) == ("audio/wav", len(audio))
    with media_open(result["name"]) as stored:
        assert stored.read() == audio
    assert task.completed_at is not None


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        pytest.param({"input": "x" * 4097}, "input", "4096", id="input-over-4096"),
        pytest.param({"model": TTS_STEERABLE, "input": "x" * 41}, "input", "40", id="input-over-models-max"),
        pytest.param({"input": ""}, "input", "input", id="input-empty"),
        pytest.param({"voice": "shimmer"}, "voice", "alloy, nova, verse", id="unknown-voice"),
        pytest.param({"voice": None}, "voice", "voice", id="no-voice"),
        pytest.param({"response_format": "ogg"}, "response_format", "mp3, opus, aac, flac, wav, pcm", id="bad-format"),
        pytest.param({"speed": 4.5}, "speed", "0.25", id="speed-too-fast"),
        pytest.param({"speed": "fast"}, "speed", "number", id="speed-not-a-number"),
        pytest.param({"instructions": "Whisper."}, "instructions", "instructions", id="instructions-on-tts"),
        pytest.param({"stream_format": "sse"}, "stream_format", "audio", id="sse"),
    ],
)
def test_bad_speech_requests_are_400_naming_the_parameter(
    client, audio_models, fake_media, prepaid, body, param, words
):
    response = post_speech(client, prepaid[1], **body)

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param
    assert words in error["message"]
    assert fake_media.requests == []
    assert UsageRecord.objects.count() == 0 and Reservation.objects.count() == 0


def test_instructions_and_extra_params_reach_a_model_that_takes_them(client, audio_models, fake_media, prepaid):
    response = post_speech(client, prepaid[1], model=TTS_STEERABLE, voice="anything", instructions="Cheerful.", seed=7)

    assert response.status_code == 200
    b"".join(response.streaming_content)
    sent = fake_media.requests[-1].json
    assert (sent["instructions"], sent["seed"], sent["voice"]) == ("Cheerful.", 7, "anything")


def test_speech_on_the_api_prefix_and_for_a_transcription_model(client, audio_models, fake_media, prepaid):
    prefixed = post_speech(client, prepaid[1], path="/api/v1/audio/speech")
    assert prefixed.status_code == 200
    assert b"".join(prefixed.streaming_content) == fake_media.speech_bytes("mp3")
    wrong = post_speech(client, prepaid[1], model=STT)
    assert wrong.status_code == 400 and error_of(wrong)["code"] == "model_not_supported"


def test_speech_upstream_failure_is_recorded_at_no_cost(client, audio_models, fake_media, prepaid):
    user, raw_key = prepaid
    fake_media.fail_next("/v1/audio/speech", status=500)

    response = post_speech(client, raw_key)

    assert response.status_code == 502
    assert error_of(response)["type"] == "service_unavailable_error"
    record = only_record()
    assert (record.status_code, record.cost_micro_usd) == (502, 0)
    assert Reservation.objects.get().state == Reservation.State.RELEASED
    assert balance(user) == CREDIT
    assert not MediaTask.objects.exists()


def test_speech_cut_by_the_client_is_charged_once(audio_models, fake_media, prepaid):
    user, raw_key = prepaid
    fake_media.speech_hold_last = threading.Event()

    response = open_speech(raw_key)
    blocks = iter(response.streaming_content)
    assert next(blocks)
    close_response(response)  # the client hung up: the server closes the body
    close_response(response)  # a second close changes nothing

    record = only_record()
    assert record.client_disconnected is True and record.error_type == "client_disconnected"
    # The upstream made (and bills) the whole audio: the client's hang-up does not make it free.
    assert record.cost_micro_usd == speech_cost(len(TEXT))
    assert balance(user) == CREDIT - record.cost_micro_usd
    assert not MediaTask.objects.exists()  # only a whole audio is kept


def test_speech_broken_by_the_upstream_is_free_and_cuts_the_client(audio_models, fake_media, prepaid):
    user, raw_key = prepaid
    fake_media.speech_hold_last = threading.Event()

    response = open_speech(raw_key)
    blocks = iter(response.streaming_content)
    assert next(blocks)
    fake_media.reset()  # the upstream drops the connection before its last chunk
    with pytest.raises(SpeechStreamBroken):
        for _ in blocks:
            pass
    close_response(response)

    record = only_record()
    assert (record.status_code, record.error_type, record.cost_micro_usd) == (502, "upstream_stream_broken", 0)
    assert Reservation.objects.get().state == Reservation.State.RELEASED
    assert balance(user) == CREDIT


def test_speech_with_an_idempotency_key_is_not_streamed_twice(client, audio_models, fake_media, prepaid):
    first = post_speech(client, prepaid[1], HTTP_IDEMPOTENCY_KEY="speech-1")
    b"".join(first.streaming_content)
    again = post_speech(client, prepaid[1], HTTP_IDEMPOTENCY_KEY="speech-1")

    assert (first.status_code, again.status_code) == (200, 409)
    assert error_of(again)["code"] == "idempotency_stream_replay"
    assert len(fake_media.requests) == 1 and UsageRecord.objects.count() == 1


def test_speech_to_a_non_openai_upstream_is_503(client, audio_models, fake_media, prepaid):
    audio_models.kind = "gemini"
    audio_models.save()
    from catalog.selectors import catalog_cache_clear

    catalog_cache_clear()
    response = post_speech(client, prepaid[1])

    assert response.status_code == 503
    assert fake_media.requests == []


# --- transcriptions ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "verbose_json", "vtt"])
def test_every_transcription_format_is_priced_by_the_seconds_of_audio(sdk, audio_models, fake_media, prepaid, fmt):
    raw = sdk.audio.transcriptions.with_raw_response.create(
        file=("memo.wav", wav_file(2.5)), model=STT, response_format=fmt, language="EN", temperature=0.2
    )
    answer = raw.parse()

    if fmt == "json":
        assert answer.text == DEFAULT_TRANSCRIPT
        assert answer.usage.cost_micro_usd == transcription_cost(3)  # whisper's usage object carries the cost
    elif fmt == "verbose_json":
        assert (answer.text, answer.duration, answer.language) == (DEFAULT_TRANSCRIPT, 2.5, "english")
    elif fmt == "text":
        assert answer == DEFAULT_TRANSCRIPT + "\n"
    else:
        assert "-->" in answer and "brown fox" in answer
    cost = transcription_cost(3)  # 2.5 s counts as 3 started seconds: 3 x 4250 / 60 = 212.5, rounded up
    assert cost == 213
    assert raw.headers["x-request-cost-micro-usd"] == str(cost)
    record = wait_for_record()
    assert (record.endpoint, record.status_code, record.usage_estimated) == ("audio/transcriptions", 200, False)
    assert (record.media_unit, record.media_units, record.cost_micro_usd) == ("audio_second", 3, cost)
    [sent] = fake_media.requests_to("/v1/audio/transcriptions")
    assert sent.form["model"] == f"upstream-{STT}" and sent.form["response_format"] == fmt
    assert (sent.form["language"], sent.form["temperature"]) == ("en", "0.2")
    assert sent.files[0].data == wav_file(2.5) and sent.files[0].filename == "memo.wav"


def test_transcription_holds_the_measured_length_and_settles_the_upstreams(client, audio_models, fake_media, prepaid):
    user, raw_key = prepaid

    response = post_audio(client, raw_key, wav_file(2.5), response_format="verbose_json")

    assert response.status_code == 200
    assert held_seconds(2.5, 0) == 4  # 2.5 s and a second's margin
    reserve = LedgerEntry.objects.get(user=user, kind="reserve")
    assert reserve.hold_micro_usd == transcription_cost(4)
    settle = LedgerEntry.objects.get(user=user, kind="settle")
    assert settle.amount_micro_usd == -transcription_cost(3)
    assert balance(user) == CREDIT - transcription_cost(3)
    task = MediaTask.objects.get(user=user)
    assert (task.kind, task.status, task.billed, task.cost_micro_usd) == ("transcription", "completed", True, 213)
    [result] = task.results
    with media_open(result["name"]) as stored:
        assert stored.read().decode() == DEFAULT_TRANSCRIPT


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_unmeasurable_audio_is_priced_by_the_upstreams_duration(client, audio_models, fake_media, prepaid, fmt):
    fake_media.audio_duration = 7.2  # what the upstream says of audio that is not WAV

    response = post_audio(client, prepaid[1], WEBM, name="voice.webm", task="translations", response_format=fmt)

    assert response.status_code == 200
    if fmt == "json":
        assert json.loads(response.content) == {"text": DEFAULT_TRANSCRIPT}
    else:
        assert (response.content, response["Content-Type"]) == (
            DEFAULT_TRANSCRIPT.encode() + b"\n",
            "text/plain; charset=utf-8",
        )
    # Asked as verbose_json upstream, for its duration; answered in the client's format.
    assert fake_media.requests[-1].form["response_format"] == "verbose_json"
    record = only_record()
    assert (record.endpoint, record.media_units, record.usage_estimated) == ("audio/translations", 8, False)
    assert record.cost_micro_usd == transcription_cost(8)
    assert LedgerEntry.objects.get(kind="reserve").hold_micro_usd == transcription_cost(math.ceil(len(WEBM) / 750))


def test_without_any_duration_the_subtitles_end_is_an_estimate(client, audio_models, fake_media, prepaid):
    fake_media.audio_duration = 5.0
    fake_media.omit_duration = True

    response = post_audio(client, prepaid[1], WEBM, name="voice.webm", response_format="vtt")

    assert response.status_code == 200
    assert response.content.decode().startswith("WEBVTT")
    record = only_record()
    assert (record.usage_estimated, record.media_units) == (True, 5)
    assert response["X-Request-Cost-Micro-Usd"] == str(transcription_cost(5))


def test_timestamps_go_upstream_with_verbose_json(client, audio_models, fake_media, prepaid):
    response = post_audio(
        client, prepaid[1], response_format="verbose_json", **{"timestamp_granularities[]": ["word", "segment"]}
    )

    assert response.status_code == 200
    assert {"words", "segments"} <= set(json.loads(response.content))
    assert fake_media.requests[-1].form_lists["timestamp_granularities[]"] == ["word", "segment"]


def test_translation_needs_a_model_that_translates(client, audio_models, fake_media, prepaid):
    response = post_audio(client, prepaid[1], model=STT_PLAIN, task="translations")

    assert response.status_code == 400
    assert error_of(response)["param"] == "model"
    assert fake_media.requests == []


@pytest.mark.parametrize(
    ("name", "data", "fields", "param"),
    [
        pytest.param("notes.txt", None, {}, "file", id="text-extension"),
        pytest.param("speech.wav", b"just some text, not audio" * 10, {}, "file", id="not-audio-inside"),
        pytest.param("speech.wav", None, {"response_format": "docx"}, "response_format", id="unknown-format"),
        pytest.param(
            "speech.wav",
            None,
            {"model": STT_PLAIN, "response_format": "srt"},
            "response_format",
            id="format-model-lacks",
        ),
        pytest.param("speech.wav", None, {"language": "english"}, "language", id="language-not-iso-639-1"),
        pytest.param("speech.wav", None, {"temperature": "1.5"}, "temperature", id="temperature-over-1"),
        pytest.param(
            "speech.wav",
            None,
            {"timestamp_granularities[]": "word"},
            "timestamp_granularities[]",
            id="timestamps-without-verbose-json",
        ),
        pytest.param("speech.wav", None, {"stream": "true"}, "stream", id="stream"),
    ],
)
def test_bad_transcription_requests_are_400(client, audio_models, fake_media, prepaid, name, data, fields, param):
    response = post_audio(client, prepaid[1], data or wav_file(), name=name, **fields)

    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == param
    if param == "file":
        assert "flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav, webm" in error["message"]
    assert fake_media.requests == []
    assert UsageRecord.objects.count() == 0


def test_missing_file_is_400(client, audio_models, fake_media, prepaid):
    response = post_audio(client, prepaid[1], data=None)

    assert response.status_code == 400 and error_of(response)["param"] == "file"


class _Unreadable(io.RawIOBase):
    def read(self, *args):
        raise AssertionError("the upload was read")

    readline = readinto = read


def test_upload_over_the_limit_is_413_from_its_length_alone(audio_models, fake_media, prepaid, settings):
    from gateway.middleware import RequestIdMiddleware
    from gateway.views import audio_transcriptions

    limit = settings.BELUGA["TRANSCRIPTION_MAX_BYTES"]
    assert limit == 25 * 1024 * 1024
    request = RequestFactory().generic(
        "POST",
        "/v1/audio/transcriptions",
        content_type="multipart/form-data; boundary=xyz",
        HTTP_AUTHORIZATION=f"Bearer {prepaid[1]}",
    )
    request.META["CONTENT_LENGTH"] = str(limit + 1024 * 1024)
    request.META["wsgi.input"] = _Unreadable()
    request._stream = _Unreadable()

    response = RequestIdMiddleware(audio_transcriptions)(request)

    assert response.status_code == 413
    error = error_of(response)
    assert (error["code"], error["param"]) == ("request_too_large", "file")
    assert "26214400 bytes (25 MB)" in error["message"]
    assert fake_media.requests == [] and UsageRecord.objects.count() == 0


def test_chunked_upload_without_a_length_is_411(audio_models, fake_media, prepaid):
    from gateway.middleware import RequestIdMiddleware
    from gateway.views import audio_transcriptions

    request = RequestFactory().generic(
        "POST",
        "/v1/audio/transcriptions",
        content_type="multipart/form-data; boundary=xyz",
        HTTP_AUTHORIZATION=f"Bearer {prepaid[1]}",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    request.META.pop("CONTENT_LENGTH", None)

    response = RequestIdMiddleware(audio_transcriptions)(request)

    assert response.status_code == 411 and error_of(response)["code"] == "length_required"


def test_upload_over_the_limit_is_refused_before_it_is_sent(live_api, audio_models, fake_media, prepaid, settings):
    """Over a real socket: the 413 arrives while the client has sent the headers and nothing of the file."""
    settings.BELUGA = {**settings.BELUGA, "TRANSCRIPTION_MAX_BYTES": 1024 * 1024}
    url = urlsplit(live_api)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        head = [
            "POST /v1/audio/transcriptions HTTP/1.1",
            f"Host: {url.netloc}",
            f"Authorization: Bearer {prepaid[1]}",
            "Content-Type: multipart/form-data; boundary=xyz",
            f"Content-Length: {2 * 1024 * 1024}",
        ]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            answer += data

    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request_too_large" in answer
    assert fake_media.requests == []


def test_file_over_the_limit_inside_the_forms_allowance_is_stopped_while_read(
    client, audio_models, fake_media, prepaid, settings
):
    settings.BELUGA = {**settings.BELUGA, "TRANSCRIPTION_MAX_BYTES": 20_000}

    response = post_audio(client, prepaid[1], wav_file(2.0))  # 32 KB: within the 64 KB of form overhead

    assert response.status_code == 413
    assert fake_media.requests == []


def test_files_do_not_count_against_the_form_data_limit(client, audio_models, fake_media, prepaid, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000

    response = post_audio(client, prepaid[1], wav_file(2.0))  # 32 KB of file

    assert response.status_code == 200
    assert fake_media.requests[-1].files[0].size == len(wav_file(2.0))


def test_transcription_upstream_error_is_relayed_at_no_cost(client, audio_models, fake_media, prepaid):
    user, raw_key = prepaid
    fake_media.fail_next("/v1/audio/transcriptions", status=429, headers={"Retry-After": "2"})

    response = post_audio(client, raw_key)

    assert response.status_code == 429
    assert response["Retry-After"] == "2"
    record = only_record()
    assert (record.status_code, record.cost_micro_usd) == (429, 0)
    assert Reservation.objects.get().state == Reservation.State.RELEASED
    assert balance(user) == CREDIT
