"""The S3 requests of an upload, signed by botocore's SigV4 signer and sent over ``http.client``.

Why not boto3 (or urllib3) for these: a 1 KiB object costs botocore ~2-3 ms of
CPU per request (event hooks, parameter validation, endpoint rules) and
urllib3 ~0.9 ms more, against ~0.5 ms for a bare ``http.client`` request; on
a 2-core machine a 1,000-file first sync is CPU-bound on exactly that (and the
Go CLI spends ~1.3 ms per file in all). Building a boto3 client alone costs
~0.25 s of CPU, so an upload never builds one: small objects are one PUT,
large ones a multipart upload (create, parts in parallel, complete; aborted
on failure), and the bucket check is a HEAD. Downloads of large objects and
everything else stay on boto3 (:mod:`pollinator.cfs.s3`).

Signing is botocore's ``S3SigV4Auth`` applied to a bare request (its maths,
without its per-call pipeline). A small PUT signs its body's SHA-256; a
multipart part is sent ``UNSIGNED-PAYLOAD`` with an ``x-amz-checksum-crc32``
header instead, which the server verifies (the upload is created with
``ChecksumAlgorithm=CRC32``, as the Go client's minio library does with
CRC32C). That saves hashing every part twice, and on moto it also spares the
server a whole-object copy at completion. A server that refuses checksummed
multipart uploads gets plain ones (remembered per client).

Connections are kept alive per thread and reopened when the server closes
them. Retries: 5xx/429 and transport failures (including a body that breaks
off) are resent with jittered backoff; any other answer raises
:class:`S3RequestError`, whose text never contains a credential. Path-style
addressing only (what MinIO, moto, Ceph and the Go client use for a custom
endpoint).
"""

from __future__ import annotations

import base64
import http.client
import logging
import random
import threading
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import SimpleNamespace
from typing import BinaryIO, Callable, Optional
from urllib.parse import quote
from xml.etree import ElementTree

from pollinator.config import S3Settings

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_PARTS = 10_000  # S3's limit per multipart upload
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
# botocore reads "payload_signing_enabled" from the client config in the request context
_UNSIGNED = SimpleNamespace(s3={"payload_signing_enabled": False})


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


class LeanS3:
    """Signed S3 requests for one bucket; safe to share between threads (one connection per thread)."""

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
        self._ssl = None
        if settings.tls:
            import ssl

            try:
                import certifi  # the CA bundle httpx and botocore use

                self._ssl = ssl.create_default_context(cafile=certifi.where())
            except ImportError:  # pragma: no cover - certifi comes with httpx
                self._ssl = ssl.create_default_context()
            if settings.skip_verify:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl.CERT_NONE
        self._local = threading.local()
        self._conns: list[http.client.HTTPConnection] = []
        self._conns_lock = threading.Lock()
        self.multipart_checksums = True
        from botocore.auth import S3SigV4Auth  # imported when the first object moves
        from botocore.credentials import Credentials

        self._signer = S3SigV4Auth(Credentials(settings.access_key.get_secret_value(),
                                               settings.secret_key.get_secret_value()), "s3", self.region)

    def __repr__(self) -> str:
        return f"LeanS3(endpoint={self.scheme}://{self.endpoint!r}, bucket={self.bucket!r})"

    # -- signing and sending -------------------------------------------------------------
    def _headers(self, method: str, url: str, body: Optional[bytes], extra: Optional[dict[str, str]] = None,
                 sign_body: bool = True) -> dict[str, str]:
        """botocore's own SigV4 signer on a bare request: its maths, without its per-call pipeline."""
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body or b"", headers=extra)
        if not sign_body:
            request.context["client_config"] = _UNSIGNED
        self._signer.add_auth(request)
        return dict(request.headers.items())

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._ssl is not None:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.connect_timeout,
                                                   context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self.connect_timeout)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        if conn.sock is None:
            conn.connect()  # connect_timeout applies to the connect only
            conn.sock.settimeout(self.timeout)
            conn._pollinator_used = False  # type: ignore[attr-defined]
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def _path(self, key: str = "") -> str:
        path = "/" + quote(self.bucket, safe="-_.~")
        return path + "/" + quote(key, safe="/-_.~") if key else path

    def request(self, method: str, key: str = "", *, body: Optional[bytes] = None, query: str = "",
                headers: Optional[dict[str, str]] = None, sign_body: bool = True,
                expect_len: Optional[int] = None, ok: tuple[int, ...] = ()) -> tuple[int, bytes, dict[str, str]]:
        """One signed request, retried; returns (status, body, lower-cased headers) of a 2xx answer.

        ``ok`` lists further statuses returned rather than raised (e.g. 404 for a HEAD).
        """
        path = self._path(key) + (f"?{query}" if query else "")
        url = f"{self.scheme}://{self.endpoint}{path}"
        attempt = 0
        fresh_retry = True
        while True:
            signed = self._headers(method, url, body, headers, sign_body)
            reused = False
            try:
                conn = self._connection()
                reused = getattr(conn, "_pollinator_used", False)
                conn._pollinator_used = True  # type: ignore[attr-defined]
                conn.request(method, path, body=body, headers=signed)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    conn.close()
                status = resp.status
                if status < 300 or status in ok:
                    if expect_len is not None and status < 300 and len(data) != expect_len:
                        raise ShortBody(f"short body: {len(data)} of {expect_len} bytes")
                    return status, data, {k.lower(): v for k, v in resp.getheaders()}
                failure: Exception = _error(status, data)
                if status not in RETRY_STATUS:
                    raise failure
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                if reused and fresh_retry and isinstance(exc, (ConnectionError, http.client.RemoteDisconnected)):
                    fresh_retry = False  # a kept-alive connection the server had closed: resend at once
                    continue
                failure = exc
            if attempt + 1 >= self.attempts:
                raise failure
            delay = min(3.0, 0.1 * (2**attempt)) * (0.5 + random.random() / 2)
            log.debug("retrying %s %s in %.2fs after %s", method, key or self.bucket, delay,
                      type(failure).__name__)
            time.sleep(delay)
            attempt += 1

    # -- objects -------------------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        self.request("PUT", key, body=data, headers={"Content-Type": "application/octet-stream"})

    def get(self, key: str, size: Optional[int] = None) -> bytes:
        return self.request("GET", key, expect_len=size)[1]

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
    def upload_multipart(self, key: str, reader: BinaryIO, *, part_size: int, workers: int,
                         on_bytes: Optional[Callable[[int], None]] = None) -> None:
        """Read ``reader`` in order, ``part_size`` at a time, and send up to ``workers`` parts at once.

        Parts are read sequentially by the calling thread (so a hashing reader
        sees every byte once, in order) and uploaded on a small pool; at most
        ``workers`` parts are held in memory. Any failure aborts the upload
        (so no orphaned parts are billed) and is raised.
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
                    data = reader.read(part_size)
                    if not data and number > 0:
                        break
                    number += 1
                    if number > MAX_PARTS:
                        raise S3RequestError(400, "EntityTooLarge", f"more than {MAX_PARTS} parts of {part_size} bytes")
                    last = len(data) < part_size
                    inflight.add(pool.submit(self._put_part, key, upload_id, number, data, checksums, on_bytes))
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
                  on_bytes: Optional[Callable[[int], None]]) -> tuple[int, str, str]:
        headers = {}
        crc = ""
        if checksums:
            crc = headers["x-amz-checksum-crc32"] = crc32_b64(data)
        _, _, answer = self.request("PUT", key, body=data, headers=headers, sign_body=False,
                                    query=f"partNumber={number}&uploadId={quote(upload_id, safe='')}")
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
        _, data, _ = self.request("POST", key, body="".join(xml).encode(), query=f"uploadId={quote(upload_id, safe='')}",
                                  headers={"Content-Type": "application/xml"})
        # S3 may answer 200 with an <Error> body when completion fails late
        if b"<Error>" in data[:512]:
            raise _error(200, data)

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
