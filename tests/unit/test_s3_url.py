"""s3:// URL and option handling: no network, no S3 server."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pgharbor.errors import (
    ObjectExists,
    ObjectNotFound,
    StorageError,
    StoragePermissionDenied,
    StorageUnavailable,
    UsageError,
)
from pgharbor.storage.s3 import S3Storage


def test_url_and_query() -> None:
    s = S3Storage(
        "s3://bkt/some/prefix/?endpoint_url=http://127.0.0.1:5000&region=us-east-1"
        "&addressing_style=path&timeout=3&multipart_threshold=16MiB"
    )
    assert (s.bucket, s.prefix) == ("bkt", "some/prefix/")
    assert s.endpoint_url == "http://127.0.0.1:5000"
    assert (s.region, s.addressing_style, s.timeout) == ("us-east-1", "path", 3.0)
    assert s.multipart_threshold == 16 * 1024 * 1024
    assert s.multipart_chunksize == 8 * 1024 * 1024
    assert S3Storage("s3://bkt").prefix == ""


def test_options_override_query() -> None:
    s = S3Storage("s3://bkt/p?region=eu-west-1&timeout=3", region="us-east-1", timeout=None)
    assert (s.region, s.timeout) == ("us-east-1", 3.0)


@pytest.mark.parametrize(
    "url",
    [
        "s3://bkt/p?secret_access_key=x",
        "s3://bkt/p?access_key_id=x",
        "s3://bkt/p?nonsense=1",
        "s3://bkt/p?addressing_style=sideways",
        "s3://bkt/p?timeout=0",
        "s3://bkt/p?multipart_threshold=lots",
        "s3://bkt/a/../b",
        "s3://user:pw@bkt/p",
        "s3://bkt/p?endpoint_url=http://user:pw@127.0.0.1:5000",
    ],
)
def test_bad_urls_refused(url: str) -> None:
    with pytest.raises(UsageError) as ei:
        S3Storage(url)
    assert "pw" not in str(ei.value)


def test_unknown_option_refused() -> None:
    with pytest.raises(UsageError):
        S3Storage("s3://bkt/p", secret_key="x")


def test_secrets_not_in_repr() -> None:
    s = S3Storage("s3://bkt/p", access_key_id="AKIAEXAMPLE", secret_access_key="s3cr3t-value")
    assert "s3cr3t-value" not in repr(s)
    assert "s3cr3t-value" not in str(vars(s).get("url"))


def test_boto3_imported_lazily() -> None:
    code = (
        "import sys; from pgharbor.storage import open_storage;"
        "open_storage('s3://bkt/p?region=us-east-1');"
        "print('boto3' in sys.modules, 'botocore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, ObjectNotFound),
        ("404", 404, ObjectNotFound),
        ("NoSuchBucket", 404, StorageUnavailable),
        ("AccessDenied", 403, StoragePermissionDenied),
        ("InvalidAccessKeyId", 403, StoragePermissionDenied),
        ("SignatureDoesNotMatch", 403, StoragePermissionDenied),
        ("PreconditionFailed", 412, ObjectExists),
        ("SlowDown", 503, StorageUnavailable),
        ("InvalidStorageClass", 400, StorageError),
    ],
)
def test_client_error_mapping(code: str, status: int, expected: type[StorageError]) -> None:
    from botocore.exceptions import ClientError

    s = S3Storage("s3://bkt/p", secret_access_key="s3cr3t-value")
    exc = ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )
    err = s._error(exc, "k")
    assert type(err) is expected
    assert str(err).startswith("s3://bkt/p (k): ")
    if code == "NoSuchBucket":
        assert "'bkt'" in str(err)
