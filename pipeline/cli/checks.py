"""The doctor's report lines (`Check`, one status each) and its checks of what a build reaches.

`pipeline.cli.doctor` checks the tools (ffmpeg, yt-dlp, the JS runtime, the models); the checks
here are of access: a cookies file, a proxy, gs:// paths. None prints a secret: cookie values
never, proxy credentials as ``***``.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pipeline.errors import one_line

OK, WARN, PROBLEM, SKIP = "OK", "WARN", "PROBLEM", "SKIP"

_COOKIE_FIELDS = 7  # domain, subdomains, path, secure, expires, name, value (Netscape/curl format)
_HTTPONLY_PREFIX = "#HttpOnly_"
_COOKIE_MAGIC = re.compile(r"#( Netscape)? HTTP Cookie File")
_YOUTUBE_DOMAINS = ("youtube.com", "google.com")
_GCS_HOST = ("storage.googleapis.com", 443)


@dataclasses.dataclass(frozen=True)
class Check:
    """One line of the report."""

    status: str
    item: str
    text: str
    fix: str = ""

    def line(self) -> str:
        """The printed line: status, item, what was found and the fix."""
        fix = f" Fix: {self.fix}" if self.fix and self.status != OK else ""
        return f"{self.status:<8} {self.item}: {self.text}{fix}"


# --------------------------------------------------------------------------------------------
# Flag values


def split_values(values: Iterable[str] | None) -> list[str]:
    """The values of a flag that may be repeated or given comma-separated, in order, blanks dropped.

    One function, so that the identities' own syntax (lists, files of lines) can replace it.
    """
    out: list[str] = []
    for value in values or ():
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def redact_url(url: str) -> str:
    """``url`` with any user info (``user:password@``) replaced by ``***@``; safe on malformed input."""
    head, sep, rest = url.partition("://")
    if not sep:  # "user:pass@host:port" without a scheme: treat it all as the authority
        head, rest = "", url
    _, at, host_part = rest.rpartition("@")
    if not at:
        return url
    return f"{head}://***@{host_part}" if sep else f"***@{host_part}"


# --------------------------------------------------------------------------------------------
# Identities: cookies and proxies


def check_cookies(path: str, *, now: float | None = None) -> Check:
    """A Netscape cookies file: readable, well formed, which cookies have expired. Never shows a value.

    yt-dlp's own loader is not used to read it: it prints a malformed line, value included, to
    stderr. The rules are the same (7 tab-separated fields, ``#HttpOnly_`` prefix, numeric expiry).
    """
    item = f"cookies {path}"
    export = ("export cookies.txt (Netscape format) from a browser logged in to YouTube, e.g. "
              "yt-dlp --cookies-from-browser firefox --cookies cookies.txt")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError as error:
        return Check(PROBLEM, item, f"cannot read it: {error.strerror or error}", f"pass a readable file; {export}")
    if not lines or not _COOKIE_MAGIC.search(lines[0]):
        json_like = next((line.strip() for line in lines if line.strip()), "")[:1] in ("[", "{")
        kind = "JSON, not Netscape format" if json_like else "not a Netscape cookies file"
        return Check(PROBLEM, item, f"{kind} (the first line must be '# Netscape HTTP Cookie File'); "
                     f"yt-dlp would refuse it and every fetch would fail", export)
    now = time.time() if now is None else now
    malformed: list[int] = []
    cookies: list[tuple[str, str, float]] = []  # (domain, name, expires; 0 for a session cookie)
    for number, line in enumerate(lines, 1):
        if line.startswith(_HTTPONLY_PREFIX):
            line = line[len(_HTTPONLY_PREFIX):]
        if line.startswith("#") or not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != _COOKIE_FIELDS or (fields[4] and not re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", fields[4])):
            malformed.append(number)
            continue
        cookies.append((fields[0], fields[5], float(fields[4] or 0)))
    expired = [(domain, name) for domain, name, expires in cookies if 0 < expires < now]
    youtube = [c for c in cookies if c[0].lstrip(".").endswith(_YOUTUBE_DOMAINS)]
    live_youtube = [c for c in youtube if not 0 < c[2] < now]
    notes = []
    if malformed:
        notes.append(f"malformed line(s) {_numbers(malformed)} are skipped by yt-dlp (which prints them, values "
                     f"included, to stderr)")
    if expired:
        names = ", ".join(f"{name} ({domain})" for domain, name in expired[:6])
        more = f" and {len(expired) - 6} more" if len(expired) > 6 else ""
        notes.append(f"{len(expired)} expired: {names}{more}")
    summary = f"{len(cookies)} cookie(s), {len(live_youtube)} valid for youtube.com/google.com"
    if not cookies:
        return Check(PROBLEM, item, "no cookie in it" + (f"; {notes[0]}" if notes else ""), export)
    if not live_youtube:
        return Check(WARN, item, f"{summary}: YouTube will treat the fetches as anonymous"
                     + "".join(f"; {note}" for note in notes), export)
    if notes:
        return Check(WARN, item, summary + "".join(f"; {note}" for note in notes),
                     f"export the cookies again ({export}); fix or delete the malformed lines")
    return Check(OK, item, f"{summary}, none expired")


def _numbers(numbers: Sequence[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:8])
    return shown + (f" and {len(numbers) - 8} more" if len(numbers) > 8 else "")


def check_proxy(url: str, *, timeout: float = 3.0) -> Check:
    """An http(s) proxy URL whose host accepts a TCP connection. Credentials are shown as ``***``."""
    shown = redact_url(url)
    item = f"proxy {shown}"
    form = "pass --proxy http://[user:pass@]host:port"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return Check(PROBLEM, item, "not a proxy URL (bad port or form)", form)
    if parts.scheme.lower() not in ("http", "https"):
        return Check(PROBLEM, item, f"scheme {parts.scheme or '(none)'!r} is not supported (SOCKS is refused)", form)
    if not parts.hostname:
        return Check(PROBLEM, item, "no host in it", form)
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        return Check(PROBLEM, item, f"cannot connect to {parts.hostname}:{port} ({reason}): every fetch would fail",
                     "check the host and port, that the proxy is running, and that this machine may reach it")
    creds = ", credentials given (not shown)" if parts.username or parts.password else ""
    return Check(OK, item, f"{parts.hostname}:{port} accepts connections{creds}")


# --------------------------------------------------------------------------------------------
# gs://


def gcs_reachable(address: tuple[str, int] = _GCS_HOST, timeout: float = 3.0) -> bool:
    """Whether Cloud Storage answers a TCP connection from here (offline, the gs:// checks are skipped)."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def check_gcs(paths: Sequence[tuple[str, str]], *, online: bool | None = None, timeout: float = 30.0) -> list[Check]:
    """Lists each gs:// path (``(flag, path)``) once with Beam's filesystem; skipped when GCS is unreachable."""
    wanted = [(flag, path) for flag, path in paths if path and path.startswith("gs://")]
    if not wanted:
        return []
    if not (gcs_reachable() if online is None else online):
        return [Check(SKIP, f"gs:// {flag}", f"{path}: not checked, {_GCS_HOST[0]} is unreachable from here "
                      f"(offline)", "run doctor where the build runs to check access") for flag, path in wanted]
    checks = []
    for flag, path in wanted:
        item = f"gs:// {flag}"
        try:
            count = _bounded(_list_gcs, path, timeout=timeout)
        except TimeoutError:
            checks.append(Check(WARN, item, f"{path}: no answer in {timeout:g}s", "check network and credentials"))
            continue
        except Exception as error:  # pylint: disable=broad-except  # the answer is the report
            checks.append(Check(PROBLEM, item, f"{path}: cannot list it ({one_line(error)[:200]})",
                                "gcloud auth application-default login (or a service account with "
                                "storage access to the bucket)"))
            continue
        checks.append(Check(OK, item, f"{path}: readable ({count} object(s) at the first listing)"))
    return checks


def _bounded(function: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """``function(*args)`` in a daemon thread: a call stuck on credentials or the network cannot hold doctor."""
    done: queue.Queue = queue.Queue(maxsize=1)

    def call() -> None:
        try:
            done.put((True, function(*args)))
        except BaseException as error:  # pylint: disable=broad-except  # handed to the caller
            done.put((False, error))

    threading.Thread(target=call, daemon=True, name="doctor-gcs").start()
    try:
        ok, value = done.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError from None
    if not ok:
        raise value
    return value


def _list_gcs(path: str) -> int:
    # pylint: disable=import-outside-toplevel  # Beam's GCS client only when a gs:// path is given
    import google.auth
    from apache_beam.io.filesystems import FileSystems

    # Beam retries missing credentials for a minute, logging each try; ask once first.
    google.auth.default()
    logging.getLogger("apache_beam.utils.retry").setLevel(logging.ERROR)
    result = FileSystems.match([path.rstrip("/") + "/*"], limits=[10])
    return len(result[0].metadata_list)
