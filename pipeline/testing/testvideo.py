"""Synthetic test videos made by ffmpeg: the inputs of tests, the sample dataset and benchmarks.

Real clips cannot ship with the repository; ffmpeg's test pattern and a sine tone give a clip of
any length, size, rate and codec in well under a second.
"""

from __future__ import annotations

import subprocess

from pipeline.decode.probe import ffmpeg_exe


def generate_test_video(path: str, *, seconds: float, size: str = "320x240", rate: int = 25,
                        audio: bool = True, codec: str = "libx264") -> str:
    """Writes a synthetic clip (testsrc2 pattern, 440 Hz tone) for tests, samples and benchmarks."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    cmd += ["-c:v", codec, "-pix_fmt", "yuv420p", "-g", str(rate)]
    if codec == "libx264":
        cmd += ["-preset", "veryfast"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "64k"]
    cmd += ["-t", str(seconds), path]
    subprocess.run(cmd, check=True, capture_output=True)
    return path
