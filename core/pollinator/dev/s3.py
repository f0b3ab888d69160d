"""The local colony's bucket."""

from __future__ import annotations

import boto3
from botocore.config import Config

from pollinator.config import S3Settings


def ensure_bucket(s3: S3Settings) -> None:
    """Create the bucket unless it is there already."""
    client = boto3.client("s3", endpoint_url=s3.url, aws_access_key_id=s3.access_key.get_secret_value(),
                          aws_secret_access_key=s3.secret_key.get_secret_value(), region_name=s3.region,
                          config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 5}))
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if s3.bucket not in existing:
        client.create_bucket(Bucket=s3.bucket)
