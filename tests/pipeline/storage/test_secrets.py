"""pipeline.storage.secrets.redact: credential values and credential-shaped text never survive it."""

from __future__ import annotations

import secrets
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import Credentials

from pipeline.storage.secrets import MASK, redact, register_credentials


@pytest.fixture
def environment_credentials(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fresh random credentials in the environment, with '/' and '+' as real secrets have."""
    values = {"AWS_ACCESS_KEY_ID": "SBENV" + secrets.token_hex(8).upper(),
              "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(20) + "/+" + secrets.token_urlsafe(8),
              "AWS_SESSION_TOKEN": secrets.token_urlsafe(60)}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_environment_credentials_are_masked_raw_and_url_encoded(environment_credentials: dict[str, str]) -> None:
    secret = environment_credentials["AWS_SECRET_ACCESS_KEY"]
    text = " | ".join([*environment_credentials.values(), quote(secret, safe=""), "s3://bucket/key.png"])
    redacted = redact(text)
    for value in [*environment_credentials.values(), quote(secret, safe="")]:
        assert value not in redacted
    assert redacted.endswith("s3://bucket/key.png")
    assert redacted.count(MASK) == 4


def test_registered_boto3_credentials_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    access_key, secret_key, token = "SBREG" + secrets.token_hex(8), secrets.token_urlsafe(30), secrets.token_hex(40)
    assert secret_key in redact(f"secret {secret_key}")
    register_credentials(Credentials(access_key, secret_key, token))
    redacted = redact(f"key {access_key} secret {secret_key} token {token}")
    assert redacted == f"key {MASK} secret {MASK} token {MASK}"


@pytest.mark.parametrize("text", [
    "AKIAIOSFODNN7EXAMPLE", "id ASIAY34FZKBOKMUTVV7A here",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aws_session_token: FwoGZXIvYXdzEJr//////////wEaDEXAMPLETOKEN",
    '{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}',
    '{"accessKey": "AKID-NOT-AWS-SHAPED", "secretKey": "plain-secret-value"}',
    "http://user:p4ssw0rd@proxy.internal:3128/",
])
def test_credential_shaped_text_is_masked(text: str) -> None:
    redacted = redact(text)
    assert MASK in redacted
    for secret in ("AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A", "wJalrXUtnFEMI", "FwoGZXIvYXdzEJr",
                   "AKID-NOT-AWS-SHAPED", "plain-secret-value", "p4ssw0rd"):
        assert secret not in redacted


def test_ordinary_messages_pass_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    message = ("s3://bucket/AKIA/cat.png: no such object; row 12 column alpha_global: "
               "-1 is negative; see https://example.com/docs?page=2")
    assert redact(message) == message


def test_presigned_urls_keep_their_address_but_lose_signature_and_credential() -> None:
    access_key, secret_key, token = "SBPRESIGN" + secrets.token_hex(6), secrets.token_urlsafe(30), secrets.token_hex(30)
    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                    aws_session_token=token, region_name="eu-west-1")
    for signature_version in ("s3v4", "s3"):
        client = session.client("s3", config=Config(signature_version=signature_version))
        url = client.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": "cat.png"})
        signature = url.split("Signature=")[1].split("&")[0]
        redacted = redact(f"could not fetch {url}")
        assert "bucket" in redacted and "cat.png" in redacted
        for secret in (access_key, token, quote(token, safe=""), signature):
            assert secret not in redacted


def test_authorization_header_fields_are_masked() -> None:
    header = ("Authorization: AWS4-HMAC-SHA256 Credential=SBHEADERKEY123/20260101/us-east-1/s3/aws4_request, "
              "SignedHeaders=host;x-amz-date, "
              "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")
    redacted = redact(header)
    assert "SBHEADERKEY123" not in redacted and "5d672d79" not in redacted
    assert "SignedHeaders=host;x-amz-date" in redacted

