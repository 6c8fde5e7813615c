"""Tests for finding, downloading and extracting the official model files (pipeline/features/artifacts.py).

The layout checks themselves (graph, PCA, checkpoint, npz) are the loaders' and are tested with
real stand-ins in tests/e2e/test_models_e2e.py; here they are replaced by a recorder so the search
order, archives, downloads, locking and caching are tested in milliseconds.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import socket
import tarfile
import threading
import time

import pytest

from pipeline.dataset import fileio
from pipeline.errors import ModelArtifactError
from pipeline.features import artifact_store, artifacts
from pipeline.net import downloads

OFFICIAL = {
    "classify_image_graph_def.pb": b"graph",
    "mean.npy": b"mean",
    "eigenvecs.npy": b"eigenvecs",
    "eigenvals.npy": b"eigenvals",
    "vggish_model.ckpt": b"checkpoint-v1",
    "vggish_pca_params.npz": b"npz",
}


def make_tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def released_objects(*, pca_folder: str = "") -> dict[str, bytes]:
    """What the official URLs serve: two archives and two plain files (the checkpoint as one V1 file)."""
    return {
        "inception-2015-12-05.tgz": make_tgz({"classify_image_graph_def.pb": OFFICIAL["classify_image_graph_def.pb"],
                                              "LICENSE": b"license"}),
        "yt8m_pca.tgz": make_tgz({pca_folder + name: OFFICIAL[name]
                                  for name in ("mean.npy", "eigenvecs.npy", "eigenvals.npy")}),
        "vggish_model.ckpt": OFFICIAL["vggish_model.ckpt"],
        "vggish_pca_params.npz": OFFICIAL["vggish_pca_params.npz"],
    }


@pytest.fixture
def checks(monkeypatch):
    """Replaces the layout checks with a recorder that accepts anything not containing b'bad'."""
    calls = []

    def check(artifact, path):
        calls.append((artifact.key, path))
        names = artifact.files if artifact.is_directory else [os.path.basename(path)]
        for name in names:
            file_path = os.path.join(path, name) if artifact.is_directory else path
            if os.path.isfile(file_path) and b"bad" in open(file_path, "rb").read():
                raise ModelArtifactError(f"{file_path} is bad")

    monkeypatch.setattr(artifact_store, "_check", check)  # what publishing and verify_once call
    return calls


class _Server:
    """A loopback HTTP server for a dict of objects that records every request path."""

    def __init__(self, objects: dict[str, bytes], *, stall: bool = False, lie_length: bool = False):
        self.objects = {f"models/{name}": data for name, data in objects.items()}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                if stall:
                    time.sleep(5)
                    return
                data = server.objects.get(self.path.lstrip("/"))
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data) + (10 if lie_length else 0)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def resolve(cache, **kwargs):
    kwargs.setdefault("model_dir", None)
    kwargs.setdefault("overrides", {})
    return artifacts.resolve_official(cache_dir=str(cache), **kwargs)


def read_resolved(resolved) -> dict[str, bytes]:
    out = {}
    for key, path in resolved.paths.items():
        if key == "rgb_pca_dir":
            for name in ("mean.npy", "eigenvecs.npy", "eigenvals.npy"):
                out[name] = open(os.path.join(path, name), "rb").read()
        elif os.path.isfile(path):  # (a V2 checkpoint is a prefix, not a file)
            out[os.path.basename(path)] = open(path, "rb").read()
    return out


# --------------------------------------------------------------------------------------------
# Archives.


@pytest.mark.parametrize("folder", ["", "yt8m_pca/", "./deep/er/"])
def test_extract_members_finds_files_at_any_depth(tmp_path, folder):
    data = make_tgz({folder + "mean.npy": b"m", folder + "eigenvecs.npy": b"v", folder + "eigenvals.npy": b"e",
                     "../eigenvals.npy.evil": b"x"})
    artifact_store.extract_members(io.BytesIO(data), artifact_store.RGB_PCA_FILES, str(tmp_path), source="yt8m_pca.tgz")
    assert sorted(os.listdir(tmp_path)) == ["eigenvals.npy", "eigenvecs.npy", "mean.npy"]
    assert (tmp_path / "eigenvecs.npy").read_bytes() == b"v"


def test_extract_members_names_what_is_missing_or_broken(tmp_path):
    with pytest.raises(ModelArtifactError, match=r"lacks eigenvals.npy .*members: mean.npy, eigenvecs.npy"):
        artifact_store.extract_members(io.BytesIO(make_tgz({"mean.npy": b"m", "eigenvecs.npy": b"v"})),
                                  artifact_store.RGB_PCA_FILES, str(tmp_path), source="yt8m_pca.tgz")
    with pytest.raises(ModelArtifactError, match=r"x.tgz is not a readable .tgz archive.*--model_dir"):
        artifact_store.extract_members(io.BytesIO(b"not a tar"), ("a",), str(tmp_path), source="x.tgz")


# --------------------------------------------------------------------------------------------
# Search order: flags, --model_dir (extracted, folder, archives), cache, download.


def test_model_dir_with_extracted_files(tmp_path, checks):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    for name, data in OFFICIAL.items():
        (model_dir / name).write_bytes(data)
    resolved = resolve(tmp_path / "cache", model_dir=str(model_dir))
    assert resolved.paths == {
        "rgb_graph": str(model_dir / "classify_image_graph_def.pb"), "rgb_pca_dir": str(model_dir),
        "audio_checkpoint": str(model_dir / "vggish_model.ckpt"),
        "audio_pca": str(model_dir / "vggish_pca_params.npz")}
    assert sorted(key for key, _ in checks) == ["audio_checkpoint", "audio_pca", "rgb_graph", "rgb_pca_dir"]
    # A second resolve (a worker loading its model) does not check the same files again ...
    resolve(tmp_path / "cache", model_dir=str(model_dir))
    assert len(checks) == 4
    # ... until one of them changes.
    (model_dir / "vggish_pca_params.npz").write_bytes(b"npz, replaced")
    os.utime(model_dir / "vggish_pca_params.npz", ns=(1, 1))
    resolve(tmp_path / "cache", model_dir=str(model_dir))
    assert [key for key, _ in checks[4:]] == ["audio_pca"]


def test_model_dir_with_a_v2_checkpoint_and_archives_in_folders_and_files(tmp_path, checks):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    objects = released_objects(pca_folder="yt8m_pca/")
    (model_dir / "inception-2015-12-05.tgz").write_bytes(objects["inception-2015-12-05.tgz"])
    (model_dir / "yt8m_pca.tgz").write_bytes(objects["yt8m_pca.tgz"])
    (model_dir / "vggish_model.ckpt.index").write_bytes(b"index")
    (model_dir / "vggish_model.ckpt.data-00000-of-00001").write_bytes(b"data")
    (model_dir / "vggish_pca_params.npz").write_bytes(b"npz")
    resolved = resolve(tmp_path / "cache", model_dir=str(model_dir))
    assert resolved.paths["audio_checkpoint"] == str(model_dir / "vggish_model.ckpt")  # the V2 prefix
    assert resolved.sources["rgb_graph"] == str(model_dir / "inception-2015-12-05.tgz")
    assert resolved.paths["rgb_graph"].startswith(str(tmp_path / "cache" / "extracted"))
    contents = read_resolved(resolved)
    assert {name: contents[name] for name in ("classify_image_graph_def.pb", "mean.npy", "eigenvals.npy")} == {
        name: OFFICIAL[name] for name in ("classify_image_graph_def.pb", "mean.npy", "eigenvals.npy")}
    again = resolve(tmp_path / "cache", model_dir=str(model_dir))
    assert again.paths == resolved.paths  # extracted once, then reused
    # Archives unpacked into folders of their own name are found too.
    unpacked = tmp_path / "unpacked"
    (unpacked / "inception-2015-12-05").mkdir(parents=True)
    (unpacked / "inception-2015-12-05" / "classify_image_graph_def.pb").write_bytes(b"graph")
    (unpacked / "yt8m_pca").mkdir()
    for name in artifact_store.RGB_PCA_FILES:
        (unpacked / "yt8m_pca" / name).write_bytes(OFFICIAL[name])
    for name in ("vggish_model.ckpt", "vggish_pca_params.npz"):
        (unpacked / name).write_bytes(OFFICIAL[name])
    found = resolve(tmp_path / "cache", model_dir=str(unpacked))
    assert found.paths["rgb_pca_dir"] == str(unpacked / "yt8m_pca")


def test_per_file_flags_accept_archives_and_override_model_dir(tmp_path, checks):
    objects = released_objects()
    for name, data in objects.items():
        (tmp_path / name).write_bytes(data)
    overrides = {"rgb_graph": str(tmp_path / "inception-2015-12-05.tgz"), "rgb_pca_dir": str(tmp_path / "yt8m_pca.tgz"),
                 "audio_checkpoint": str(tmp_path / "vggish_model.ckpt"),
                 "audio_pca": str(tmp_path / "vggish_pca_params.npz")}
    resolved = resolve(tmp_path / "cache", model_dir=str(tmp_path / "nonexistent"), overrides=overrides)
    assert read_resolved(resolved) == OFFICIAL


def test_model_dir_is_authoritative_and_the_error_names_files_and_flags(tmp_path, checks):
    with _Server(released_objects()) as server:
        with pytest.raises(ModelArtifactError) as error:
            resolve(tmp_path / "cache", model_dir=str(tmp_path / "empty"), base_url=server.url)
    assert server.requests == []  # --model_dir given: nothing is downloaded
    message = str(error.value)
    for expected in ("classify_image_graph_def.pb", "inception-2015-12-05.tgz", "yt8m_pca.tgz", "eigenvecs.npy",
                     "vggish_model.ckpt", "vggish_pca_params.npz", "--model_dir", "--rgb_graph", "--rgb_pca_dir",
                     "--audio_checkpoint", "--audio_pca", "--models synthetic"):
        assert expected in message
    empty = str(tmp_path / "empty")
    assert (f"neither {os.path.join(empty, 'classify_image_graph_def.pb')} or "
            f"{os.path.join(empty, 'inception-2015-12-05.tgz')} exists (--model_dir is given") in message
    with pytest.raises(ModelArtifactError, match=r"does not exist or is incomplete \(given with --audio_pca\)"):
        resolve(tmp_path / "cache", model_dir=None, overrides={"audio_pca": str(tmp_path / "nope.npz")},
                allow_download=False)


def test_download_fills_the_cache_once_and_is_then_reused(tmp_path, checks):
    with _Server(released_objects(pca_folder="yt8m_pca/")) as server:
        resolved = resolve(tmp_path / "cache", base_url=server.url)
        assert sorted(server.requests) == sorted(
            f"/models/{name}" for name in ("inception-2015-12-05.tgz", "yt8m_pca.tgz", "vggish_model.ckpt",
                                           "vggish_pca_params.npz"))
        assert read_resolved(resolved) == OFFICIAL
        assert resolved.sources["rgb_pca_dir"] == server.url + "/yt8m_pca.tgz"
        cached = sorted(os.listdir(artifact_store.download_dir(str(tmp_path / "cache"), server.url)))
        assert cached == [".locks", *sorted(OFFICIAL)]  # no archives, temporary or partial files left
        again = resolve(tmp_path / "cache", base_url=server.url, allow_download=False)
        assert again.paths == resolved.paths and len(server.requests) == 4  # no network request


def test_concurrent_resolves_download_each_file_once(tmp_path, checks):
    with _Server(released_objects()) as server:
        results, errors = [], []

        def worker():
            try:
                results.append(resolve(tmp_path / "cache", base_url=server.url))
            except Exception as error:  # pylint: disable=broad-except
                errors.append(error)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors and len(results) == 4
    assert len(server.requests) == 4  # one per file: the others waited for the lock and reused it
    assert all(read_resolved(result) == OFFICIAL for result in results)


def test_no_download_names_the_missing_files(tmp_path, checks):
    with pytest.raises(ModelArtifactError) as error:
        resolve(tmp_path / "cache", allow_download=False)
    message = str(error.value)
    assert "--no_download forbids fetching https://download.tensorflow.org/models/image/imagenet/" in message
    assert "vggish_pca_params.npz" in message and "--model_dir" in message


def test_a_malformed_or_truncated_download_leaves_nothing_in_the_cache(tmp_path, checks):
    objects = released_objects()
    objects["vggish_pca_params.npz"] = b"bad npz"
    with _Server(objects) as server:
        with pytest.raises(ModelArtifactError) as error:
            resolve(tmp_path / "cache", base_url=server.url)
    assert "vggish_pca_params.npz from " + server.url + "/vggish_pca_params.npz failed the layout check" in str(
        error.value)
    cache = artifact_store.download_dir(str(tmp_path / "cache"), server.url)
    assert "vggish_pca_params.npz" not in os.listdir(cache)
    assert [name for name in os.listdir(cache) if name.startswith(".") and name != ".locks"] == []
    with _Server({"vggish_pca_params.npz": b"npz"}, lie_length=True) as server:
        with pytest.raises(downloads.TransferError) as failed:
            artifact_store.download(server.url + "/vggish_pca_params.npz", str(tmp_path / "x.npz"), timeout_s=2)
    assert failed.value.summary().startswith("truncated: received")
    assert not (tmp_path / "x.npz").exists() and not [n for n in os.listdir(tmp_path) if fileio.TEMP_MARKER in n]


def test_unreachable_network_fails_in_seconds(tmp_path, checks):
    """A server that accepts but never answers (a firewall that drops packets) costs one timeout in all."""
    with _Server(released_objects(), stall=True) as server:
        with pytest.raises(ModelArtifactError, match=r"no answer within 0.5 s"):
            resolve(tmp_path / "cache", base_url=server.url, timeout_s=0.5)
        # One timeout in all: the files are asked for at once and none is asked for again after
        # its timeout (no wall-clock bound here: a loaded machine would flake it).
        assert server.requests and len(server.requests) == len(set(server.requests)), server.requests
    with contextlib.closing(socket.socket()) as sock:  # a closed port: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ModelArtifactError, match="network error"):
        resolve(tmp_path / "cache", base_url=f"http://127.0.0.1:{port}", timeout_s=2)
