"""Fetching customers' image URLs: real HTTP(S) on 127.0.0.1, and the SSRF rules around it."""

from __future__ import annotations

import base64
import datetime
import gzip
import ipaddress
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.errors import InvalidRequest
from gateway.providers.image_fetch import FetchPolicy, address_is_public, fetch_image, parse_data_url

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(40)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(40)
GIF = b"GIF89a" + bytes(40)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(40)
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(40)
AVIF = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(40)
HTML = b"<!doctype html><title>not an image</title>"

DRIP_INTERVAL = 0.05


class ImageServer:
    """A small server whose paths each misbehave in one way; it records every connection and request."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict] = []
        self.connections = 0
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, name="image-server", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def reset(self) -> None:
        self.requests.clear()
        self.connections = 0

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    owner: ImageServer

    def verify_request(self, request, client_address) -> bool:
        self.owner.connections += 1
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        owner: ImageServer = self.server.owner
        owner.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        self.close_connection = True
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        route = parts[0]
        if route == "image":  # /image/<kind>[/<content type>]: bytes of one kind under any (or no) type
            kind = parts[1]
            content_type = "/".join(parts[2:4]) if len(parts) > 2 else None
            body = {"png": PNG, "jpeg": JPEG, "gif": GIF, "webp": WEBP, "heic": HEIC, "avif": AVIF, "html": HTML}[kind]
            self._send(200, body, content_type)
        elif route == "gzip":
            self._send(200, gzip.compress(PNG), "image/png", {"Content-Encoding": "gzip"})
        elif route == "status":
            self._send(int(parts[1]), b"nope", "text/plain")
        elif route == "hop":  # /hop/N: N relative redirects, then an absolute one to the PNG
            left = int(parts[1])
            location = (
                f"/hop/{left - 1}" if left > 1 else f"{owner.scheme}://127.0.0.1:{owner.port}/image/png/image/png"
            )
            self._send(302 if left % 2 else 301, b"", None, {"Location": location})
        elif route == "redirect":
            self._send(307, b"", None, {"Location": parse_qs(url.query)["to"][0]})
        elif route == "sized":  # a PNG padded to N bytes, with a Content-Length
            self._send(200, PNG + bytes(int(parts[1]) - len(PNG)), "image/png")
        elif route == "chunked":  # a PNG padded to N bytes, chunked: no Content-Length to trust
            self._send_chunked(PNG + bytes(int(parts[1]) - len(PNG)))
        elif route == "claims-big":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(PNG)
        elif route == "drip-body":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(PNG)
            self._drip()
        elif route == "drip-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            self._drip()

    def _send(self, status: int, body: bytes, content_type: str | None, headers: dict | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), 1000):
            chunk = body[start : start + 1000]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _drip(self) -> None:
        """A byte at a time, each well within any read timeout, until the client hangs up."""
        owner: ImageServer = self.server.owner
        try:
            for _ in range(200):
                if owner.stopping.wait(DRIP_INTERVAL):
                    return
                self.wfile.write(b"a")
                self.wfile.flush()
        except OSError:
            return


@pytest.fixture(scope="module")
def image_server():
    server = ImageServer()
    yield server
    server.stop()


@pytest.fixture
def server(image_server) -> ImageServer:
    image_server.reset()
    return image_server


@pytest.fixture
def beluga(settings):
    """Sets BELUGA entries for one test; private addresses allowed unless the test says otherwise."""

    def configure(**values) -> None:
        settings.BELUGA = {**settings.BELUGA, **values}

    configure(IMAGE_FETCH_ALLOW_PRIVATE=True, IMAGE_FETCH_MAX_BYTES=20 * 1024 * 1024, IMAGE_FETCH_TIMEOUT_SECONDS=5)
    return configure


def refusal(url: str, **kwargs) -> str:
    with pytest.raises(InvalidRequest) as caught:
        fetch_image(url, **kwargs)
    assert caught.value.status == 400
    return caught.value.message


# --- fetching ---------------------------------------------------------------------------------


def test_png_is_fetched_as_base64_with_its_type_and_size(server, beluga):
    image = fetch_image(server.url("/image/png/image/png"))

    assert image.media_type == "image/png"
    assert base64.b64decode(image.data) == PNG
    assert image.size == len(PNG)


def test_fetch_sends_a_plain_user_agent_and_no_credentials(server, beluga):
    fetch_image(server.url("/image/png/image/png"))

    headers = server.requests[-1]["headers"]
    assert headers["user-agent"] == "Beluga image fetcher"
    assert headers["host"] == f"127.0.0.1:{server.port}"
    assert not {"authorization", "cookie", "x-api-key", "proxy-authorization"} & set(headers)


def test_a_host_name_is_connected_to_by_its_checked_address_and_keeps_its_host_header(server, beluga):
    image = fetch_image(server.url("/image/png/image/png", host="localhost"))

    assert image.media_type == "image/png"
    assert server.requests[-1]["headers"]["host"] == f"localhost:{server.port}"


def test_three_redirects_are_followed(server, beluga):
    image = fetch_image(server.url("/hop/3"))

    assert image.media_type == "image/png"
    assert [r["path"] for r in server.requests] == ["/hop/3", "/hop/2", "/hop/1", "/image/png/image/png"]


def test_a_fourth_redirect_is_refused(server, beluga):
    assert refusal(server.url("/hop/4")) == "could not fetch image: more than 3 redirects"
    assert len(server.requests) == 4


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/image/jpeg/image/jpeg", "image/jpeg"),
        ("/image/jpeg/image/jpg", "image/jpeg"),
        ("/image/gif/image/gif", "image/gif"),
        ("/image/webp/image/webp", "image/webp"),
        ("/image/heic/image/heic", "image/heic"),
        ("/image/png/application/octet-stream", "image/png"),
        ("/image/jpeg", "image/jpeg"),  # no Content-Type at all
        ("/image/webp/image/png", "image/webp"),  # mislabelled: the bytes win
    ],
)
def test_image_type_comes_from_the_bytes_when_the_header_allows_it(server, beluga, path, media_type):
    assert fetch_image(server.url(path)).media_type == media_type


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/image/html/text/html", "image type text/html is not supported: use PNG, JPEG, GIF, WebP, HEIC or HEIF"),
        (
            "/image/png/image/svg+xml",
            "image type image/svg+xml is not supported: use PNG, JPEG, GIF, WebP, HEIC or HEIF",
        ),
        ("/image/html/application/octet-stream", "image is not a PNG, JPEG, GIF, WebP, HEIC or HEIF image"),
        ("/image/html", "image is not a PNG, JPEG, GIF, WebP, HEIC or HEIF image"),
        ("/image/html/image/png", "image is not a PNG, JPEG, GIF, WebP, HEIC or HEIF image"),
        ("/image/avif/image/heif", "image is not a PNG, JPEG, GIF, WebP, HEIC or HEIF image"),
        ("/gzip", "could not fetch image: unsupported content encoding"),
    ],
)
def test_anything_but_a_supported_image_is_refused(server, beluga, path, message):
    assert refusal(server.url(path)) == message


def test_an_error_status_is_reported_with_its_code(server, beluga):
    assert refusal(server.url("/status/404")) == "could not fetch image: HTTP 404"


def test_a_redirect_without_location_is_an_error_status(server, beluga):
    assert refusal(server.url("/status/302")) == "could not fetch image: HTTP 302"


def test_a_closed_port_is_a_short_network_error(beluga):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert refusal(f"http://127.0.0.1:{port}/x.png") == "could not fetch image: connection refused"


def test_an_unresolvable_host_is_a_short_network_error(beluga):
    assert refusal("http://no-such-host.invalid/x.png") == "could not fetch image: could not resolve host"


def test_the_error_carries_the_callers_param(server, beluga):
    with pytest.raises(InvalidRequest) as caught:
        fetch_image(server.url("/status/500"), param="messages[0].content[1].image_url")
    assert caught.value.param == "messages[0].content[1].image_url"


# --- size and time limits ---------------------------------------------------------------------


def test_an_image_at_the_size_limit_is_accepted(server, beluga):
    beluga(IMAGE_FETCH_MAX_BYTES=5000)
    assert fetch_image(server.url("/sized/5000")).size == 5000
    assert fetch_image(server.url("/chunked/5000")).size == 5000


@pytest.mark.parametrize("path", ["/sized/5001", "/chunked/5001", "/claims-big"])
def test_an_image_over_the_size_limit_is_refused(server, beluga, path):
    beluga(IMAGE_FETCH_MAX_BYTES=5000)
    assert refusal(server.url(path)) == "image at URL is larger than 5000 bytes"


def test_the_size_limit_reads_in_megabytes(server, beluga):
    beluga(IMAGE_FETCH_MAX_BYTES=1024 * 1024)
    assert refusal(server.url("/claims-big")) == "image at URL is larger than 1 MB"


@pytest.mark.parametrize("path", ["/drip-body", "/drip-headers"])
def test_a_slow_drip_is_cut_at_the_overall_deadline(server, beluga, path):
    # Each byte arrives well within any per-read timeout: only the deadline for the whole fetch stops it.
    beluga(IMAGE_FETCH_TIMEOUT_SECONDS=0.5)
    started = time.monotonic()

    assert refusal(server.url(path)) == "could not fetch image: timed out"
    assert time.monotonic() - started < 1.5


# --- where a URL may point --------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",  # a name that resolves to loopback
        "2130706433",  # 127.0.0.1 in decimal, which the resolver accepts
        "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "[fd00::1]",
        "[fe80::1]",
        "[64:ff9b::a9fe:a9fe]",  # NAT64 form of 169.254.169.254
    ],
)
def test_private_addresses_are_refused_before_any_connection(server, beluga, host):
    beluga(IMAGE_FETCH_ALLOW_PRIVATE=False)

    assert refusal(server.url("/image/png/image/png", host=host)) == "image URL must point to a public address"
    assert server.connections == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/x.png", "image URL must use http or https"),
        ("file:///etc/passwd", "image URL must use http or https"),
        ("gopher://127.0.0.1:70/_x", "image URL must use http or https"),
        ("//127.0.0.1/x.png", "image URL must use http or https"),
        ("http://user:secret@127.0.0.1/x.png", "image URL must not contain a user name or password"),
        ("http://user@127.0.0.1/x.png", "image URL must not contain a user name or password"),
        ("http:///x.png", "image URL is not a valid URL"),
        ("http://127.0.0.1:99999/x.png", "image URL is not a valid URL"),
    ],
)
def test_urls_outside_the_rules_are_refused(server, beluga, url, message):
    assert refusal(url) == message
    assert server.connections == 0


def test_a_redirect_is_checked_like_the_first_url(server, beluga):
    # Only the test server's own address counts as allowed: the redirect targets are all refused.
    policy = FetchPolicy(
        address_allowed=lambda address: address == ipaddress.ip_address("127.0.0.1") or address_is_public(address),
        timeout_seconds=5,
    )
    assert fetch_image(server.url("/redirect?to=/image/png/image/png"), policy=policy).media_type == "image/png"

    for target, message in [
        ("http://169.254.169.254/latest/meta-data/", "image URL must point to a public address"),
        (f"http://127.0.0.2:{server.port}/image/png/image/png", "image URL must point to a public address"),
        (f"http://[::1]:{server.port}/image/png/image/png", "image URL must point to a public address"),
        ("file:///etc/passwd", "image URL must use http or https"),
        ("http://admin:pw@example.com/", "image URL must not contain a user name or password"),
    ]:
        server.reset()
        assert refusal(server.url(f"/redirect?to={target}"), policy=policy) == message
        assert len(server.requests) == 1  # the redirect itself, nothing at its target


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",  # noqa: S104 - an address to refuse, not one to bind
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "192.0.2.1",
        "198.18.0.1",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
        "2002:808:808::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "ff0e::1",
        "2001:db8::1",
        "100::1",
    ],
)
def test_address_checker_refuses_non_public_addresses(address):
    assert not address_is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "::ffff:8.8.8.8", "64:ff9b::808:808", "2606:4700:4700::1111"]
)
def test_address_checker_accepts_public_addresses(address):
    assert address_is_public(ipaddress.ip_address(address))


# --- https ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A throwaway CA and a certificate it signs for the name "localhost" only."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("Beluga test CA"))
        .issuer_name(name("Beluga test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return folder


@pytest.fixture(scope="module")
def tls_server(tls_files):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files / "cert.pem")
    server = ImageServer(tls=context)
    server.server_names = []
    context.sni_callback = lambda sock, server_name, ctx: server.server_names.append(server_name)
    yield server
    server.stop()


@pytest.fixture
def trusting(tls_files) -> FetchPolicy:
    """Private addresses allowed and the test CA trusted."""
    return FetchPolicy(address_allowed=lambda address: True, timeout_seconds=5, ca_certs=str(tls_files / "ca.pem"))


def test_https_is_pinned_to_the_address_but_verified_for_the_url_host(tls_server, trusting):
    tls_server.server_names.clear()
    image = fetch_image(tls_server.url("/image/png/image/png", host="localhost"), policy=trusting)

    assert image.media_type == "image/png"
    assert tls_server.server_names[-1] == "localhost"
    assert tls_server.requests[-1]["headers"]["host"] == f"localhost:{tls_server.port}"


def test_https_certificate_for_another_name_is_refused(tls_server, trusting):
    # Connecting by IP: the certificate is for "localhost", so it does not match the URL's host.
    message = refusal(tls_server.url("/image/png/image/png"), policy=trusting)
    assert message == "could not fetch image: TLS certificate verification failed"


def test_https_certificate_from_an_untrusted_ca_is_refused(tls_server, beluga):
    message = refusal(tls_server.url("/image/png/image/png", host="localhost"))
    assert message == "could not fetch image: TLS certificate verification failed"


def test_a_tls_handshake_dripped_a_byte_at_a_time_is_cut_at_the_deadline(trusting):
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        peer, _ = listener.accept()
        with peer:
            peer.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record of 16 KiB, then its body byte by byte
            while not stop.wait(DRIP_INTERVAL):
                try:
                    peer.sendall(b"\x00")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    policy = FetchPolicy(address_allowed=trusting.address_allowed, timeout_seconds=0.5, ca_certs=trusting.ca_certs)
    started = time.monotonic()
    try:
        message = refusal(f"https://localhost:{listener.getsockname()[1]}/x.png", policy=policy)
    finally:
        stop.set()
        listener.close()
        thread.join(1)

    assert message == "could not fetch image: timed out"
    assert time.monotonic() - started < 1.5


# --- data: URLs -------------------------------------------------------------------------------


def data_url(media_type: str, raw: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(raw).decode()}"


@pytest.mark.parametrize(
    ("url", "media_type"),
    [
        (data_url("image/png", PNG), "image/png"),
        (data_url("image/jpg", JPEG), "image/jpeg"),
        (data_url("image/gif", GIF), "image/gif"),
        (data_url("image/webp", WEBP), "image/webp"),
        (data_url("image/heic", HEIC), "image/heic"),
        (data_url("application/octet-stream", PNG), "image/png"),
        (data_url("image/png", JPEG), "image/jpeg"),
        ("DATA:image/png;BASE64," + base64.b64encode(PNG).decode(), "image/png"),
    ],
)
def test_data_url_is_decoded_without_a_fetch(beluga, url, media_type):
    image = parse_data_url(url)

    assert image.media_type == media_type
    assert image.data == url.partition(",")[2]
    assert image.size == len(base64.b64decode(image.data))


@pytest.mark.parametrize("url", ["https://example.com/cat.png", "http://127.0.0.1/x", "", "dat:image/png;base64,AA=="])
def test_a_url_that_is_not_a_data_url_gives_none(url):
    assert parse_data_url(url) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64", "image data URL is malformed: expected data:<type>;base64,<data>"),
        ("data:image/png,rawbytes", "image data URL must be base64-encoded (data:<type>;base64,<data>)"),
        ("data:image/png;base64,not base64!", "image data URL has invalid base64 data"),
        ("data:image/png;base64,iVBORw0KGgo", "image data URL has invalid base64 data"),
        (
            data_url("image/svg+xml", b"<svg/>"),
            "image type image/svg+xml is not supported: use PNG, JPEG, GIF, WebP, HEIC or HEIF",
        ),
        (data_url("text/html", HTML), "image type text/html is not supported: use PNG, JPEG, GIF, WebP, HEIC or HEIF"),
        (data_url("image/png", HTML), "image is not a PNG, JPEG, GIF, WebP, HEIC or HEIF image"),
        ("data:;base64," + base64.b64encode(HTML).decode(), "image is not a PNG, JPEG, GIF, WebP, HEIC or HEIF image"),
    ],
)
def test_bad_data_urls_are_refused(beluga, url, message):
    with pytest.raises(InvalidRequest) as caught:
        parse_data_url(url, param="messages[0].content[0]")
    assert caught.value.message == message
    assert caught.value.param == "messages[0].content[0]"


@pytest.mark.parametrize("size", [5001, 50_000])
def test_a_data_url_over_the_size_limit_is_refused(beluga, size):
    beluga(IMAGE_FETCH_MAX_BYTES=5000)
    with pytest.raises(InvalidRequest) as caught:
        parse_data_url(data_url("image/png", PNG + bytes(size - len(PNG))))
    assert caught.value.message == "image data URL is larger than 5000 bytes"


def test_a_data_url_at_the_size_limit_is_accepted(beluga):
    beluga(IMAGE_FETCH_MAX_BYTES=5000)
    assert parse_data_url(data_url("image/png", PNG + bytes(5000 - len(PNG)))).size == 5000
