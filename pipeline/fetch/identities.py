"""Fetch identities (cookie jars, proxies): lists, staging, one per worker process, rotation, redaction.

``--cookies`` and ``--proxy`` take one value, a comma list, or ``@FILE`` (local or gs://) with one
value per line (blank lines and ``#`` comments skipped). Identity ``i`` of a run is
``(cookies[i % C], proxy[i % P])``, ``max(C, P)`` identities in all.

Staging: the launcher reads every cookie file (:func:`stage_cookies`) and the contents travel
inside the pickled fetch config, because Dataflow workers cannot read the launcher's files.
The option values themselves are then replaced by redacted ones (:func:`scrub_options`), so no
password, token or cookie reaches the pipeline options that Beam logs under ``-v``, shows in the
Dataflow console and hands every worker process in its environment.

Each worker process takes one identity, stably (a hash of its host name and pid), and moves to
the next when its identity hits a wall (:meth:`Pool.rotate_from`, on ``rate_limited``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import threading
import urllib.parse
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

_LOG = logging.getLogger(__name__)

MAX_LIST_BYTES = 1 << 20  # an @file of identities (or a cookie file) larger than this is refused
SECRET_OPTIONS = ("proxy", "yt_dlp_extractor_args")


def split_values(value: str | None, *, flag: str) -> list[str]:
    """The values of a list flag: ``a,b``, or the lines of ``@FILE`` (local or gs://). Raises ValueError."""
    if not value:
        return []
    if value.startswith("@"):
        text = read_text(value[1:], flag=flag)
        items = [line.strip() for line in text.splitlines()]
        items = [item for item in items if item and not item.startswith("#")]
        if not items:
            raise ValueError(f"{flag} {value}: the file names no value")
        return items
    items = [item.strip() for item in value.split(",")]
    if not all(items):
        raise ValueError(f"{flag} has an empty entry in its comma list")
    return items


def read_text(path: str, *, flag: str) -> str:
    """A small text file, local or remote (gs://), read through Beam's FileSystems. Raises ValueError."""
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel

    try:
        with FileSystems.open(path) as f:
            data = f.read(MAX_LIST_BYTES + 1)
    except Exception as e:  # pylint: disable=broad-except  (FileSystems raises its own error types)
        raise ValueError(f"{flag}: cannot read {path}: {type(e).__name__}") from None
    if len(data) > MAX_LIST_BYTES:
        raise ValueError(f"{flag}: {path} is over {MAX_LIST_BYTES >> 20} MiB")
    return data.decode("utf-8", "replace")


def stage_cookies(value: str | None) -> tuple[str, ...]:
    """The contents of every ``--cookies`` file, read here (the launcher) for the workers. Raises ValueError."""
    jars = []
    for path in split_values(value, flag="--cookies"):
        text = read_text(path, flag="--cookies")
        if not text.lstrip().startswith("#") and "\t" not in text:
            raise ValueError(f"--cookies {path} is not a Netscape cookies file (tab-separated, as yt-dlp "
                             "--cookies and browser exporters write)")
        jars.append(text)
    return tuple(jars)


def redact_url(url: str) -> str:
    """``url`` with its password (and any query string) replaced by ``***``: safe for logs and messages."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def redact_extractor_args(text: str) -> str:
    """Extractor args with token-like values (po_token, visitor_data, data_sync_id, ...) replaced by ``***``."""
    return re.sub(r"((?:po_?token|token|visitor_data|data_sync_id|cookie|password|key)\w*=)[^;\s]*", r"\1***",
                  text or "", flags=re.IGNORECASE)


def scrub_options(pipeline_options: PipelineOptions) -> None:
    """Replaces the secret-bearing option values by redacted ones, in place (after the fetch config is staged).

    Beam logs the options under ``-v``, the Dataflow console shows them, and every SDK worker
    process gets them in its environment (``PIPELINE_OPTIONS``); the staged fetch config, not the
    options, carries the real values to the workers.
    """
    found = pipeline_options.get_all_options()
    updates = {}
    if found.get("proxy"):
        try:
            updates["proxy"] = ",".join(redact_url(p) for p in split_values(found["proxy"], flag="--proxy"))
        except ValueError:
            updates["proxy"] = "***"
    if found.get("yt_dlp_extractor_args"):
        updates["yt_dlp_extractor_args"] = redact_extractor_args(found["yt_dlp_extractor_args"])
    if updates:
        # pylint: disable=protected-access  (every view of the options shares this dict; Beam has no setter)
        pipeline_options._all_options.update(updates)


@dataclasses.dataclass(frozen=True)
class Identity:
    """One identity: its number (1-based, for messages), cookies text and proxy URL (either may be None)."""

    number: int
    count: int
    cookies: str | None = dataclasses.field(default=None, repr=False)
    proxy: str | None = dataclasses.field(default=None, repr=False)

    @property
    def label(self) -> str:
        """``identity 2/3 (proxy http://u:***@host:port)``: what logs and messages name, no secret in it."""
        parts = []
        if self.proxy:
            parts.append(f"proxy {redact_url(self.proxy)}")
        if self.cookies is not None:
            parts.append("cookies")
        detail = f" ({', '.join(parts)})" if parts else ""
        return f"identity {self.number}/{self.count}{detail}"

    @property
    def key(self) -> str:
        """A stable, secret-free key of the identity (its pacer's)."""
        return f"{self.number}/{self.count}"


class Pool:
    """The identities of one fetch config in this process: the current one, and the move to the next."""

    def __init__(self, cookies: Sequence[str | None], proxies: Sequence[str | None]):
        cookies = list(cookies) or [None]
        proxies = list(proxies) or [None]
        count = max(len(cookies), len(proxies))
        self.identities = tuple(Identity(i + 1, count, cookies[i % len(cookies)], proxies[i % len(proxies)])
                                for i in range(count))
        self._index = zlib.crc32(f"{socket.gethostname()}/{os.getpid()}".encode()) % count
        self._lock = threading.Lock()

    def current(self) -> Identity:
        """The identity this process fetches with now."""
        with self._lock:
            return self.identities[self._index]

    def rotate_from(self, identity: Identity) -> Identity:
        """``identity`` hit a wall: the process moves to the next one (once, however many fetches report it)."""
        with self._lock:
            if len(self.identities) > 1 and self.identities[self._index] == identity:
                self._index = (self._index + 1) % len(self.identities)
                _LOG.info("%s hit a wall; this worker process moves to %s", identity.label,
                          self.identities[self._index].label)
            return self.identities[self._index]


_POOLS: dict[tuple, Pool] = {}
_POOLS_LOCK = threading.Lock()


def pool_for(cookies: Sequence[str | None], proxies: Sequence[str | None]) -> Pool:
    """This process's pool for these identities (one per distinct set, created on first use)."""
    key = (tuple(cookies), tuple(proxies))
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None:
            pool = _POOLS[key] = Pool(cookies, proxies)
        return pool
