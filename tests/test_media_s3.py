"""Generated media on an S3 bucket: gateway/media/storage.py through django-storages' S3Storage, configured by
the S3 block of gateway/settings.py, against moto's standalone server.

moto_server runs as a child process on 127.0.0.1 (a free port), a fake provider speaking S3's real wire format:
every upload, presigned GET and delete below is real HTTP. Nothing is mocked in this process.
"""

from __future__ import annotations

import io
import re
import runpy
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from django.core.files.storage import default_storage

from gateway.media.storage import PRESIGNED_SECONDS, StoredFile, media_delete, media_open, media_save, media_url
from tests.fake_media import png_bytes

BUCKET = "beluga-media"
ACCESS_KEY = "AKIAEXAMPLEMEDIA"
SECRET_KEY = "not-a-secret"  # noqa: S105
REGION = "us-east-1"
EXPIRES = PRESIGNED_SECONDS  # seconds a presigned bucket URL behind a Beluga link lasts

SETTINGS_FILE = Path(__file__).resolve().parent.parent / "gateway" / "settings.py"

PNG = png_bytes()
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory):
    """`moto_server -H 127.0.0.1 -p0` as a child process; its URL, read from the line it logs on start."""
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(  # noqa: S603
            [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p0"],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while (match := re.search(r"Running on (http://127\.0\.0\.1:\d+)", log.read_text())) is None:
            assert server.poll() is None, f"moto_server exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"moto_server did not start: {log.read_text()}"
            time.sleep(0.05)
        yield match.group(1)
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def bucket(moto_endpoint):
    """A boto3 client of our own (not Beluga's) on the moto server, with the media bucket created."""
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture
def s3_media(settings, monkeypatch, moto_endpoint, bucket):
    """The default storage is the S3Storage that gateway/settings.py builds from the MEDIA_S3_* variables.

    The settings module is run afresh with those variables set, so that its S3 block, not a copy of it, is
    what is tested; changing STORAGES resets default_storage (as in tests/test_media_storage.py)."""
    for name, value in {
        "MEDIA_S3_BUCKET": BUCKET,
        "MEDIA_S3_ENDPOINT_URL": moto_endpoint,
        "MEDIA_S3_REGION": REGION,
        "MEDIA_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "MEDIA_S3_SECRET_ACCESS_KEY": SECRET_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    storage = runpy.run_path(str(SETTINGS_FILE))["STORAGES"]["default"]
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    assert storage["OPTIONS"]["querystring_auth"] is True
    assert storage["OPTIONS"]["querystring_expire"] == EXPIRES
    settings.STORAGES = {**settings.STORAGES, "default": storage}
    return bucket


def assert_presigned_on_moto(url: str, name: str, moto_endpoint: str) -> None:
    """A SigV4 presigned GET of `name` in the bucket on the moto host, lasting EXPIRES seconds."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == moto_endpoint
    assert parts.path == f"/{BUCKET}/{name}"
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Credential"].startswith(f"{ACCESS_KEY}/")
    assert query["X-Amz-Credential"].endswith(f"/{REGION}/s3/aws4_request")
    assert query["X-Amz-Expires"] == str(EXPIRES)
    assert query["X-Amz-Signature"]


def test_the_settings_s3_block_makes_default_storage_a_bucket(s3_media):
    assert default_storage.bucket_name == BUCKET
    assert default_storage.querystring_auth is True


# The types to check are those mimetypes would get wrong from the file name.
TYPED = {
    "image/png": PNG,
    "audio/wav": WAV,  # mimetypes says audio/x-wav
    "audio/opus": b"OggS" + bytes(40),  # mimetypes says audio/ogg
    "audio/pcm": bytes(64),  # mimetypes does not know .pcm
}


def test_saved_bytes_are_objects_in_the_bucket_with_their_types(s3_media):
    # One test, not one per type: each test pays for a fresh S3Storage (a new boto3 session).
    for content_type, data in TYPED.items():
        stored = media_save(data=data, content_type=content_type, prefix="audio")

        assert stored == StoredFile(name=stored.name, content_type=content_type, size=len(data))
        head = s3_media.head_object(Bucket=BUCKET, Key=stored.name)
        assert (head["ContentType"], head["ContentLength"]) == (content_type, len(data))
        assert s3_media.get_object(Bucket=BUCKET, Key=stored.name)["Body"].read() == data


def test_a_file_object_is_uploaded_whole_with_its_type(s3_media):
    data = WAV * 5000  # ~260 KB

    stored = media_save(data=io.BytesIO(data), content_type="audio/wav", prefix="speech")

    assert re.fullmatch(r"speech/\d{4}/\d{2}/[0-9a-f]{32}\.wav", stored.name)
    assert stored.size == len(data)
    got = s3_media.get_object(Bucket=BUCKET, Key=stored.name)
    assert got["ContentType"] == "audio/wav"
    assert got["Body"].read() == data


def test_belugas_link_redirects_to_a_presigned_bucket_url_that_serves_the_bytes(s3_media, moto_endpoint, client, db):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    link = media_url(name=stored.name)

    assert link.startswith("/v1/media/")  # Beluga's own link, naming neither upstream nor bucket
    assert BUCKET not in link and moto_endpoint not in link
    redirect = client.get(link)
    assert redirect.status_code == 302
    url = redirect["Location"]
    assert_presigned_on_moto(url, stored.name, moto_endpoint)
    fetched = requests.get(url, timeout=5)
    assert fetched.status_code == 200
    assert fetched.content == PNG
    assert fetched.headers["Content-Type"] == "image/png"
    # The object itself is private: without the signature the bucket refuses it.
    assert requests.get(f"{moto_endpoint}/{BUCKET}/{stored.name}", timeout=5).status_code == 403


def test_a_stored_file_reads_back_and_is_deleted(s3_media):
    stored = media_save(data=PNG, content_type="image/png", prefix="images")

    with media_open(stored.name) as file:
        assert file.read() == PNG
    media_delete(stored.name)

    assert s3_media.list_objects_v2(Bucket=BUCKET, Prefix=stored.name)["KeyCount"] == 0
    with pytest.raises(FileNotFoundError):
        media_open(stored.name)
    media_delete(stored.name)  # deleting what is gone is no error


def test_a_generated_image_is_stored_in_the_bucket_and_linked_presigned(
    s3_media, moto_endpoint, media_route, client, raw_key, fake_media
):
    media_route("img-dalle", upstream_model="dall-e-3", media_options={"sizes": ["1024x1024", "1792x1024"]})

    response = client.post(
        "/v1/images/generations",
        {"model": "img-dalle", "prompt": "A beluga", "response_format": "url"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw_key}",
    )

    assert response.status_code == 200, response.content
    [item] = response.json()["data"]
    link = item["url"]
    assert fake_media.base_url not in link and "/v1/media/" in link and BUCKET not in link
    url = client.get(link[link.index("/v1/media/") :])["Location"]
    name = urlsplit(url).path.removeprefix(f"/{BUCKET}/")
    assert re.fullmatch(r"images/\d{4}/\d{2}/[0-9a-f]{32}\.png", name)
    assert_presigned_on_moto(url, name, moto_endpoint)
    fetched = requests.get(url, timeout=5)
    assert fetched.status_code == 200
    assert fetched.content == png_bytes()
    assert s3_media.head_object(Bucket=BUCKET, Key=name)["ContentType"] == "image/png"
    # DALL-E answered with a URL on the fake; Beluga fetched it once and handed out the bucket's link.
    assert fake_media.get_count("/files/") == 1
