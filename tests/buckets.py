"""Buckets on the tests' S3 server (moto's server mode, :func:`conftest.s3_server`)."""

from __future__ import annotations

import uuid


def new_bucket(endpoint_url: str) -> str:
    """Create a new, empty bucket with a unique name on the S3 server at ``endpoint_url``;
    return its URL ``s3://NAME`` (for module-scoped fixtures, which cannot use :func:`s3_bucket`)."""
    import boto3

    name = f"cmpipe-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint_url).create_bucket(Bucket=name)
    return f"s3://{name}"
