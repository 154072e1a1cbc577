"""Generated media: kept in storage, served under signed expiring links, downloaded from upstreams safely.

Storage tests use a FileSystemStorage in tmp_path and Django's test client; fetch tests use real
HTTP servers on 127.0.0.1 (one plays the upstream, the other a third-party host).
"""

from __future__ import annotations

import base64
import io
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import signing
from django.core.files.storage import default_storage
from django.test import RequestFactory

from gateway.media.fetch import MediaFetchError, media_fetch, media_from_base64
from gateway.media.storage import StoredFile, media_delete, media_open, media_save, media_url

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(40)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(40)
GIF = b"GIF89a" + bytes(40)
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(300)
MOV = b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + bytes(40)
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + bytes(40)
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(40)
MP3_ID3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(40)
MP3_FRAME = b"\xff\xfb\x90\x00" + bytes(40)
AAC = b"\xff\xf1\x50\x80\x02\x1f\xfc" + bytes(40)
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)
FLAC = b"fLaC\x00\x00\x00\x22" + bytes(40)
OPUS = b"OggS\x00\x02" + bytes(22) + b"OpusHead\x01\x01" + bytes(30)
VORBIS = b"OggS\x00\x02" + bytes(22) + b"\x01vorbis" + bytes(30)
HTML = b"<!doctype html><title>not media</title>"
SAMPLES = {"png": PNG, "mp4": MP4, "html": HTML}

DRIP_INTERVAL = 0.05


# --- Storage and signed links ------------------------------------------------------------------


@pytest.fixture
def media_root(settings, tmp_path):
    """The default storage is a FileSystemStorage in tmp_path (changing STORAGES resets default_storage)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": tmp_path}},
    }
    return tmp_path


@pytest.fixture
def beluga(settings):
    def configure(**values) -> None:
        settings.BELUGA = {**settings.BELUGA, **values}

    return configure


def link_path(name: str) -> str:
    return urlsplit(media_url(name=name)).path


def signed_long_ago(name: str, seconds: int) -> str:
    """A token for `name` as media_url would have made it `seconds` ago."""

    class Signer(signing.TimestampSigner):
        def timestamp(self) -> str:
            return signing.b62_encode(int(time.time()) - seconds)

    return Signer(salt="beluga.media").sign_object({"n": name})


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return body["error"]


def test_changing_storages_points_default_storage_at_the_new_location(media_root):
    assert default_storage.location == str(media_root)


def test_saved_bytes_get_a_dated_unique_name_with_the_type_extension(media_root):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    assert re.fullmatch(r"images/\d{4}/\d{2}/[0-9a-f]{32}\.png", stored.name)
    assert stored == StoredFile(name=stored.name, content_type="image/png", size=len(PNG))
    assert (media_root / stored.name).read_bytes() == PNG


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("image/jpeg", ".jpg"),
        ("image/jpg", ".jpg"),
        ("video/quicktime", ".mov"),
        ("audio/mpeg", ".mp3"),
        ("audio/wav; rate=24000", ".wav"),
        ("audio/pcm", ".pcm"),
        ("application/x-unknown", ".bin"),
    ],
)
def test_the_extension_follows_the_content_type(media_root, content_type, extension):
    assert media_save(data=b"x", content_type=content_type, prefix="p").name.endswith(extension)


def test_a_file_object_is_streamed_into_storage_in_chunks(media_root):
    class NoWholeReads(io.BytesIO):
        def read(self, size=-1):
            assert size is not None and size > 0, "read the whole file at once"
            return super().read(size)

    data = MP4 * 1000
    stored = media_save(data=NoWholeReads(data), content_type="video/mp4", prefix="videos")

    assert stored.size == len(data)
    assert (media_root / stored.name).read_bytes() == data


def test_a_spooled_download_is_saved_whole(media_root):
    spooled = tempfile.SpooledTemporaryFile(max_size=1024)
    spooled.write(MP4 * 100)  # past max_size: on disk
    spooled.seek(0)

    stored = media_save(data=spooled, content_type="video/mp4", prefix="videos")

    spooled.close()
    assert stored.size == len(MP4) * 100
    with media_open(stored.name) as file:
        assert file.read() == MP4 * 100


def test_link_is_absolute_from_the_request_and_its_token_is_one_path_segment(media_root):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    url = media_url(name=stored.name, request=RequestFactory().get("/v1/images/tasks/x"))

    assert url.startswith("http://testserver/v1/media/")
    token = url.removeprefix("http://testserver/v1/media/")
    assert re.fullmatch(r"[A-Za-z0-9_\-:.]+", token)
    assert stored.name not in url


def test_link_without_a_request_uses_the_public_base_url_or_stays_relative(media_root, beluga):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    assert media_url(name=stored.name).startswith("/v1/media/")
    beluga(PUBLIC_BASE_URL="https://beluga.example/")
    assert media_url(name=stored.name).startswith("https://beluga.example/v1/media/")


def test_signed_link_serves_the_file_with_its_type_inline(media_root, client):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    response = client.get(link_path(stored.name))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["Content-Length"] == str(len(PNG))
    assert response["Content-Disposition"] == f'inline; filename="{stored.name.rsplit("/", 1)[1]}"'
    assert response["Accept-Ranges"] == "bytes"
    assert response["X-Request-Id"]


@pytest.mark.parametrize(
    ("content_type", "data"),
    [("video/mp4", MP4), ("video/webm", WEBM), ("audio/mpeg", MP3_ID3), ("audio/opus", OPUS), ("audio/wav", WAV)],
)
def test_audio_and_video_are_served_with_their_types(media_root, client, content_type, data):
    stored = media_save(data=data, content_type=content_type, prefix="media")

    response = client.get(link_path(stored.name))
    # Read to the end: the test client then closes the file without request_finished's connection
    # check, which a database connection left open by an earlier test in this thread would trip.
    assert b"".join(response.streaming_content) == data

    assert response["Content-Type"] == content_type


def test_link_is_also_served_under_api_v1(media_root, client):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    response = client.get("/api" + link_path(stored.name))

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG


def test_cache_lifetime_is_what_is_left_of_the_link(media_root, client, beluga):
    beluga(MEDIA_URL_TTL_SECONDS=600)
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    response = client.get(f"/v1/media/{signed_long_ago(stored.name, 100)}")
    assert b"".join(response.streaming_content) == PNG  # read to the end (see above)

    assert response.status_code == 200
    max_age = int(response["Cache-Control"].removeprefix("private, max-age="))
    assert 498 <= max_age <= 500


def test_tampered_token_is_404_media_not_found_in_openai_shape(media_root, client):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")
    other = media_save(data=GIF, content_type="image/gif", prefix="images")
    token = link_path(stored.name).rsplit("/", 1)[1]
    payload, timestamp, signature = token.split(":")
    forged = signing.b64_encode(f'{{"n":"{other.name}"}}'.encode()).decode()

    for bad in (f"{forged}:{timestamp}:{signature}", token[:-2], "nonsense"):
        response = client.get(f"/v1/media/{bad}")

        assert response.status_code == 404
        assert error_of(response)["code"] == "media_not_found"
        assert response["X-Request-Id"].startswith("req_")


def test_expired_link_is_404_media_link_expired(media_root, client, beluga):
    beluga(MEDIA_URL_TTL_SECONDS=60)
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    response = client.get(f"/v1/media/{signed_long_ago(stored.name, 61)}")

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "media_link_expired"
    assert "again" in error["message"]
    assert response["X-Request-Id"]


def test_link_to_a_deleted_file_is_404_media_not_found(media_root, client):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")
    path = link_path(stored.name)
    media_delete(stored.name)

    for method in (client.get, client.head):
        response = method(path)
        assert response.status_code == 404
    assert error_of(client.get(path))["code"] == "media_not_found"
    with pytest.raises(FileNotFoundError):
        media_open(stored.name)


def test_range_request_gets_206_with_the_slice(media_root, client):
    data = bytes(range(256)) * 4
    stored = media_save(data=data, content_type="video/mp4", prefix="videos")
    path = link_path(stored.name)

    for header, start, end in [
        ("bytes=10-19", 10, 19),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-4", 1020, 1023),
        ("bytes=1020-5000", 1020, 1023),
    ]:
        response = client.get(path, headers={"Range": header})

        assert response.status_code == 206, header
        assert b"".join(response.streaming_content) == data[start : end + 1]
        assert response["Content-Range"] == f"bytes {start}-{end}/1024"
        assert response["Content-Length"] == str(end - start + 1)
        assert response["Content-Type"] == "video/mp4"


def test_range_past_the_end_is_416_and_odd_ranges_get_the_whole_file(media_root, client):
    stored = media_save(data=MP4, content_type="video/mp4", prefix="videos")
    path = link_path(stored.name)

    response = client.get(path, headers={"Range": f"bytes={len(MP4)}-"})
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(MP4)}"
    assert error_of(response)["code"] == "range_not_satisfiable"

    for header in ("bytes=0-1,4-5", "items=0-1", "bytes=9-2"):
        response = client.get(path, headers={"Range": header})
        assert response.status_code == 200, header
        assert b"".join(response.streaming_content) == MP4


def test_head_answers_headers_without_the_body(media_root, client):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    response = client.head(link_path(stored.name))

    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Length"] == str(len(PNG))
    assert response["Content-Type"] == "image/png"


def test_other_methods_are_405(media_root, client):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    response = client.post(link_path(stored.name))

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"


# --- Downloading upstream results ---------------------------------------------------------------


class MediaServer:
    """Each path misbehaves in one way; every request is recorded with its headers."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="media-server", daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self._server.server_address[1]}{path}"

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner: MediaServer = self.server.owner
        owner.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        self.close_connection = True
        url = urlsplit(self.path)
        route, _, rest = url.path.strip("/").partition("/")
        if route == "file":  # /file/<sample>
            self._send(200, SAMPLES[rest], "application/octet-stream")
        elif route == "status":
            self._send(int(rest), b"nope", "text/plain")
        elif route == "redirect":
            self._send(302, b"", "text/plain", {"Location": parse_qs(url.query)["to"][0]})
        elif route == "loop":
            self._send(302, b"", "text/plain", {"Location": "/loop"})
        elif route == "claims-big":
            self._send(200, PNG, "image/png", {"Content-Length": str(10**9)})
        elif route == "truncated":
            self._send(200, PNG, "image/png", {"Content-Length": str(len(PNG) + 1000)})
        elif route == "endless":  # a PNG that never ends, without a Content-Length
            self._start_close_delimited()
            self._stream(PNG + bytes(64 * 1024 - len(PNG)), then=bytes(64 * 1024), interval=0)
        elif route == "drip":  # a PNG, then a byte now and then: each read is quick, the whole is not
            self._start_close_delimited()
            self._stream(PNG, then=b"a", interval=DRIP_INTERVAL)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _start_close_delimited(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Connection", "close")
        self.end_headers()

    def _stream(self, first: bytes, *, then: bytes, interval: float) -> None:
        owner: MediaServer = self.server.owner
        try:
            self.wfile.write(first)
            for _ in range(100_000):
                if owner.stopping.wait(interval):
                    return
                self.wfile.write(then)
                self.wfile.flush()
        except OSError:
            return  # the client hung up


@pytest.fixture(scope="module")
def upstream():
    server = MediaServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def third_party():
    """Another host:port than the upstream's, on a private address like any test server."""
    server = MediaServer()
    yield server
    server.stop()


@pytest.fixture
def servers(upstream, third_party):
    upstream.requests.clear()
    third_party.requests.clear()
    return upstream, third_party


def fetch_refusal(url: str, **kwargs) -> str:
    kwargs.setdefault("kind", "image")
    with pytest.raises(MediaFetchError) as caught:
        media_fetch(url, **kwargs)
    message = str(caught.value)
    assert "127.0.0.1" not in message and "localhost" not in message, "the message names a host"
    return message


def test_png_on_the_upstreams_own_private_host_is_downloaded(servers, beluga):
    upstream, _ = servers
    beluga(IMAGE_FETCH_ALLOW_PRIVATE=False)

    fetched = media_fetch(upstream.url("/file/png"), kind="image", upstream_base_url=upstream.base_url + "/v1")

    with fetched.file:
        assert (fetched.content_type, fetched.size, fetched.file.read()) == ("image/png", len(PNG), PNG)
    assert upstream.requests[-1]["headers"]["user-agent"] == "Beluga media fetcher"


def test_video_is_typed_by_its_bytes_not_its_headers(servers):
    upstream, _ = servers

    fetched = media_fetch(upstream.url("/file/mp4"), kind="video", upstream_base_url=upstream.base_url)

    with fetched.file:
        assert (fetched.content_type, fetched.file.read()) == ("video/mp4", MP4)


def test_a_file_of_another_kind_is_refused(servers):
    upstream, _ = servers

    assert fetch_refusal(upstream.url("/file/html"), upstream_base_url=upstream.base_url) == (
        "the provider returned a file that is not an image"
    )
    assert fetch_refusal(upstream.url("/file/png"), kind="video", upstream_base_url=upstream.base_url) == (
        "the provider returned a file that is not a video"
    )


def test_a_size_declared_too_big_is_refused_before_reading(servers):
    upstream, _ = servers

    message = fetch_refusal(upstream.url("/claims-big"), upstream_base_url=upstream.base_url, max_bytes=1024 * 1024)

    assert message == "the provider's image is larger than 1 MB"


def test_a_body_past_the_limit_is_cut_off_while_streaming(servers):
    upstream, _ = servers
    started = time.monotonic()

    # The body never ends: only stopping at the limit can finish this, and well before the deadline.
    message = fetch_refusal(
        upstream.url("/endless"), upstream_base_url=upstream.base_url, max_bytes=1024 * 1024, timeout=10
    )

    assert message == "the provider's image is larger than 1 MB"
    assert time.monotonic() - started < 5


def test_slow_drip_hits_the_total_time_limit(servers):
    upstream, _ = servers
    started = time.monotonic()

    message = fetch_refusal(upstream.url("/drip"), upstream_base_url=upstream.base_url, timeout=0.5)

    assert message == "could not download the provider's image: timed out"
    assert time.monotonic() - started < 3


def test_a_body_shorter_than_its_length_is_refused(servers):
    upstream, _ = servers

    message = fetch_refusal(upstream.url("/truncated"), upstream_base_url=upstream.base_url)

    assert message == "could not download the provider's image: the connection closed early"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_private_host_other_than_the_upstreams_is_refused(servers, beluga, host):
    upstream, third_party = servers
    beluga(IMAGE_FETCH_ALLOW_PRIVATE=False)

    message = fetch_refusal(third_party.url("/file/png", host=host), upstream_base_url=upstream.base_url)

    assert message == "the provider's image URL points to a private address"
    assert third_party.requests == []


def test_a_redirect_from_the_upstream_to_a_private_host_is_refused(servers, beluga):
    upstream, third_party = servers
    beluga(IMAGE_FETCH_ALLOW_PRIVATE=False)

    url = upstream.url(f"/redirect?to={third_party.url('/file/png')}")
    message = fetch_refusal(url, upstream_base_url=upstream.base_url)

    assert message == "the provider's image URL points to a private address"
    assert third_party.requests == []


def test_private_hosts_are_allowed_when_the_operator_says_so(servers, beluga):
    upstream, third_party = servers
    beluga(IMAGE_FETCH_ALLOW_PRIVATE=True)

    fetched = media_fetch(third_party.url("/file/png"), kind="image", upstream_base_url=upstream.base_url)
    fetched.file.close()

    assert fetched.content_type == "image/png"


def test_authorization_goes_to_the_upstream_and_not_past_a_redirect_to_another_host(servers, beluga):
    upstream, third_party = servers
    beluga(IMAGE_FETCH_ALLOW_PRIVATE=True)
    back_home = upstream.url("/file/png")
    away = third_party.url(f"/redirect?to={back_home}")

    fetched = media_fetch(
        upstream.url(f"/redirect?to={away}"),
        kind="image",
        upstream_base_url=upstream.base_url,
        headers={"Authorization": "Bearer sk-upstream"},
    )
    fetched.file.close()

    assert fetched.content_type == "image/png"
    first, home_again = upstream.requests
    assert first["headers"]["authorization"] == "Bearer sk-upstream"
    assert "authorization" not in third_party.requests[0]["headers"]
    # Once a redirect left the upstream, a hop back to it is not trusted with the key either.
    assert "authorization" not in home_again["headers"]


def test_authorization_is_never_sent_to_a_third_party_url(servers, beluga):
    upstream, third_party = servers
    beluga(IMAGE_FETCH_ALLOW_PRIVATE=True)

    media_fetch(
        third_party.url("/file/png"),
        kind="image",
        upstream_base_url=upstream.base_url,
        headers={"Authorization": "Bearer sk-upstream"},
    ).file.close()

    assert "authorization" not in third_party.requests[0]["headers"]


def test_more_than_three_redirects_are_refused(servers):
    upstream, _ = servers

    assert fetch_refusal(upstream.url("/loop"), upstream_base_url=upstream.base_url) == (
        "could not download the provider's image: more than 3 redirects"
    )
    assert len(upstream.requests) == 4


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/file.png", "the provider's image URL must use http or https"),
        ("http://user:secret@127.0.0.1/file.png", "the provider's image URL must not contain a user name or password"),
        ("http:///nohost", "the provider's image URL is not a valid URL"),
    ],
)
def test_urls_that_are_not_plain_http_are_refused(url, message):
    assert fetch_refusal(url, upstream_base_url="http://127.0.0.1") == message


def test_an_upstream_error_status_is_reported_by_its_code(servers):
    upstream, _ = servers

    assert fetch_refusal(upstream.url("/status/403"), upstream_base_url=upstream.base_url) == (
        "could not download the provider's image: HTTP 403"
    )


# --- Inline (base64) results ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "data", "content_type"),
    [
        ("image", PNG, "image/png"),
        ("image", JPEG, "image/jpeg"),
        ("image", WEBP, "image/webp"),
        ("image", GIF, "image/gif"),
        ("video", MP4, "video/mp4"),
        ("video", MOV, "video/quicktime"),
        ("video", WEBM, "video/webm"),
        ("audio", MP3_ID3, "audio/mpeg"),
        ("audio", MP3_FRAME, "audio/mpeg"),
        ("audio", AAC, "audio/aac"),
        ("audio", WAV, "audio/wav"),
        ("audio", FLAC, "audio/flac"),
        ("audio", OPUS, "audio/opus"),
        ("audio", VORBIS, "audio/ogg"),
    ],
)
def test_base64_results_are_decoded_and_typed_by_their_bytes(kind, data, content_type):
    fetched = media_from_base64(base64.b64encode(data).decode(), kind=kind)

    with fetched.file:
        assert (fetched.content_type, fetched.size, fetched.file.read()) == (content_type, len(data), data)


def test_a_base64_data_url_with_wrapped_lines_is_decoded():
    text = base64.encodebytes(PNG).decode()  # 76-character lines

    fetched = media_from_base64(f"data:image/png;base64,{text}", kind="image")

    with fetched.file:
        assert fetched.file.read() == PNG


@pytest.mark.parametrize(
    ("kind", "data", "message"),
    [
        ("image", HTML, "the provider returned a file that is not an image"),
        ("video", HEIC, "the provider returned a file that is not a video"),
        ("audio", PNG, "the provider returned a file that is not audio"),
    ],
)
def test_base64_of_another_kind_is_refused(kind, data, message):
    with pytest.raises(MediaFetchError, match=message):
        media_from_base64(base64.b64encode(data).decode(), kind=kind)


def test_invalid_or_oversized_base64_is_refused():
    with pytest.raises(MediaFetchError, match="invalid base64"):
        media_from_base64("not base64!", kind="image")
    with pytest.raises(MediaFetchError, match="larger than 100 bytes"):
        media_from_base64(base64.b64encode(PNG).decode(), kind="image", max_bytes=100)
