"""Masking AWS credentials in any text that may reach a message, a log or the results table.

Two layers: the exact values in use (environment variables and the credentials that each
Storage's boto3 session resolved, registered here) and patterns that look like credentials
wherever they come from (key ids, `aws_secret_access_key=...`, signed-URL and Authorization
header fields, passwords in URLs).
"""

from __future__ import annotations

import os
import re
import threading
from urllib.parse import quote

from botocore.credentials import Credentials

MASK = "<redacted>"

_CREDENTIAL_ENVIRONMENT_VARIABLES = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
)

_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_NAMED_SECRET = re.compile(
    r"(?i)(\b(?:aws_secret_access_key|aws_session_token|aws_security_token|aws_access_key_id"
    r"|secret_?access_?key|session_?token|access_?key(?:_?id)?|secret_?key)[\"']?\s*[=:]\s*[\"']?)[^\s\"',;&]+")
_SIGNED_QUERY_PARAMETER = re.compile(
    r"(?i)([?&](?:X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId"
    r"|x-amz-security-token)=)[^&\s\"'<>]+")
_AUTHORIZATION_FIELD = re.compile(r"(?i)(\b(?:Credential|Signature)=)[^,\s\"'&]+")
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+(@)")

_registered: list[Credentials] = []
_registered_lock = threading.Lock()


def register_credentials(credentials: Credentials | None) -> None:
    """Remember credentials that a boto3 session resolved, so that `redact` masks their values too."""
    if credentials is None:
        return
    with _registered_lock:
        if not any(known is credentials for known in _registered):
            _registered.append(credentials)


def current_secret_values() -> list[str]:
    """The credential values in use now, longest first (so a value containing another is masked whole)."""
    values = {os.environ.get(name, "") for name in _CREDENTIAL_ENVIRONMENT_VARIABLES}
    with _registered_lock:
        registered = list(_registered)
    for credentials in registered:
        frozen = credentials.get_frozen_credentials()
        values.update((frozen.access_key or "", frozen.secret_key or "", frozen.token or ""))
    values.discard("")
    encoded = {quote(value, safe="") for value in values}
    return sorted(values | encoded, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every known credential value and every credential-looking token replaced by MASK."""
    for value in current_secret_values():
        text = text.replace(value, MASK)
    text = _ACCESS_KEY_ID.sub(MASK, text)
    text = _NAMED_SECRET.sub(rf"\1{MASK}", text)
    text = _SIGNED_QUERY_PARAMETER.sub(rf"\1{MASK}", text)
    text = _AUTHORIZATION_FIELD.sub(rf"\1{MASK}", text)
    return _URL_PASSWORD.sub(rf"\1{MASK}\2", text)

