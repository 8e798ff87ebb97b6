"""Fixtures for the storage tests: a bucket per module on the session S3 server, a prefix per test."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipeline.storage.store import Location, parse_location

if TYPE_CHECKING:
    from tests.conftest import S3Server


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    """One bucket for a module's S3 tests; each test works under its own prefix."""
    return s3_server.create_bucket("storage")


@pytest.fixture
def prefix(bucket: str, request: pytest.FixtureRequest) -> Location:
    return parse_location(f"s3://{bucket}/{request.node.name.replace('[', '-').strip(']')}")
