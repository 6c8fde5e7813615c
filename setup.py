"""Installable package; also what Dataflow workers install through --setup_file."""

import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent


def _pins(name: str) -> list[str]:
    return [line.strip() for line in (_HERE / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")]


setuptools.setup(
    name="video-features-pipeline",
    version="0.1.0",
    description="Apache Beam pipeline that builds YouTube-8M frame-level feature datasets.",
    python_requires=">=3.11",  # yt-dlp 2026.10 needs 3.11
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*"]),
    install_requires=_pins("requirements.txt"),
    extras_require={
        "test": ["pytest==8.4.2", "gcp-storage-emulator==2026.7.19"],
        "report": _pins("requirements-report.txt"),
    },
)
