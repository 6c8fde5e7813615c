"""Keeps Beam's cross-process model sharing to the run's own processes: a random key, private files.

RunInference shares a model across a machine's SDK processes with
``apache_beam.utils.multi_process_shared`` (Beam 2.77): the hosting process serves it with a
``multiprocessing`` manager on a localhost TCP port, and what arrives on an authenticated
connection is unpickled, so a client that authenticates can run code as the build's user.
Beam authenticates with a fixed key (``AUTH_KEY = b"mps"``) and keeps its rendezvous files
(``TAG.address``, ``TAG.lock``) in the shared temporary directory, where another local user
can read the port or plant an address file that points at a server of its own.

:func:`install` runs in every worker process before RunInference makes its first shared
object (its model handler's ``set_environment_vars``, the first thing RunInference's setup
does) and replaces both:

* the key: ``ModelSharing.authkey``, 32 random bytes the launcher draws once per built
  pipeline and ships inside the model handlers, so every SDK process of the run holds the same
  one. It is no pipeline option (so no command line, options dump or job page shows it) and
  no repr or log line prints it. ``multiprocessing``'s handshake is mutual (HMAC challenges
  both ways), so a wrong key is refused before anything is unpickled, in either direction;
* the folder of the rendezvous files: ``video-features-shared-<uid>-<hash of the key>`` in
  the temporary directory, created 0700 and refused unless it is a real directory owned by
  this user that nobody else can enter; its name cannot be guessed without the key.

Beam reads both when it makes a connection or a server (the module constant and the default
``path`` of ``MultiProcessShared``), which is why they are set in the module, not passed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
import threading

_LOCK = threading.Lock()
_INSTALLED: bytes | None = None

KEY_BYTES = 32


class SharingSetupError(RuntimeError):
    """The private folder for the shared models' rendezvous files is not private; the message says why."""


def private_dir(key: bytes, *, base: str | None = None) -> str:
    """The folder of the rendezvous files for `key`: `BASE/video-features-shared-<uid>-<sha256(key)[:16]>`."""
    digest = hashlib.sha256(b"video-features-shared:" + key).hexdigest()[:16]
    return os.path.join(base or tempfile.gettempdir(), f"video-features-shared-{os.getuid()}-{digest}")


def _make_private(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise SharingSetupError(f"{path} is not a folder of this user: the models cannot be shared safely "
                                "(remove it, or pass --model_copies per_process)")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)


def install(authkey_hex: str) -> str:
    """Makes this process's Beam model sharing use `authkey_hex` and a private folder; returns the folder.

    Idempotent for one key. Call it before the process's first ``MultiProcessShared``.

    Raises:
        SharingSetupError: the private folder exists but is not this user's own directory.
        ValueError: `authkey_hex` is not at least 32 random bytes in hex.
    """
    global _INSTALLED  # pylint: disable=global-statement
    from apache_beam.utils import multi_process_shared  # pylint: disable=import-outside-toplevel

    key = bytes.fromhex(authkey_hex)
    if len(key) < KEY_BYTES:
        raise ValueError("the model-sharing key must be at least 32 bytes")
    folder = private_dir(key)
    with _LOCK:
        _make_private(folder)
        defaults = multi_process_shared.MultiProcessShared.__init__.__kwdefaults__
        if defaults is None or "path" not in defaults:
            raise SharingSetupError("this Beam's MultiProcessShared has no `path` default to move its files "
                                    "into a private folder; pass --model_copies per_process")
        defaults["path"] = folder
        multi_process_shared.AUTH_KEY = key
        if _INSTALLED != key:
            _INSTALLED = key
            logging.debug("model sharing: private rendezvous folder %s", folder)
    return folder
