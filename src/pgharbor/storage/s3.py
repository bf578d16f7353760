"""s3:// backend: Amazon S3 or any S3-compatible store (MinIO, Ceph RGW, moto, ...).

URL: ``s3://BUCKET/PREFIX`` with optional non-secret settings in the query string
(``endpoint_url``, ``region``, ``addressing_style`` = path|virtual|auto, ``profile``,
``timeout``, ``multipart_threshold``, ``multipart_chunksize``); keyword options override
the query. Credentials come from the ``access_key_id``/``secret_access_key``/
``session_token`` options or else the usual AWS chain (environment, ~/.aws files, profile,
instance metadata). They are refused in the URL and never appear in repr() or messages.

A PutObject is atomic by S3 semantics. Objects of ``multipart_threshold`` bytes or more go
up as an explicit multipart upload, which becomes visible only on CompleteMultipartUpload;
any failure aborts it. (A writer killed outright leaves invisible parts until the bucket's
AbortIncompleteMultipartUpload lifecycle rule removes them.) ``overwrite=False`` is a
conditional write (``If-None-Match: *`` on PutObject and CompleteMultipartUpload, honoured
by AWS S3 since 2024, MinIO and moto): of several racing writers exactly one wins. A store
that silently ignores the header would let such a put replace an object.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import chain
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from pgharbor.errors import (
    ObjectExists,
    ObjectNotFound,
    PgharborError,
    StorageError,
    StoragePermissionDenied,
    StorageUnavailable,
    UsageError,
)
from pgharbor.settings_check import url_options
from pgharbor.storage.base import ABANDONED_AFTER, ObjectInfo, check_key

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MiB = 1024 * 1024
MAX_PARTS = 10_000
UPLOAD_THREADS = 4

_CREDENTIAL_CODES = frozenset(
    "InvalidAccessKeyId SignatureDoesNotMatch InvalidToken ExpiredToken TokenRefreshRequired "  # noqa: SIM905
    "InvalidClientTokenId AuthorizationHeaderMalformed".split()
)
_DENIED_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "Forbidden", "403"})
_BUSY_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "503", "500"}
)


def _redact(url: str) -> str:
    """The URL with any user:password@ removed from an endpoint_url in its query."""
    return re.sub(r"(://)[^/@?&#]*@", r"\1", url)


def _code(exc: Any) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    return code, int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


_Page = list[ObjectInfo]  # spelled out here: inside the class, "list" is the method


class S3Storage:
    def __init__(self, url: str, **options: Any) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname or "@" in parts.netloc:
            raise UsageError(f"bad s3 URL {_redact(url)!r}: use s3://BUCKET/PREFIX")
        self.url = url
        self._where = _redact(urlunsplit(parts._replace(query="", fragment="")))
        self.bucket = parts.netloc
        prefix = unquote(parts.path).strip("/")
        if prefix:
            try:
                check_key(prefix)
            except UsageError:
                raise UsageError(f"bad s3 URL {self._where!r}: invalid prefix") from None
            prefix += "/"
        self.prefix = prefix

        query = parse_qsl(parts.query, keep_blank_values=True)
        settings = url_options("s3", query, options, f"target URL {self._where}")
        self.endpoint_url: str | None = settings.get("endpoint_url")
        if self.endpoint_url and "@" in urlsplit(self.endpoint_url).netloc:
            raise UsageError(f"{self._where}: credentials do not belong in endpoint_url")
        self.region: str | None = settings.get("region")
        self.profile: str | None = settings.get("profile")
        self.addressing_style: str = settings["addressing_style"]
        self.timeout: float = settings["timeout"]
        self.multipart_threshold: int = settings["multipart_threshold"]
        self.multipart_chunksize: int = settings["multipart_chunksize"]
        self._secrets = (
            settings.get("access_key_id"),
            settings.get("secret_access_key"),
            settings.get("session_token"),
        )
        self._lock = threading.Lock()
        self._s3: S3Client | None = None

    def __repr__(self) -> str:
        from pgharbor.storage.factory import shown_url

        return f"S3Storage({shown_url(self.url)!r})"  # the keys are in self._secrets

    # -- plumbing ---------------------------------------------------------------------

    def _client(self) -> S3Client:
        with self._lock:
            if self._s3 is None:
                with self._errors(None):
                    import boto3
                    from botocore.config import Config

                    session = boto3.session.Session(
                        aws_access_key_id=self._secrets[0],
                        aws_secret_access_key=self._secrets[1],
                        aws_session_token=self._secrets[2],
                        profile_name=self.profile,
                        region_name=self.region,
                    )
                    s3_settings: Any = {"addressing_style": self.addressing_style}
                    config = Config(
                        connect_timeout=self.timeout,
                        read_timeout=self.timeout,
                        # A dead endpoint fails after at most ~3 x timeout + backoff.
                        retries={"total_max_attempts": 3, "mode": "standard"},
                        s3=s3_settings,
                        max_pool_connections=16,
                    )
                    try:
                        self._s3 = session.client(
                            "s3", endpoint_url=self.endpoint_url, config=config
                        )
                    except ValueError as exc:
                        raise UsageError(f"{self._where}: bad endpoint_url: {exc}") from None
            return self._s3

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets[1:]:
            if secret:
                text = text.replace(str(secret), "***")
        return _redact(text)

    def _error(self, exc: Exception, key: str | None) -> StorageError | None:
        """Translate a botocore/urllib3/socket exception; None for anything else."""
        from botocore import exceptions as bx
        from urllib3.exceptions import HTTPError

        where = self._where if key is None else f"{self._where} ({key})"
        if isinstance(exc, bx.ClientError):
            code, status = _code(exc)
            detail = self._scrub(str(exc.response.get("Error", {}).get("Message") or code))
            if code == "NoSuchBucket":
                return StorageUnavailable(f"{where}: bucket {self.bucket!r} does not exist")
            if code in ("NoSuchKey", "NotFound", "404") or status == 404:
                return ObjectNotFound(f"{where}: no such object")
            if code in _CREDENTIAL_CODES:
                return StoragePermissionDenied(
                    f"{where}: S3 rejected the credentials ({code}): check the access key "
                    "and secret key"
                )
            if code in _DENIED_CODES or status == 403:
                return StoragePermissionDenied(
                    f"{where}: access denied ({code}): check the credentials and their "
                    "permissions for this bucket"
                )
            if code == "PreconditionFailed" or status == 412:
                return ObjectExists(f"{where}: object exists")
            if code in _BUSY_CODES or status in (500, 502, 503, 504):
                return StorageUnavailable(f"{where}: S3 endpoint busy or failing ({code})")
            return StorageError(f"{where}: S3 error {code or status}: {detail}")
        if isinstance(
            exc,
            bx.NoCredentialsError
            | bx.PartialCredentialsError
            | bx.CredentialRetrievalError
            | bx.ProfileNotFound,
        ):
            return StoragePermissionDenied(
                f"{where}: no usable AWS credentials: {self._scrub(str(exc))}"
            )
        if isinstance(exc, bx.ConnectionError | bx.HTTPClientError | HTTPError | OSError):
            endpoint = self.endpoint_url or "the AWS S3 endpoint"
            return StorageUnavailable(
                f"{where}: cannot reach {_redact(endpoint)}: {type(exc).__name__}"
            )
        if isinstance(exc, bx.BotoCoreError):
            return StorageError(f"{where}: {type(exc).__name__}: {self._scrub(str(exc))}")
        return None

    @contextlib.contextmanager
    def _errors(self, key: str | None) -> Iterator[None]:
        try:
            yield
        except PgharborError:
            raise
        except Exception as exc:
            err = self._error(exc, key)
            if err is None:
                raise
            raise err from exc

    def _check_bucket(self, s3: S3Client) -> None:
        try:
            s3.head_bucket(Bucket=self.bucket)
        except s3.exceptions.ClientError as exc:
            if _code(exc)[1] == 404:
                raise StorageUnavailable(
                    f"{self._where}: bucket {self.bucket!r} does not exist"
                ) from None
            raise

    # -- the Storage protocol ---------------------------------------------------------

    def put(self, key: str, data: bytes, *, overwrite: bool = True) -> None:
        k = self._key(key)
        s3 = self._client()
        cond: dict[str, Any] = {} if overwrite else {"IfNoneMatch": "*"}
        with self._errors(key):
            for attempt in range(4):
                try:
                    if len(data) < self.multipart_threshold:
                        s3.put_object(Bucket=self.bucket, Key=k, Body=data, **cond)
                    else:
                        self._multipart(s3, k, data, cond)
                    return
                except s3.exceptions.ClientError as exc:
                    # AWS answers 409 when a conditional write races another one in
                    # flight; trying again yields the winner's 412 (or our success).
                    if _code(exc)[0] != "ConditionalRequestConflict" or attempt == 3:
                        raise
                    time.sleep(0.1 * (attempt + 1))

    def _multipart(self, s3: S3Client, k: str, data: bytes, cond: dict[str, Any]) -> None:
        size = len(data)
        chunk = max(self.multipart_chunksize, -(-size // MAX_PARTS))
        count = -(-size // chunk)
        extra: dict[str, Any] = {}
        if getattr(s3.meta.config, "request_checksum_calculation", None) == "when_supported":
            extra["ChecksumAlgorithm"] = "CRC32"
        upload_id = s3.create_multipart_upload(Bucket=self.bucket, Key=k, **extra)["UploadId"]

        def upload(n: int) -> CompletedPartTypeDef:
            body = data[(n - 1) * chunk : n * chunk]
            r = s3.upload_part(
                Bucket=self.bucket, Key=k, UploadId=upload_id, PartNumber=n, Body=body, **extra
            )
            part: CompletedPartTypeDef = {"PartNumber": n, "ETag": r["ETag"]}
            if "ChecksumCRC32" in r:
                part["ChecksumCRC32"] = r["ChecksumCRC32"]
            return part

        try:
            with ThreadPoolExecutor(max_workers=min(UPLOAD_THREADS, count)) as pool:
                parts = list(pool.map(upload, range(1, count + 1)))
            s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=k,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **cond,
            )
        except BaseException:
            # Nothing became visible; drop the parts so they cost nothing.
            with contextlib.suppress(Exception):
                s3.abort_multipart_upload(Bucket=self.bucket, Key=k, UploadId=upload_id)
            raise

    def get(self, key: str) -> bytes:
        k = self._key(key)
        s3 = self._client()
        with self._errors(key):
            return s3.get_object(Bucket=self.bucket, Key=k)["Body"].read()

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise UsageError(f"{self._where} ({key}): bad range {start}+{length}")
        k = self._key(key)
        if length == 0:
            if self.stat(key) is None:
                raise ObjectNotFound(f"{self._where} ({key}): no such object")
            return b""
        s3 = self._client()
        with self._errors(key):
            try:
                r = s3.get_object(
                    Bucket=self.bucket, Key=k, Range=f"bytes={start}-{start + length - 1}"
                )
            except s3.exceptions.ClientError as exc:
                if _code(exc)[0] == "InvalidRange":  # start at or past the end
                    return b""
                raise
            data = r["Body"].read()
            if "ContentRange" not in r:  # a store that ignored the Range header
                data = data[start : start + length]
            return data

    def stat(self, key: str) -> ObjectInfo | None:
        k = self._key(key)
        s3 = self._client()
        with self._errors(key):
            try:
                head = s3.head_object(Bucket=self.bucket, Key=k)
            except s3.exceptions.ClientError as exc:
                if _code(exc)[1] != 404:
                    raise
                # A HEAD 404 has no body: tell a missing object from a missing bucket,
                # or a restore would take a vanished bucket for the end of the archive.
                self._check_bucket(s3)
                return None
            return ObjectInfo(key, head["ContentLength"])

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        s3 = self._client()
        pages = self._pages(s3, prefix)
        first: _Page = next(pages, [])  # the first request runs now, so failures surface here
        return chain(first, chain.from_iterable(pages))

    def _pages(self, s3: S3Client, prefix: str) -> Iterator[_Page]:
        cut = len(self.prefix)
        paginator = s3.get_paginator("list_objects_v2")
        with self._errors(prefix or None):
            pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix))
        while True:
            with self._errors(prefix or None):
                page = next(pages, None)
            if page is None:
                return
            # S3 lists in UTF-8 byte order, which is code point order: already sorted.
            yield [
                ObjectInfo(o["Key"][cut:], o["Size"])
                for o in page.get("Contents", [])
                if not o["Key"].endswith("/")  # folder markers made by consoles
            ]

    def sweep(self, prefix: str, max_age: float = ABANDONED_AFTER) -> int:
        """Abort multipart uploads idle for max_age: an upload of a killed writer never
        becomes an object, but its parts are billed until aborted. (An upload does not
        say which process started it: its age, the newest of its start and its parts,
        alone decides.)"""
        s3 = self._client()
        now, removed = datetime.now(UTC), 0

        def idle(up: Any) -> bool:
            if (now - up["Initiated"]).total_seconds() < max_age:
                return False
            parts = s3.list_parts(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
            return all(
                (now - p["LastModified"]).total_seconds() >= max_age for p in parts.get("Parts", [])
            )

        with self._errors(prefix or None):
            paginator = s3.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for up in page.get("Uploads", []):
                    try:  # NoSuchUpload: completed or aborted meanwhile
                        if idle(up):
                            s3.abort_multipart_upload(
                                Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                            )
                            removed += 1
                    except s3.exceptions.NoSuchUpload:
                        continue
        return removed

    def delete(self, key: str) -> None:
        k = self._key(key)
        s3 = self._client()
        with contextlib.suppress(ObjectNotFound), self._errors(key):
            s3.delete_object(Bucket=self.bucket, Key=k)

    def durable(self) -> bool:
        return True  # S3 stores an object durably before it acknowledges the PUT

    def space(self) -> tuple[int, int] | None:
        return None  # a bucket has no size to fill

    def close(self) -> None:
        with self._lock:
            if self._s3 is not None:
                self._s3.close()
                self._s3 = None
