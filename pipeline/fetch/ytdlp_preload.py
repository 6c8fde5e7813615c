"""Imported once by the forkserver of yt-dlp's bounded children (`pipeline.fetch.bounded`): yt-dlp made ready.

yt-dlp loads its extractors, compiles their URL patterns and builds its request handlers on
first use, and keeps them for the process; a child forked
from a server that has already done so starts its attempt at once instead of paying for that
in every attempt.
"""

import contextlib

import yt_dlp
from yt_dlp.extractor import gen_extractor_classes, import_extractors

import pipeline.fetch.attempt  # noqa: F401  (what the children run)

import_extractors()
for _extractor in gen_extractor_classes():  # compiles every extractor's URL pattern (~2 s, once)
    with contextlib.suppress(Exception):
        _extractor.suitable("http://127.0.0.1/x")
with contextlib.suppress(Exception):
    from yt_dlp.extractor.generic import GenericIE  # noqa: F401  (the real class behind the lazy one)
with contextlib.suppress(Exception), yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True}) as _ydl:
    _ydl._request_director  # noqa: B018  (builds the request handlers; no request is made)
