"""Mirrors tried before YouTube (--clip_sources): templates, what they name, and confinement.

Most Kinetics users start from a copy (the CVDF one: already trimmed clips named
`{youtube_id}_{start:06d}_{end:06d}.mp4` in flat split folders, or their own) and fetch from
YouTube only what the copy lacks. `--clip_sources T1,T2,...` names such copies: for a Kinetics
row each template is filled in and tried in order; the first file that exists and is a video is
used, else the row is fetched from YouTube as before.

Placeholders: `{id}` (the clip id, `{youtube_id}_{start:06d}_{end:06d}` for whole seconds, see
`pipeline.read.annotations.section_id`), `{youtube_id}`, `{label}` (the row's first label), `{split}`,
`{start}` and `{end}` (seconds; `{start:06d}` zero-pads whole seconds, as CVDF names do; a row
with a fractional time skips such a template). A template with `{id}`, `{start}` or `{end}` names
the trimmed clip; one with only `{youtube_id}` (and `{label}`/`{split}`) names the whole video,
which is cut to [start, end).

The values come from a CSV, i.e. from strangers. A value is used only when it is one safe path
component (not empty, `.` or `..`, no `/`, `\\`, control characters); in http(s) templates it is
percent-encoded as well. A filled-in local path must still lie under the template's root (the
folder before the first placeholder) once symlinks are resolved. Anything else skips that
template for the row (counted, logged), so a hostile label can never make a mirror read outside
the folder the user named. http(s) mirrors are downloaded through the per-clip guard
(`pipeline.net.netguard`), as http(s) video rows are.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import string
import urllib.parse
from collections.abc import Iterator

from pipeline.elements import ClipRequest

PLACEHOLDERS = ("id", "youtube_id", "label", "split", "start", "end")
# A template holding one of these names the clip already cut to [start, end).
TRIMMED_PLACEHOLDERS = frozenset({"id", "start", "end"})
_TIME_SPEC_RE = re.compile(r"0?\d{0,2}d")
_UNSAFE_RE = re.compile(r"[/\\\x00-\x1f\x7f]")
_SCHEMES = ("gs", "http", "https")


@dataclasses.dataclass(frozen=True)
class Template:
    """One checked --clip_sources template.

    Attributes:
      text: the template as given.
      trimmed: True when it names the trimmed clip, False for the whole video.
      scheme: "" (local path), "gs", "http" or "https".
      root: the folder (or URL prefix) before the first placeholder; a filled-in path stays under it.
    """

    text: str
    trimmed: bool
    scheme: str
    root: str

    @property
    def remote(self) -> bool:
        """True for http(s) templates (downloaded through the guard)."""
        return self.scheme in ("http", "https")

    @classmethod
    def parse(cls, text: str) -> Template:
        """Checks one template; raises ValueError naming what is wrong."""
        fields = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as e:
            raise ValueError(f"--clip_sources template {text!r}: {e}") from e
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in PLACEHOLDERS:
                raise ValueError(f"--clip_sources template {text!r}: unknown placeholder {{{field}}}; known: "
                                 + ", ".join("{" + p + "}" for p in PLACEHOLDERS))
            if conversion or (spec and not (field in ("start", "end") and _TIME_SPEC_RE.fullmatch(spec))):
                raise ValueError(f"--clip_sources template {text!r}: {{{field}}} takes no format here"
                                 + (" except a zero-padded width such as {start:06d}" if field in ("start", "end")
                                    else ""))
            fields.append(field)
        if not {"id", "youtube_id"} & set(fields):
            raise ValueError(f"--clip_sources template {text!r} names no clip: it needs {{id}} or {{youtube_id}}")
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme and scheme not in _SCHEMES:
            raise ValueError(f"--clip_sources template {text!r}: unsupported scheme {scheme!r} (local paths, gs://, "
                             "http:// or https://)")
        literal = text.split("{", 1)[0]
        if scheme:
            after = literal.split("://", 1)[1]
            if "/" not in after:
                raise ValueError(f"--clip_sources template {text!r}: placeholders may only appear in the path, "
                                 "after the host")
            root = literal.rsplit("/", 1)[0]
        else:
            root = os.path.dirname(os.path.abspath(literal)) if literal else os.path.abspath(".")
            if literal.endswith(os.sep):
                root = os.path.abspath(literal)
        return cls(text=text, trimmed=bool(TRIMMED_PLACEHOLDERS & set(fields)), scheme=scheme, root=root)

    def fill(self, clip: ClipRequest) -> tuple[str | None, str]:
        """(location, "") for this row, or (None, why) when the template cannot be used for it."""
        values = {"id": clip.clip_id, "youtube_id": clip.video, "split": clip.split,
                  "label": clip.labels[0] if clip.labels else None}
        out = []
        for literal, field, spec, _ in string.Formatter().parse(self.text):
            out.append(literal)
            if field is None:
                continue
            if field in ("start", "end"):
                seconds = (clip.start or 0.0) if field == "start" else clip.end
                if seconds is None:
                    return None, f"the row has no {field} time"
                if spec:
                    if not (math.isfinite(seconds) and float(seconds).is_integer()):
                        return None, f"{{{field}:{spec}}} needs whole seconds, the row has {seconds:g}"
                    out.append(format(int(seconds), spec))
                else:
                    out.append(f"{int(seconds)}" if float(seconds).is_integer() else f"{seconds:g}")
                continue
            value = values[field]
            if value is None:
                return None, f"the row has no {field}"
            if value in ("", ".", "..") or _UNSAFE_RE.search(value):
                return None, f"{{{field}}} value {value[:80]!r} is not one safe path component"
            out.append(urllib.parse.quote(value, safe="") if self.remote else value)
        location = "".join(out)
        if not self.scheme:
            root = os.path.realpath(self.root)
            real = os.path.realpath(location)
            if os.path.commonpath([root, real]) != root:
                return None, f"{location} leads out of the template's folder {self.root}"
        elif not location.startswith(self.root + "/") or "/../" in location[len(self.root):] + "/":
            return None, f"{location} leads out of {self.root}/"
        return location, ""


@dataclasses.dataclass(frozen=True)
class ClipSources:
    """The --clip_sources templates, in the order they are tried."""

    templates: tuple[Template, ...]

    @classmethod
    def parse(cls, text: str) -> ClipSources:
        """`T1,T2,...` (blank entries ignored); raises ValueError for a bad template or none at all."""
        templates = tuple(Template.parse(t.strip()) for t in text.split(",") if t.strip())
        if not templates:
            raise ValueError("--clip_sources names no template")
        return cls(templates)

    def candidates(self, clip: ClipRequest) -> Iterator[tuple[int, Template, str | None, str]]:
        """(index, template, location or None, why not) for the row, in order; only YouTube rows have any."""
        if clip.source != "youtube":
            return
        for index, template in enumerate(self.templates):
            location, why = template.fill(clip)
            yield index, template, location, why
