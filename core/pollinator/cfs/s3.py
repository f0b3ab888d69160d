"""The S3 side of ColonyFS: uploads over lean signed requests, large downloads through boto3.

Why not boto3 for everything: botocore costs a few milliseconds of CPU per
call and ~0.25 s to build a client, which dominates a sync of small files, so
every upload request (one PUT per small object, a multipart upload for large
ones, the bucket check) goes through :mod:`pollinator.cfs.sigv4`: botocore's
SigV4 signer over ``http.client``. Downloads of objects above
``multipart_threshold`` use boto3's transfer manager (ranged GETs with
``max_concurrency`` in flight); small ones are one signed GET.

Retries: the lean requests resend 5xx/429 and transport failures (a body that
breaks off included) with backoff; botocore's "standard" retry mode does the
same for boto3 calls, and the transfer manager re-reads a download body that
breaks off.

Credentials are always ours (``S3Settings``), never a file record's: the Go
CLI stores its S3 keys in every record and we neither trust nor use them.
Integrity: ColonyFS verifies SHA-256 end to end (recorded on upload, checked
on download); multipart parts also carry a CRC32 the server checks. boto3's
own request/response checksums are left to S3 ("when_required"): moto, MinIO
and older gateways differ on flexible checksums.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, BinaryIO, Callable, Optional

from pollinator.config import S3Settings

if TYPE_CHECKING:  # sigv4 pulls in botocore's signer: loaded with the first transfer, not at import
    from pollinator.cfs.cancel import CancelToken
    from pollinator.cfs.sigv4 import LeanS3, Readable

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MULTIPART_THRESHOLD = 16 * MiB
MULTIPART_CHUNKSIZE = 16 * MiB
MAX_PARTS = 10_000  # S3's limit per multipart upload
PARTS_IN_FLIGHT = 4

ByteCallback = Callable[[int], None]



def record_endpoint(server: str, port: int) -> str:
    """``host:port`` of a file record, whichever way it was written.

    The Go CLI stores ``server="host:port", port=-1``; pycolonies and we store
    ``server="host", port=<int>``. Used for messages only: we always transfer
    through our own configured endpoint and bucket, as the Go client does.
    """
    if port is None or port < 0 or (":" in server and not server.startswith("[")):
        return server
    return f"{server}:{port}" if port else server


def describe_error(exc: BaseException) -> str:
    """A short, secret-free description of a boto/transport error."""
    from pollinator.cfs.sigv4 import S3RequestError

    if isinstance(exc, S3RequestError):
        return str(exc)
    import botocore.exceptions  # already loaded if a boto error exists

    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return f"S3 {err.get('Code', 'error')} (HTTP {status}): {err.get('Message', '')}".rstrip(": ")
    return f"{type(exc).__name__}: {exc}"


class S3Store:
    """One bucket, reached through our settings; safe to share between threads.

    boto3 and botocore are imported and their clients built on first use: that
    costs ~0.2 s, and a no-change sync (or a CLI command that syncs nothing)
    needs neither.
    """

    def __init__(self, settings: S3Settings, *, workers: int = 8, max_attempts: int = 6,
                 multipart_threshold: int = MULTIPART_THRESHOLD, multipart_chunksize: int = MULTIPART_CHUNKSIZE):
        self.settings = settings
        self.bucket = settings.bucket
        self.workers = workers
        self.max_attempts = max_attempts
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self._client = None
        self._lean: Optional["LeanS3"] = None
        self._transfer_config = None
        self._lock = threading.Lock()

    @property
    def client(self):
        """The boto3 client (botocore's "standard" retries, path-style addressing)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    import botocore.config

                    config = botocore.config.Config(
                        retries={"mode": "standard", "max_attempts": self.max_attempts},
                        max_pool_connections=max(16, self.workers * 4),
                        connect_timeout=10,
                        read_timeout=120,
                        s3={"addressing_style": "path"},
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                    )
                    self._client = boto3.session.Session().client(
                        "s3",
                        endpoint_url=self.settings.url,
                        aws_access_key_id=self.settings.access_key.get_secret_value(),
                        aws_secret_access_key=self.settings.secret_key.get_secret_value(),
                        region_name=self.settings.region,
                        verify=not self.settings.skip_verify,
                        config=config,
                    )
        return self._client

    @property
    def lean(self) -> "LeanS3":
        if self._lean is None:
            with self._lock:
                if self._lean is None:
                    from pollinator.cfs.sigv4 import LeanS3

                    self._lean = LeanS3(self.settings, attempts=self.max_attempts)
        return self._lean

    def close(self) -> None:
        """Release both connection pools (boto3's and the lean one); the store can be used again after."""
        with self._lock:
            lean, self._lean = self._lean, None
            client, self._client = self._client, None
        if lean is not None:
            lean.close()
        if client is not None:
            client.close()

    @property
    def transfer_config(self):
        if self._transfer_config is None:
            from boto3.s3.transfer import TransferConfig

            self._transfer_config = TransferConfig(multipart_threshold=self.multipart_threshold,
                                                   multipart_chunksize=self.multipart_chunksize,
                                                   max_concurrency=max(2, self.workers), use_threads=True)
        return self._transfer_config

    def __repr__(self) -> str:
        return f"S3Store(endpoint={self.settings.url!r}, bucket={self.bucket!r})"

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (the Go client does the same)."""
        if not self.lean.bucket_exists():
            self.lean.create_bucket()

    # -- upload ------------------------------------------------------------------
    def put_small(self, key: str, data: bytes, cancel: Optional["CancelToken"] = None) -> None:
        """One signed PUT (retried inside :class:`LeanS3`; a cancel cuts the retries' backoff short)."""
        self.lean.put(key, data, cancel=cancel)

    def upload_large(self, key: str, fileobj: "Readable", on_bytes: Optional[ByteCallback] = None,
                     size: int = 0, cancel: Optional["CancelToken"] = None) -> None:
        """A multipart upload, up to ``PARTS_IN_FLIGHT`` parts at once; parts grow past the chunk size for huge files.

        More parts in flight buy nothing on a loopback or LAN endpoint (the
        server, not the link, is the limit) and cost client CPU and memory:
        8 in flight spent ~0.3 s of CPU on 200 MB where 2-4 spent ~0.2 s.
        """
        part_size = max(self.multipart_chunksize, -(-size // MAX_PARTS))
        in_flight = max(2, min(PARTS_IN_FLIGHT, self.workers))
        self.lean.upload_multipart(key, fileobj, part_size=part_size, workers=in_flight,
                                   on_bytes=on_bytes, cancel=cancel)

    # -- download ----------------------------------------------------------------
    def get_small(self, key: str, size: Optional[int] = None, cancel: Optional["CancelToken"] = None) -> bytes:
        """The whole object in one signed GET, retrying 5xx and bodies that break off mid-stream."""
        return self.lean.get(key, size, cancel=cancel)

    def download_large(self, key: str, fileobj: BinaryIO, on_bytes: Optional[ByteCallback] = None) -> None:
        self.client.download_fileobj(self.bucket, key, fileobj, Config=self.transfer_config, Callback=on_bytes)

    def remove(self, key: str) -> None:
        self.lean.delete(key)

    def exists(self, key: str) -> bool:
        import botocore.exceptions

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except botocore.exceptions.ClientError:
            return False

