"""A lean SigV4-signed PUT/GET for small objects.

Why: for a 1 KiB object botocore spends ~2-3 ms of CPU per request (event
hooks, user-agent building, parameter validation, endpoint rules), which is
more than the transfer itself and more than the Colonies RPC that follows it;
on a busy machine a 1,000-file first sync is CPU-bound on exactly that. Here a
PUT is botocore's SigV4 signer applied to a bare request plus one urllib3
request. Large objects, bucket
operations and everything else stay on boto3.

Path-style addressing only (what MinIO, moto, Ceph and the Go client's MinIO
library use for a custom endpoint). Retries 5xx/429 and transport failures
(including a body that breaks off) with jittered backoff; any other error
raises :class:`S3RequestError`, whose text never contains a credential.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Optional
from urllib.parse import quote
from xml.etree import ElementTree

import urllib3

from pollinator.config import S3Settings

log = logging.getLogger(__name__)

RETRY_STATUS = {429, 500, 502, 503, 504}


class S3RequestError(Exception):
    """A non-retryable (or retried-out) S3 answer: status, S3 error code and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"S3 {code or 'error'} (HTTP {status}){': ' + message if message else ''}")
        self.status, self.code = status, code


def _error(status: int, body: bytes) -> S3RequestError:
    code = message = ""
    try:
        root = ElementTree.fromstring(body)
        code = root.findtext("Code") or ""
        message = root.findtext("Message") or ""
    except ElementTree.ParseError:
        pass
    return S3RequestError(status, code, message)


class LeanS3:
    def __init__(self, settings: S3Settings, *, pool_size: int = 16, attempts: int = 6, timeout: float = 60.0):
        self.host = settings.endpoint
        self.region = settings.region
        self.bucket = settings.bucket
        self.scheme = "https" if settings.tls else "http"
        self._access = settings.access_key.get_secret_value()
        self._secret = settings.secret_key.get_secret_value()
        self.attempts = attempts
        kwargs = {"cert_reqs": "CERT_NONE"} if settings.tls and settings.skip_verify else {}
        self._http = urllib3.PoolManager(num_pools=4, maxsize=pool_size, block=False,
                                         timeout=urllib3.Timeout(connect=10.0, read=timeout), retries=False,
                                         **kwargs)
        from botocore.auth import S3SigV4Auth  # imported when the first small object moves
        from botocore.credentials import Credentials

        self._signer = S3SigV4Auth(Credentials(self._access, self._secret), "s3", self.region)

    def __repr__(self) -> str:
        return f"LeanS3(endpoint={self.scheme}://{self.host!r}, bucket={self.bucket!r})"

    def _headers(self, method: str, url: str, body: Optional[bytes]) -> dict[str, str]:
        """botocore's own SigV4 signer on a bare request: its maths, without its per-call pipeline."""
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body or b"")
        self._signer.add_auth(request)
        return dict(request.headers.items())

    def _request(self, method: str, key: str, body: Optional[bytes] = None,
                 expect_len: Optional[int] = None) -> bytes:
        path = "/" + quote(self.bucket, safe="-_.~") + "/" + quote(key, safe="/-_.~")
        url = f"{self.scheme}://{self.host}{path}"
        attempt = 0
        while True:
            headers = self._headers(method, url, body)
            if body is not None:
                headers["Content-Type"] = "application/octet-stream"
            try:
                resp = self._http.request(method, url, body=body, headers=headers, preload_content=True,
                                          redirect=False)
                data = resp.data
                if resp.status < 300:
                    if expect_len is not None and len(data) != expect_len:
                        raise urllib3.exceptions.ProtocolError(f"short body: {len(data)} of {expect_len} bytes")
                    return data
                if resp.status not in RETRY_STATUS:
                    raise _error(resp.status, data)
                failure: Exception = _error(resp.status, data)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                failure = exc
            if attempt + 1 >= self.attempts:
                raise failure
            delay = min(3.0, 0.1 * (2**attempt)) * (0.5 + random.random() / 2)
            log.debug("retrying %s %s in %.2fs after %s", method, key, delay, type(failure).__name__)
            time.sleep(delay)
            attempt += 1

    def put(self, key: str, data: bytes) -> None:
        self._request("PUT", key, data)

    def get(self, key: str, size: Optional[int] = None) -> bytes:
        return self._request("GET", key, expect_len=size)

    def close(self) -> None:
        self._http.clear()
