"""Secrets in URLs, removed from everything a run writes or prints about them: one rule, here.

A video row's URL may carry credentials: a password in its userinfo (``https://user:pw@host``)
or a signature or token in its query (a signed GCS or S3 URL, an API key). The download needs
them; the dataset, the failure report, the id index and the log lines do not, and those are read
by people the credentials were never meant for. :func:`redact` keeps the URL readable (scheme,
host, path, the harmless parameters) and replaces each secret with ``REDACTED``.

It is applied where a row's text leaves the fetcher: clip ids made from a URL
(`pipeline.read.annotations`), the ``source`` of a record (`transforms.assemble`) and every failure
line's id, input fields and message (`pipeline.elements.Failure.of`).
"""

from __future__ import annotations

import re
from typing import Any

MARK = "REDACTED"

# Query parameters whose value is a secret (compared lower-case): signed-URL signatures and
# credentials (GCS, S3, Azure SAS), tokens, keys, passwords.
SECRET_PARAMETERS = frozenset({
    "x-goog-signature", "x-goog-credential", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
    "signature", "sig", "token", "access_token", "id_token", "refresh_token", "auth", "authorization",
    "key", "api_key", "apikey", "api-key", "password", "passwd", "pwd", "secret", "client_secret",
    "credential", "credentials", "session", "sessionid", "code",
})
# ... and any parameter whose name says it is one.
_SECRET_NAME = re.compile(r"token|signature|secret|passw|credential|api[-_]?key|session", re.IGNORECASE)

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")
_PARAMETER = re.compile(r"([?&;])([^=&;#]+)=([^&;#]*)")


def is_secret_parameter(name: str) -> bool:
    """Whether a query parameter called `name` holds a secret."""
    return name.lower() in SECRET_PARAMETERS or bool(_SECRET_NAME.search(name))


def _redact_url(url: str) -> str:
    url = _USERINFO.sub(lambda m: f"{m.group(1)}{MARK}@", url, count=1)

    def parameter(m: re.Match[str]) -> str:
        return f"{m.group(1)}{m.group(2)}={MARK}" if is_secret_parameter(m.group(2)) else m.group(0)

    return _PARAMETER.sub(parameter, url)


def redact(value: Any) -> Any:
    """`value` (str, or a list/dict of them) with every URL's userinfo and secret query values as ``REDACTED``.

    Text without a URL comes back unchanged; so do other types.
    """
    if isinstance(value, str):
        return _URL.sub(lambda m: _redact_url(m.group(0)), value) if "://" in value else value
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    return value
