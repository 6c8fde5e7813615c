"""The worker install: requirements name what the code imports; the container image matches the pins."""

from __future__ import annotations

import ast
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
# Distribution name -> top-level module it provides.
_MODULE_OF = {"apache-beam": "apache_beam", "opencv-python-headless": "cv2", "yt-dlp": "yt_dlp",
              "imageio-ffmpeg": "imageio_ffmpeg", "protobuf": "google.protobuf",
              "absl-py": "absl"}


WORKER_REQUIREMENTS = "requirements.txt"
REPORT_REQUIREMENTS = "requirements-report.txt"  # the `report` extra: pipeline.report's plots only


def _pins(*files: str) -> dict[str, str]:
    pins = {}
    for name in files or (WORKER_REQUIREMENTS,):
        for line in (REPO / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                dist, version = line.split("==")
                pins[re.sub(r"\[.*\]", "", dist).lower()] = version
    return pins


def _imported_top_level(paths) -> set[str]:
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return names


def test_every_pinned_requirement_is_imported_by_the_code():
    code = [*REPO.glob("pipeline/**/*.py"), *REPO.glob("transforms/**/*.py"), *REPO.glob("benchmarks/*.py"),
            *REPO.glob("tests/**/*.py")]
    imported = _imported_top_level(code)
    unused = []
    for name in _pins(WORKER_REQUIREMENTS, REPORT_REQUIREMENTS):
        module = _MODULE_OF.get(name, name.replace("-", "_"))
        if not any(m == module or m.startswith(module + ".") for m in imported):
            unused.append(name)
    assert not unused, f"requirements.txt pins packages nothing imports: {unused}"


def test_every_third_party_import_is_pinned():
    code = [*REPO.glob("pipeline/**/*.py"), *REPO.glob("transforms/**/*.py")]
    pinned_modules = {_MODULE_OF.get(name, name.replace("-", "_")).split(".")[0]
                      for name in _pins(WORKER_REQUIREMENTS, REPORT_REQUIREMENTS)}
    local = {"pipeline", "transforms", "benchmarks", "tests"}
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    third_party = {m.split(".")[0] for m in _imported_top_level(code)} - stdlib - local
    # google.protobuf comes as "google"; TensorFlow brings it but we pin it as imported.
    missing = sorted(m for m in third_party - pinned_modules if not (m == "google" and "google" in pinned_modules))
    assert not missing, f"imported but not pinned in requirements.txt: {missing}"


def test_container_image_matches_the_pinned_beam_and_installs_the_package():
    dockerfile = (REPO / "Dockerfile").read_text()
    beam_version = re.search(r"ARG BEAM_VERSION=(\S+)", dockerfile).group(1)
    assert beam_version == _pins()["apache-beam"], "Dockerfile's Beam SDK image differs from requirements.txt"
    assert "FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}" in dockerfile
    assert "pip install -r requirements.txt" in dockerfile
    # setup.py reads both requirement files when the package is installed into the image.
    assert re.search(r"^COPY .*requirements\.txt .*requirements-report\.txt .*setup\.py", dockerfile, re.M)
    for package in ("pipeline", "transforms"):
        assert f"COPY {package} ./{package}" in dockerfile


def test_staged_sdist_installs_on_a_worker(tmp_path):
    """Dataflow workers pip-install the sdist of setup.py: it must carry the files setup.py reads."""
    import subprocess
    import tarfile

    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], cwd=REPO, check=True,
                   capture_output=True)
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    (root,) = (tmp_path / "x").iterdir()
    proc = subprocess.run([sys.executable, "setup.py", "--name"], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    requires = subprocess.run([sys.executable, "-c", "import runpy, setuptools; setuptools.setup = "
                                      "lambda **kw: print(sorted(kw['install_requires'])); runpy.run_path('setup.py')"],
                                     cwd=root, capture_output=True, text=True, check=True).stdout
    assert "apache-beam[gcp]==" in requires and "matplotlib" not in requires
