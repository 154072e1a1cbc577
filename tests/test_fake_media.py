"""The fake media upstream speaks OpenAI's and Replicate's wire formats, and fails when told to."""

import base64
import io
import struct
import threading
import time
import wave
import zlib

import pytest
import requests

from tests.fake_media import mp4_bytes, png_bytes, wav_bytes

AUTH = {"Authorization": "Bearer sk-upstream-test"}


def post(fake, path, **kwargs):
    return requests.post(fake.api_url + path, headers=AUTH | kwargs.pop("headers", {}), timeout=5, **kwargs)


def get(fake, path, **kwargs):
    return requests.get(fake.api_url + path, headers=AUTH, timeout=5, **kwargs)


def decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and raw rows of a PNG, checking each chunk's CRC on the way."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    return width, height, zlib.decompress(chunks[b"IDAT"])


def test_png_helper_is_a_valid_image():
    width, height, rows = decode_png(png_bytes((1, 2, 3)))
    assert (width, height) == (4, 4)
    assert rows == (b"\x00" + b"\x01\x02\x03" * 4) * 4
    assert mp4_bytes()[:12] == b"\x00\x00\x00\x18ftypmp42"


def test_image_generation_answers_b64_for_gpt_image_and_url_for_dall_e(fake_media):
    r = post(fake_media, "/images/generations", json={"model": "gpt-image-1", "prompt": "a red fox", "n": 2})
    assert r.status_code == 200
    body = r.json()
    assert [set(item) for item in body["data"]] == [{"b64_json"}, {"b64_json"}]
    assert base64.b64decode(body["data"][0]["b64_json"]) == png_bytes()
    assert body["usage"] == {
        "input_tokens": 3,
        "output_tokens": 2 * 1056,
        "total_tokens": 3 + 2 * 1056,
        "input_tokens_details": {"text_tokens": 3, "image_tokens": 0},
    }

    r = post(fake_media, "/images/generations", json={"model": "dall-e-3", "prompt": "a red fox"})
    (item,) = r.json()["data"]
    assert set(item) == {"url", "revised_prompt"} and "usage" not in r.json()
    image = requests.get(item["url"], timeout=5)
    assert image.headers["Content-Type"] == "image/png"
    assert image.content == png_bytes()
    assert fake_media.requests[-1].route.startswith("/files/")


def test_image_edit_multipart_is_parsed(fake_media):
    files = [
        ("image[]", ("a.png", png_bytes((255, 0, 0)), "image/png")),
        ("image[]", ("b.png", png_bytes((0, 0, 255)), "image/png")),
        ("mask", ("mask.png", b"\r\n--not-a-boundary\r\n", "image/png")),
    ]
    data = {"model": "gpt-image-1", "prompt": "make it snow", "n": "1", "size": "1024x1536"}
    r = post(fake_media, "/images/edits", files=files, data=data)
    assert r.status_code == 200
    assert r.json()["usage"]["input_tokens_details"]["image_tokens"] == 2 * 194
    assert r.json()["size"] == "1024x1536"

    received = fake_media.requests[-1]
    assert received.form == data
    assert [(f.field, f.filename, f.content_type, f.size) for f in received.files] == [
        ("image[]", "a.png", "image/png", len(png_bytes())),
        ("image[]", "b.png", "image/png", len(png_bytes())),
        ("mask", "mask.png", "image/png", 20),
    ]
    assert received.files[1].data == png_bytes((0, 0, 255))
    assert received.files[2].data == b"\r\n--not-a-boundary\r\n"


def test_video_job_progresses_then_serves_mp4_and_deletes(fake_media):
    r = post(fake_media, "/videos", json={"model": "sora-2", "prompt": "a cat", "seconds": "8", "size": "1280x720"})
    assert r.status_code == 200
    video = r.json()
    assert video["id"].startswith("video_")
    assert (video["object"], video["status"], video["progress"], video["seconds"]) == ("video", "queued", 0, "8")
    assert video["completed_at"] is None and video["error"] is None
    assert get(fake_media, f"/videos/{video['id']}/content").status_code == 404

    polled = [get(fake_media, f"/videos/{video['id']}").json() for _ in range(3)]
    assert [(v["status"], v["progress"]) for v in polled] == [
        ("in_progress", 33),
        ("in_progress", 66),
        ("completed", 100),
    ]
    assert polled[-1]["completed_at"] >= video["created_at"]

    content = get(fake_media, f"/videos/{video['id']}/content")
    assert content.headers["Content-Type"] == "video/mp4" and content.content == mp4_bytes()

    deleted = requests.delete(fake_media.api_url + f"/videos/{video['id']}", headers=AUTH, timeout=5)
    assert deleted.json() == {"id": video["id"], "object": "video.deleted", "deleted": True}
    missing = get(fake_media, f"/videos/{video['id']}")
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}


def test_video_scripted_to_fail_ends_with_an_error(fake_media):
    fake_media.script_video("fail")
    fake_media.video_polls_to_complete = 1
    video = post(
        fake_media, "/videos", files={"input_reference": ("ref.png", png_bytes(), "image/png")}, data={"prompt": "x"}
    ).json()
    assert fake_media.requests[-1].files[0].filename == "ref.png"
    failed = get(fake_media, f"/videos/{video['id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "code": "moderation_blocked",
        "message": "Your request was blocked by our moderation system.",
    }


def test_video_seconds_must_be_a_string_as_upstream(fake_media):
    r = post(fake_media, "/videos", json={"prompt": "a cat", "seconds": 4})
    assert r.status_code == 400 and r.json()["error"]["param"] == "seconds"


def test_prediction_progresses_to_output_files(fake_media):
    r = post(fake_media, "/models/acme/flux/predictions", json={"input": {"prompt": "a fox", "num_outputs": 2}})
    assert r.status_code == 201
    created = r.json()
    assert created["status"] == "starting" and created["model"] == "acme/flux" and created["output"] is None
    assert created["urls"]["get"] == f"{fake_media.api_url}/predictions/{created['id']}"
    assert fake_media.requests[-1].headers["authorization"] == AUTH["Authorization"]

    first, second = (get(fake_media, f"/predictions/{created['id']}").json() for _ in range(2))
    assert first["status"] == "processing"
    assert second["status"] == "succeeded" and second["metrics"]["predict_time"] > 0
    assert len(second["output"]) == 2
    assert requests.get(second["output"][1], timeout=5).content == png_bytes()

    video = post(
        fake_media, "/predictions", json={"version": "acme/text-to-video:abc123", "input": {"prompt": "x"}}
    ).json()
    fake_media.prediction_polls_to_complete = 1
    done = get(fake_media, f"/predictions/{video['id']}").json()
    assert (done["model"], done["version"]) == ("acme/text-to-video", "abc123")
    assert (
        isinstance(done["output"], str)
        and requests.get(done["output"], timeout=5).headers["Content-Type"] == "video/mp4"
    )


def test_prediction_cancel_and_scripted_failures(fake_media):
    fake_media.script_prediction("never", model="acme/slow")
    fake_media.script_prediction("bad_output", model="acme/bad")
    slow = post(fake_media, "/models/acme/slow/predictions", json={"input": {}}).json()
    for _ in range(3):
        assert get(fake_media, f"/predictions/{slow['id']}").json()["status"] == "processing"
    canceled = post(fake_media, f"/predictions/{slow['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"

    fake_media.prediction_polls_to_complete = 1
    bad = post(fake_media, "/models/acme/bad/predictions", json={"input": {}}).json()
    output = get(fake_media, f"/predictions/{bad['id']}").json()["output"][0]
    assert requests.get(output, timeout=5).headers["Content-Type"].startswith("text/html")

    fake_media.script_prediction("fail", error="boom")
    failed = post(fake_media, "/models/acme/other/predictions", json={"input": {}}).json()
    failed = get(fake_media, f"/predictions/{failed['id']}").json()
    assert (failed["status"], failed["error"], failed["output"]) == ("failed", "boom", None)


def test_speech_streams_chunks_and_holds_the_last_one(fake_media):
    fake_media.speech_hold_last = threading.Event()
    expected = fake_media.speech_bytes("mp3")
    assert expected[:3] == b"ID3"
    r = post(
        fake_media,
        "/audio/speech",
        json={"model": "gpt-4o-mini-tts", "input": "Hi there", "voice": "alloy"},
        stream=True,
    )
    assert r.headers["Content-Type"] == "audio/mpeg" and r.headers["Transfer-Encoding"] == "chunked"

    chunks = r.iter_content(chunk_size=None)
    received = b""
    while len(received) < len(expected) - len(expected) // 5:  # every chunk but the last, while the upstream waits
        received += next(chunks)
    assert not fake_media.requests[-1].completed
    fake_media.speech_hold_last.set()
    received += b"".join(chunks)
    assert received == expected
    deadline = time.monotonic() + 2  # the server marks the body complete just after its last write
    while not fake_media.requests[-1].completed and time.monotonic() < deadline:
        time.sleep(0.005)
    assert fake_media.requests[-1].chunks_sent == 5 and fake_media.requests[-1].completed


def test_speech_wav_is_a_real_riff_file(fake_media):
    r = post(
        fake_media, "/audio/speech", json={"model": "tts-1", "input": "Hi", "voice": "alloy", "response_format": "wav"}
    )
    assert r.headers["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(r.content)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (24000, 2, 1)


def transcribe(fake, audio: bytes, path="/audio/transcriptions", **fields):
    data = {"model": "whisper-1", **fields}
    return post(fake, path, files={"file": ("speech.wav", audio, "audio/wav")}, data=data)


def test_transcription_formats_follow_openai(fake_media):
    audio = wav_bytes(2.5)
    assert transcribe(fake_media, audio).json() == {
        "text": fake_media.transcript_text,
        "usage": {"type": "duration", "seconds": 3},
    }
    text = transcribe(fake_media, audio, response_format="text")
    assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text.text == fake_media.transcript_text + "\n"
    srt = transcribe(fake_media, audio, response_format="srt").text
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,") and srt.rstrip().endswith("forest.")
    vtt = transcribe(fake_media, audio, response_format="vtt").text
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ") and "--> 00:00:02.500\n" in vtt

    verbose = transcribe(
        fake_media, audio, response_format="verbose_json", **{"timestamp_granularities[]": ["word", "segment"]}
    ).json()
    assert (verbose["task"], verbose["language"], verbose["duration"]) == ("transcribe", "english", 2.5)
    assert [s["text"] for s in verbose["segments"]] == [
        " The quick brown fox jumps over the lazy dog.",
        " Then it runs into the quiet forest.",
    ]
    assert verbose["segments"][-1]["end"] == 2.5
    assert verbose["words"][0] == {"word": "The", "start": 0.0, "end": 0.16}
    assert fake_media.requests[-1].form_lists["timestamp_granularities[]"] == ["word", "segment"]

    translated = transcribe(fake_media, b"not a wav", path="/audio/translations", response_format="verbose_json").json()
    assert (translated["task"], translated["duration"]) == ("translate", 3.0) and "words" not in translated

    fake_media.omit_duration = True
    assert "duration" not in transcribe(fake_media, audio, response_format="verbose_json").json()


def test_fail_next_answers_in_each_providers_error_shape(fake_media):
    fake_media.fail_next("/v1/images", status=429, headers={"Retry-After": "2"})
    fake_media.fail_next("/v1/predictions", status=503, times=2)
    r = post(fake_media, "/images/generations", json={"prompt": "x"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert post(fake_media, "/images/generations", json={"prompt": "x"}).status_code == 200

    for _ in range(2):
        r = post(fake_media, "/predictions", json={"version": "a/b:c", "input": {}})
        assert r.status_code == 503 and r.headers["Content-Type"] == "application/problem+json"
        assert r.json() == {"title": "Service unavailable", "detail": "Service unavailable", "status": 503}
    assert post(fake_media, "/predictions", json={"version": "a/b:c", "input": {}}).status_code == 201
    assert fake_media.get_count("/v1/predictions") == 3

    assert requests.post(fake_media.api_url + "/predictions", json={"input": {}}, timeout=5).status_code == 401


def test_reset_next_and_timeout_next(fake_media):
    fake_media.reset_next("/v1/audio")
    with pytest.raises(requests.ConnectionError):
        post(fake_media, "/audio/speech", json={"model": "tts-1", "input": "Hi", "voice": "alloy"})

    fake_media.timeout_next("/v1/videos", seconds=30)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.post(fake_media.api_url + "/videos", json={"prompt": "x"}, headers=AUTH, timeout=0.2)
    fake_media.reset()  # ends the held handler now instead of 30 s later
    assert time.monotonic() - started < 2


def test_file_overrides_serve_wrong_type_huge_and_slow_files(fake_media):
    url = post(fake_media, "/images/generations", json={"model": "dall-e-2", "prompt": "x"}).json()["data"][0]["url"]
    fake_media.override_files(".png", content_type="text/html", body=b"<html>nope</html>")
    r = requests.get(url, timeout=5)
    assert (r.headers["Content-Type"], r.content) == ("text/html", b"<html>nope</html>")

    fake_media.override_files(".png", size=3 * 1024 * 1024)
    r = requests.get(url, timeout=5)
    assert int(r.headers["Content-Length"]) == len(r.content) == 3 * 1024 * 1024
    assert r.content.startswith(png_bytes()[:8])

    fake_media.override_files(".png", drip_delay=0.05, chunk_size=16, declare_length=False)
    started = time.monotonic()
    r = requests.get(url, timeout=5)
    assert r.content == png_bytes() and time.monotonic() - started > 0.1
    assert "Content-Length" not in r.headers
