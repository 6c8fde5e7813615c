"""How a clip is decoded (`DecodeConfig`): the decode flags as the decode stage's one config object.

Built once by the launcher (`pipeline.cli.options.BuildOptions.decode_config`), checked there, and
pickled to every worker with `transforms.decode.DecodeClips`. The fetch stage's re-encode of a
whole-file download gets the same time and frame-size bounds from it (`trim_limits`).
"""

from __future__ import annotations

import dataclasses

from pipeline.decode import probe

AUDIO_MODES = ("vggish", "zeros")


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """The decode settings of a build.

    Attributes:
        frames_per_second: Steps per second of video (docs/spec.md §2; YouTube-8M: 1).
        audio_mode: ``vggish`` (log-mel examples for VGGish) or ``zeros`` (no audio decoded).
        timeout_s: Wall time one clip's ffmpeg may take.
        max_frame_side: Largest width or height decoded; a larger stream fails the clip.
        max_frame_pixels: Largest width x height decoded.
        decode_ahead: Clips decoded ahead of the models per worker thread (0: in step).
    """

    frames_per_second: float = 1.0
    audio_mode: str = "vggish"
    timeout_s: float = 120.0
    max_frame_side: int = probe.MAX_FRAME_SIDE
    max_frame_pixels: int = probe.MAX_FRAME_PIXELS
    decode_ahead: int = 0

    def __post_init__(self) -> None:
        """Rejects settings that would fail every clip, before any worker runs."""
        if not self.frames_per_second > 0:
            raise ValueError(f"frames_per_second must be > 0, got {self.frames_per_second}")
        if self.audio_mode not in AUDIO_MODES:
            raise ValueError(f"audio_mode must be one of {AUDIO_MODES}, got {self.audio_mode!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_frame_side < 1 or self.max_frame_pixels < 1:
            raise ValueError(f"frame limits must be >= 1, got {self.max_frame_side} / {self.max_frame_pixels}")
        if self.decode_ahead < 0:
            raise ValueError(f"decode_ahead must be >= 0, got {self.decode_ahead}")
