"""The S3 requests of an upload: AWS Signature V4 over ``http.client``.

Why not boto3 (or urllib3, or botocore's signer) for these: a 1 KiB object
costs botocore ~2-3 ms of CPU per request (event hooks, parameter validation,
endpoint rules), urllib3 ~0.4 ms more than a bare ``http.client`` request,
and botocore's signer ~0.1 ms plus ~0.1 s to import, where the signature
itself is a few HMACs; on a 2-core machine a 1,000-file first sync is
CPU-bound on exactly that (the Go CLI spends ~1.3 ms per file in all).
Building a boto3 client alone costs ~0.25 s of CPU, so an upload never builds
one: small objects are one PUT, large ones a multipart upload (create, parts
in parallel, complete; aborted on failure), and the bucket check is a HEAD.
Downloads of large objects and everything else stay on boto3
(:mod:`pollinator.cfs.s3`).

:class:`SigV4` is the header form of Signature V4 as AWS documents it; a unit
test pins it to botocore's signer, byte for byte, on the requests we send. A
small PUT signs its body's SHA-256; a multipart part is sent
``UNSIGNED-PAYLOAD`` with an ``x-amz-checksum-crc32`` header instead, which
the server verifies (the upload is created with ``ChecksumAlgorithm=CRC32``,
as the Go client's minio library does with CRC32C). That saves hashing every
part twice, and on moto it also spares the server a whole-object copy at
completion. A server that refuses checksummed multipart uploads gets plain
ones (remembered per client).

Connections are kept alive and shared by the threads (:mod:`pollinator.http_pool`).
Retries: 5xx/429 and transport failures (including a body that breaks off)
are resent with jittered backoff; any other answer raises
:class:`S3RequestError`, whose text never contains a credential. Path-style
addressing only (what MinIO, moto, Ceph and the Go client use for a custom
endpoint).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import logging
import random
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from email.message import Message
from typing import TYPE_CHECKING, Callable, Optional, Protocol
from urllib.parse import quote
from xml.etree import ElementTree

from pollinator.config import S3Settings
from pollinator.http_pool import ConnectionPool

if TYPE_CHECKING:
    from pollinator.cfs.cancel import CancelToken

class Readable(Protocol):
    """What an upload reads from: a file, or a wrapper hashing what passes (cfs.hashing.HashingReader)."""

    def read(self, n: int = -1, /) -> bytes: ...


log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_PARTS = 10_000  # S3's limit per multipart upload
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


class S3RequestError(Exception):
    """A non-retryable (or retried-out) S3 answer: status, S3 error code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"S3 {code or 'error'} (HTTP {status}){': ' + message if message else ''}")
        self.status, self.code = status, code


class ShortBody(http.client.HTTPException):
    """The server sent fewer bytes than the object holds (retried like any broken transfer)."""


def _error(status: int, body: bytes) -> S3RequestError:
    code = message = ""
    try:
        root = ElementTree.fromstring(body)
        code = root.findtext("Code") or ""
        message = root.findtext("Message") or ""
    except ElementTree.ParseError:
        pass
    return S3RequestError(status, code, message)


def _find(root: ElementTree.Element, tag: str) -> str:
    return root.findtext(_S3_NS + tag) or root.findtext(tag) or ""


def crc32_b64(data: bytes) -> str:
    """The ``x-amz-checksum-crc32`` value of ``data`` (base64 of the big-endian CRC32)."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


class SigV4:
    """AWS Signature Version 4, header form, for one key pair, region and service.

    ``path`` and ``query`` are taken as sent (already URI-encoded), as S3
    wants them; headers are signed by lower-cased name, values with runs of
    whitespace collapsed. The day's signing key is derived once per day.
    """

    def __init__(self, access_key: str, secret_key: str, region: str, service: str = "s3"):
        self._access, self._secret = access_key, secret_key
        self.region, self.service = region, service
        self._day_key: tuple[str, bytes] = ("", b"")

    def __repr__(self) -> str:
        return f"SigV4(region={self.region!r}, service={self.service!r})"

    def _key(self, day: str) -> bytes:
        cached_day, key = self._day_key
        if cached_day != day:
            key = ("AWS4" + self._secret).encode()
            for part in (day, self.region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day_key = (day, key)
        return key

    def headers(self, method: str, host: str, path: str, query: str, headers: dict[str, str], payload_hash: str,
                now: Optional[datetime.datetime] = None) -> dict[str, str]:
        """``headers`` plus Host, X-Amz-Date, X-Amz-Content-SHA256 and Authorization."""
        stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
        out = {**headers, "Host": host, "X-Amz-Date": stamp, "X-Amz-Content-SHA256": payload_hash}
        signed = sorted((k.lower(), " ".join(str(v).split())) for k, v in out.items())
        names = ";".join(k for k, _ in signed)
        canonical_query = "&".join(f"{k}={v}" for k, _, v in sorted(p.partition("=") for p in query.split("&"))) \
            if query else ""
        canonical = "\n".join([method, path, canonical_query, "".join(f"{k}:{v}\n" for k, v in signed), names,
                               payload_hash])
        scope = f"{stamp[:8]}/{self.region}/{self.service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._key(stamp[:8]), to_sign.encode(), hashlib.sha256).hexdigest()
        out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={self._access}/{scope}, SignedHeaders={names}, "
                                f"Signature={signature}")
        return out


class LeanS3:
    """Signed S3 requests for one bucket; safe to share between threads (they share kept-alive connections)."""

    def __init__(self, settings: S3Settings, *, attempts: int = 6, timeout: float = 120.0,
                 connect_timeout: float = 10.0):
        self.endpoint = settings.endpoint
        host, _, port = settings.endpoint.rpartition(":")
        if not host or not port.isdigit():
            host, port = settings.endpoint, ("443" if settings.tls else "80")
        self._host, self._port = host.strip("[]"), int(port)
        self.region = settings.region
        self.bucket = settings.bucket
        self.tls = settings.tls
        self.scheme = "https" if settings.tls else "http"
        self.attempts = attempts
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._pool = ConnectionPool(self._host, self._port, tls=settings.tls, verify=not settings.skip_verify,
                                    connect_timeout=connect_timeout, max_idle=64)
        self.multipart_checksums = True
        self._signer = SigV4(settings.access_key.get_secret_value(), settings.secret_key.get_secret_value(),
                             self.region)
        default_port = 443 if settings.tls else 80
        self._host_header = self._host if self._port == default_port else f"{self._host}:{self._port}"
        if ":" in self._host:  # IPv6 literal
            self._host_header = f"[{self._host}]" + ("" if self._port == default_port else f":{self._port}")

    def __repr__(self) -> str:
        return f"LeanS3(endpoint={self.scheme}://{self.endpoint!r}, bucket={self.bucket!r})"

    # -- signing and sending -------------------------------------------------------------
    def _headers(self, method: str, path: str, query: str, body: Optional[bytes],
                 extra: Optional[dict[str, str]] = None, sign_body: bool = True) -> dict[str, str]:
        payload = hashlib.sha256(body or b"").hexdigest() if sign_body else UNSIGNED_PAYLOAD
        return self._signer.headers(method, self._host_header, path, query, extra or {}, payload)

    def _path(self, key: str = "") -> str:
        path = "/" + quote(self.bucket, safe="-_.~")
        return path + "/" + quote(key, safe="/-_.~") if key else path

    def request(self, method: str, key: str = "", *, body: Optional[bytes] = None, query: str = "",
                headers: Optional[dict[str, str]] = None, sign_body: bool = True,
                expect_len: Optional[int] = None, ok: tuple[int, ...] = (),
                cancel: Optional["CancelToken"] = None) -> tuple[int, bytes, Message]:
        """One signed request, retried; returns (status, body, headers: ``get`` ignores case) of a 2xx answer.

        ``ok`` lists further statuses returned rather than raised (e.g. 404 for a HEAD). ``cancel``
        ends a retry's backoff early (raising its ``SyncCancelled``).
        """
        path = self._path(key)
        target = path + (f"?{query}" if query else "")
        attempt = 0
        while True:
            signed = self._headers(method, path, query, body, headers, sign_body)
            try:
                status, answer, data = self._pool.request(method, target, body, signed, timeout=self.timeout)
                if status < 300 or status in ok:
                    if expect_len is not None and status < 300 and len(data) != expect_len:
                        raise ShortBody(f"short body: {len(data)} of {expect_len} bytes")
                    return status, data, answer
                failure: Exception = _error(status, data)
                if status not in RETRY_STATUS:
                    raise failure
            except (OSError, http.client.HTTPException) as exc:
                failure = exc
            if attempt + 1 >= self.attempts:
                raise failure
            delay = min(3.0, 0.1 * (2**attempt)) * (0.5 + random.random() / 2)
            log.debug("retrying %s %s in %.2fs after %s", method, key or self.bucket, delay,
                      type(failure).__name__)
            if cancel is not None:
                cancel.sleep(delay)
            else:
                time.sleep(delay)
            attempt += 1

    # -- objects -------------------------------------------------------------------------
    def put(self, key: str, data: bytes, cancel: Optional["CancelToken"] = None) -> None:
        self.request("PUT", key, body=data, headers={"Content-Type": "application/octet-stream"}, cancel=cancel)

    def get(self, key: str, size: Optional[int] = None, cancel: Optional["CancelToken"] = None) -> bytes:
        return self.request("GET", key, expect_len=size, cancel=cancel)[1]

    def delete(self, key: str) -> None:
        self.request("DELETE", key, ok=(404,))

    # -- bucket --------------------------------------------------------------------------
    def bucket_exists(self) -> bool:
        status = self.request("HEAD", ok=(404, 400))[0]
        return status < 300

    def create_bucket(self) -> None:
        body = b""
        if self.region and self.region != "us-east-1":
            body = ("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    f"<LocationConstraint>{self.region}</LocationConstraint></CreateBucketConfiguration>").encode()
        try:
            self.request("PUT", body=body)
        except S3RequestError as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    # -- multipart upload ----------------------------------------------------------------
    def upload_multipart(self, key: str, reader: "Readable", *, part_size: int, workers: int,
                         on_bytes: Optional[Callable[[int], None]] = None,
                         cancel: Optional["CancelToken"] = None) -> None:
        """Read ``reader`` in order, ``part_size`` at a time, and send up to ``workers`` parts at once.

        Parts are read sequentially by the calling thread (so a hashing reader
        sees every byte once, in order) and uploaded on a small pool; at most
        ``workers`` parts are held in memory. Any failure, and a ``cancel``
        (checked before each part), aborts the upload (so no orphaned parts
        are billed) and is raised.
        """
        checksums = self.multipart_checksums
        upload_id = self._create_multipart(key, checksums)
        if upload_id is None:  # the server refused a checksummed upload: plain from now on
            checksums = self.multipart_checksums = False
            upload_id = self._create_multipart(key, False)
        assert upload_id is not None
        done: list[tuple[int, str, str]] = []
        try:
            with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cfs-part") as pool:
                inflight: set[Future] = set()
                number = 0
                while True:
                    if cancel is not None:
                        cancel.check()
                    data = reader.read(part_size)
                    if not data and number > 0:
                        break
                    number += 1
                    if number > MAX_PARTS:
                        raise S3RequestError(400, "EntityTooLarge", f"more than {MAX_PARTS} parts of {part_size} bytes")
                    last = len(data) < part_size
                    inflight.add(pool.submit(self._put_part, key, upload_id, number, data, checksums, on_bytes,
                                             cancel))
                    del data  # held by the part's task only
                    while len(inflight) >= workers:
                        finished, inflight = wait(inflight, return_when=FIRST_COMPLETED)
                        done.extend(f.result() for f in finished)
                    if last:
                        break
                for f in inflight:
                    done.append(f.result())
            self._complete_multipart(key, upload_id, sorted(done))
        except BaseException:
            try:
                self.request("DELETE", key, query=f"uploadId={quote(upload_id, safe='')}", ok=(404,))
            except Exception as exc:  # the original failure matters more
                log.debug("cannot abort multipart upload of %s: %s", key, exc)
            raise

    def _create_multipart(self, key: str, checksums: bool) -> Optional[str]:
        headers = {"Content-Type": "application/octet-stream"}
        if checksums:
            headers["x-amz-checksum-algorithm"] = "CRC32"
        try:
            _, data, _ = self.request("POST", key, query="uploads=", headers=headers)
        except S3RequestError as exc:
            if checksums and exc.status in (400, 501) and exc.code in ("InvalidArgument", "NotImplemented",
                                                                      "InvalidRequest"):
                log.info("S3 at %s refused a checksummed multipart upload (%s); sending plain ones",
                         self.endpoint, exc.code)
                return None
            raise
        upload_id = _find(ElementTree.fromstring(data), "UploadId")
        if not upload_id:
            raise S3RequestError(200, "MalformedResponse", "CreateMultipartUpload returned no UploadId")
        return upload_id

    def _put_part(self, key: str, upload_id: str, number: int, data: bytes, checksums: bool,
                  on_bytes: Optional[Callable[[int], None]],
                  cancel: Optional["CancelToken"] = None) -> tuple[int, str, str]:
        headers = {}
        crc = ""
        if checksums:
            crc = headers["x-amz-checksum-crc32"] = crc32_b64(data)
        _, _, answer = self.request("PUT", key, body=data, headers=headers, sign_body=False,
                                    query=f"partNumber={number}&uploadId={quote(upload_id, safe='')}",
                                    cancel=cancel)
        if on_bytes is not None:
            on_bytes(len(data))
        return number, answer.get("etag", ""), crc

    def _complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str, str]]) -> None:
        xml = ["<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"]
        for number, etag, crc in parts:
            etag = etag.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            xml.append(f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag>"
                       + (f"<ChecksumCRC32>{crc}</ChecksumCRC32>" if crc else "") + "</Part>")
        xml.append("</CompleteMultipartUpload>")
        query = f"uploadId={quote(upload_id, safe='')}"
        _, data, _ = self.request("POST", key, body="".join(xml).encode(), query=query,
                                  headers={"Content-Type": "application/xml"})
        # S3 may answer 200 with an <Error> body when completion fails late
        if b"<Error>" in data[:512]:
            raise _error(200, data)

    def close(self) -> None:
        self._pool.close()
