"""Hostile local users and Beam's cross-process model sharing: a wrong key is refused, nothing is unpickled.

A real RunInference DoFn (Beam's own `_RunInferenceDoFn`, with the project's model handler and
the sharing settings of a two-process machine) is set up in a child process, as an SDK worker
would: it starts Beam's shared-model server. The test then plays another local user.
"""

from __future__ import annotations

import glob
import json
import multiprocessing.connection
import os
import pickle
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from apache_beam.utils import multi_process_shared

from pipeline.features import shared_access, tf_setup

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_HOST = textwrap.dedent("""
    import json, logging, sys, time
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)  # every line Beam and the project log
    from apache_beam.ml.inference import base
    from pipeline.features import models, registry, tf_setup
    from transforms import inference

    class Echo:
        def featurize(self, name, batch):
            return batch

    class Handler(inference.FeatureModelHandler):
        def load_model(self):  # no TensorFlow: the sharing is what is under test
            return Echo()

    sharing = tf_setup.ModelSharing(copies=1, processes=2)
    handler = Handler(models.RGB, registry.ModelConfig(mode="synthetic"), batch_size=1, sharing=sharing)
    dofn = base._RunInferenceDoFn(inference._KeyedHandler(handler), time, None, model_tag=handler.model_tag)
    dofn.setup()
    print(json.dumps({"tag": sharing.tag, "key": sharing.authkey, "repr": repr(sharing)}), flush=True)
    sys.stdin.readline()
""")


class _Exploit:
    """What a hostile client sends: unpickling it creates `path` (any code would run the same way)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def shared_host():
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.Popen([sys.executable, "-c", _HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-3000:]
        info = json.loads(line)
        folder = shared_access.private_dir(bytes.fromhex(info["key"]))
        # Wherever the server's address file is (Beam's default: the shared temporary folder).
        addresses = sorted(glob.glob(os.path.join(folder, "*.address"))
                           + glob.glob(os.path.join(glob.escape(tempfile.gettempdir()), glob.escape(info["tag"])
                                                    + "*.address")))
        info.update(folder=folder, addresses=[tuple(open(a).read().rsplit(":", 1)) for a in addresses])
        yield info, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _address(entry):
    host, port = entry
    return host, int(port)


def _attack(address, key, marker):
    """Another local user: authenticate with `key`, then send a pickle that creates `marker` when loaded."""
    try:
        conn = multiprocessing.connection.Client(address, authkey=key)
    except multiprocessing.AuthenticationError:
        return "refused"
    try:
        conn.send(_Exploit(str(marker)))
        conn.recv()
    except (EOFError, OSError):
        pass
    finally:
        conn.close()
    return "accepted"


def test_shared_model_server_refuses_beams_fixed_key_and_a_wrong_one(shared_host, tmp_path):
    info, _ = shared_host
    assert info["addresses"], "no shared-model server was started"
    marker = tmp_path / "pwned"
    for entry in info["addresses"]:
        for key in (b"mps", os.urandom(32)):  # Beam's fixed key; a guess
            assert _attack(_address(entry), key, marker) == "refused"
    assert not marker.exists()  # no code of the attacker ran in the build's process


def test_a_client_skipping_the_handshake_gets_nothing_unpickled(shared_host, tmp_path):
    info, proc = shared_host
    marker = tmp_path / "pwned"
    for entry in info["addresses"]:
        sock = socket.create_connection(_address(entry), timeout=10)
        conn = multiprocessing.connection.Connection(sock.detach())
        try:
            conn.send_bytes(pickle.dumps(_Exploit(str(marker))))  # as the answer to the server's challenge
            conn.send_bytes(pickle.dumps(_Exploit(str(marker))))
            conn.recv_bytes()
        except (EOFError, OSError):
            pass
        finally:
            conn.close()
    time.sleep(0.5)
    assert not marker.exists()
    assert proc.poll() is None  # the host keeps serving


def test_the_runs_own_key_connects(shared_host):
    info, _ = shared_host
    for entry in info["addresses"]:
        manager = multi_process_shared._SingletonRegistrar(address=_address(entry),
                                                           authkey=bytes.fromhex(info["key"]))
        manager.connect()  # authenticates both ways and makes a request


def test_rendezvous_files_are_in_a_private_folder_and_the_key_is_never_shown(shared_host):
    info, _ = shared_host
    mode = os.lstat(info["folder"])
    assert stat.S_ISDIR(mode.st_mode) and stat.S_IMODE(mode.st_mode) == 0o700 and mode.st_uid == os.getuid()
    assert not glob.glob(os.path.join(glob.escape(tempfile.gettempdir()), glob.escape(info["tag"]) + "*"))
    assert info["key"] not in info["repr"] and "authkey" not in info["repr"]


def test_the_key_is_in_no_log_line(shared_host):
    info, proc = shared_host
    proc.stdin.close()  # the host exits; then everything it logged at DEBUG is read
    assert proc.wait(timeout=30) == 0
    logged = proc.stderr.read()
    assert "Starting proxy server" in logged  # Beam's own lines are there
    assert info["key"] not in logged and repr(bytes.fromhex(info["key"])) not in logged


def test_key_is_random_per_pipeline_and_not_compared():
    a, b = tf_setup.ModelSharing(), tf_setup.ModelSharing()
    assert a.authkey != b.authkey and len(bytes.fromhex(a.authkey)) == 32 and a == b


def test_a_planted_folder_is_refused(tmp_path, monkeypatch):
    key = os.urandom(32)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    folder = shared_access.private_dir(key)
    os.symlink(tmp_path, folder)  # someone made the name first, pointing elsewhere
    with pytest.raises(shared_access.SharingSetupError, match="not a folder of this user"):
        shared_access.install(key.hex())
