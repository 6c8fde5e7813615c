"""Rate limits, pacing and identities: the fetcher against loopback limiters (tests/ starts them).

The site stand-in (pipeline.testing.loopback_limiter) counts a request without Range as a new video:
an honest limiter lets `limit` start per `period` and answers the rest 429 + Retry-After; a wall
answers every new video 429 without one. Small numbers keep each test to seconds.
"""

from __future__ import annotations

import concurrent.futures
import csv
import glob
import json
import os
import subprocess
import sys

import pytest

from pipeline import decode
from pipeline.errors import ClipError
from pipeline.fetch import attempt, identities, ytdlp
from pipeline.fetch import clips as fetch
from pipeline.fetch.config import FetchConfig
from pipeline.net import address_policy, guard_proxy, pacing
from pipeline.testing import testvideo
from pipeline.testing.loopback_limiter import AuthProxy, LimiterServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IDS = [f"rateVideo{i:02d}" for i in range(10)]
DROP_ID = "dropsOnce01"


@pytest.fixture(autouse=True)
def _fresh_pacers():
    pacing.reset()  # pacers are per process: every test starts without an earlier test's push-backs
    yield
    pacing.reset()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> bytes:
    path = str(tmp_path_factory.mktemp("limiter") / "v.mp4")
    testvideo.generate_test_video(path, seconds=8, size="160x120", rate=10, audio=False)
    with open(path, "rb") as f:
        return f.read()


def _config(site: LimiterServer, **overrides) -> FetchConfig:
    values = dict(url_template=site.url + "/videos/{id}.mp4", backoff_base=0.05, socket_timeout=5.0,
                  max_attempts=3, max_seconds=60.0)
    values.update(overrides)
    return FetchConfig(**values)


def _fetch_all(ids, config, tmp_path, workers=4):
    """Fetches every id on `workers` threads (one process: one shared pacer); id -> FetchResult or ClipError."""

    def one(video_id):
        try:
            return fetch.fetch_clip(video_id=video_id, start=1.0, end=3.0, work_dir=str(tmp_path / video_id),
                                    config=config)
        except ClipError as e:
            return e

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))


# --------------------------------------------------------------------------- the pacer itself


@pytest.mark.parametrize("text,expected", [("300/h", (300, 3600.0)), ("4/4s", (4, 4.0)), ("10/90s", (10, 90.0)),
                                           ("1000/1d", (1000, 86400.0)), ("2/m", (2, 60.0)), ("5/2", (5, 2.0))])
def test_parse_rate(text, expected):
    assert pacing.parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "fast", "0/h", "4/0s", "4/4y", "-1/h", "4/"])
def test_parse_rate_refuses_nonsense(text):
    with pytest.raises(ValueError, match="--fetch_rate"):
        pacing.parse_rate(text)


def test_fetch_rate_flag_is_checked_at_parse_time():
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.cli.options import BuildOptions

    assert PipelineOptions(["--fetch_rate", "300/h"]).view_as(BuildOptions).fetch_rate == "300/h"
    code = "from pipeline.cli import build; raise SystemExit(build.main(['--fetch_rate', '3/x']))"
    proc = subprocess.run([sys.executable, "-c", code],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO},
                          timeout=120, check=False)
    assert proc.returncode != 0 and "--fetch_rate" in proc.stderr and "N/PERIOD" in proc.stderr, proc.stderr


def test_pacer_spaces_starts_and_refuses_a_start_past_the_deadline():
    now = [100.0]
    pacer = pacing.Pacer("h", interval=2.0, clock=lambda: now[0])
    pacer.acquire(deadline=101.0).succeeded()  # the first start is free
    with pytest.raises(pacing.StillLimited, match=r"allowed in 2\.0s"):
        pacer.acquire(deadline=101.0)  # the next is 2 s away, after this row's deadline: no wait, no request
    now[0] = 102.0
    pacer.acquire(deadline=103.0)


def test_pacer_honours_retry_after_and_backs_off_multiplicatively_then_speeds_up_slowly():
    now = [0.0]
    pacer = pacing.Pacer("h", clock=lambda: now[0])
    pacer.acquire().push_back(retry_after=30.0)
    with pytest.raises(pacing.StillLimited) as caught:
        pacer.acquire(deadline=29.0)  # everyone waits for the server's Retry-After
    assert 30.0 <= caught.value.wait <= 33.0 and "Retry-After 30s" in str(caught.value)
    now[0] = 40.0
    ticket = pacer.acquire()
    assert pacer._gap == pacing.BASE_GAP_S
    ticket.push_back(None)  # no Retry-After: exponential backoff with jitter, and the gap doubles
    assert pacer._gap == 2 * pacing.BASE_GAP_S
    assert 40.0 + pacing.BASE_BACKOFF_S <= pacer._blocked_until <= 40.0 + 2 * pacing.BASE_BACKOFF_S
    now[0] = 100.0
    pacer.acquire().succeeded()
    assert pacer._gap == pytest.approx(1.875 * pacing.BASE_GAP_S)  # additive: an eighth of the base per success
    now[0] = 200.0
    t = pacer.acquire()  # a second report of one ticket counts once
    t.succeeded()
    t.push_back(5.0)
    assert pacer.pushbacks == 2


# --------------------------------------------------------------------------- the classifier


@pytest.mark.parametrize("message", [
    "[youtube] abcdefghijk: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies for "
    "the authentication.",
    "[youtube] abcdefghijk: Video unavailable. This content isn't available, try again later. The current session "
    "has been rate-limited by YouTube for up to an hour.",
    "unable to download video data: HTTP Error 429: Too Many Requests",
])
def test_the_bot_wall_and_rate_limits_are_rate_limited_and_retryable(message):
    assert ytdlp.classify_error(message) == ("rate_limited", True)


@pytest.mark.parametrize("message", [
    "[youtube] abcdefghijk: Sign in to confirm your age. This video may be inappropriate for some users.",
    "[youtube] abcdefghijk: Join this channel to get access to members-only content like this video.",
])
def test_age_and_membership_walls_stay_unavailable(message):
    assert ytdlp.classify_error(message) == ("unavailable_sign_in", False)


# --------------------------------------------------------------------------- against loopback limiters


def test_honest_limiter_every_row_is_fetched(video, tmp_path):
    """3 new videos per 2 s, 429 + Retry-After beyond: every row ends fetched; one mid-body break is retried."""
    ids = IDS[:8] + [DROP_ID]
    with LimiterServer(video, limit=3, period=2.0, drop_once=(DROP_ID,)) as site:
        results = _fetch_all(ids, _config(site), tmp_path)
    failed = {k: v for k, v in results.items() if isinstance(v, ClipError)}
    assert not failed, {k: (v.reason, v.message) for k, v in failed.items()}
    assert site.new_videos >= len(ids)
    # After the first push-back the process waits for Retry-After together and then paces itself: a few
    # 429s in all (without the pacer the threads keep asking during every Retry-After: 10 in a trial run).
    assert site.refused <= len(ids) // 2 + 1, site.refused
    assert results[DROP_ID].figures.attempts >= 2  # the broken body was a transient failure, retried


def test_push_backs_do_not_use_up_fetch_attempts(video, tmp_path):
    """--fetch_attempts 1: a 429 is the site's pacing, not a failed attempt; every row still ends fetched."""
    with LimiterServer(video, limit=2, period=2.0) as site:
        results = _fetch_all(IDS[:5], _config(site, max_attempts=1), tmp_path, workers=3)
    assert site.refused >= 1  # the limiter did push back
    failed = {k: (v.reason, v.message) for k, v in results.items() if isinstance(v, ClipError)}
    assert not failed, failed


def test_fetch_rate_keeps_within_the_limit(video, tmp_path):
    """--fetch_rate at the server's own rate: evenly spaced starts, (almost) no 429 at all."""
    with LimiterServer(video, limit=3, period=2.0) as site:
        results = _fetch_all(IDS[:6], _config(site, fetch_rate="3/2s"), tmp_path)
    assert all(not isinstance(r, ClipError) for r in results.values()), results
    assert site.refused <= 1, site.refused


def test_a_wall_ends_rows_rate_limited_with_a_bounded_number_of_requests(video, tmp_path):
    """Every new video refused, no Retry-After: rows fail rate_limited when their budget runs out, and the
    site sees a few requests, not rows x attempts."""
    workers = 3
    with LimiterServer(video, mode="wall") as site:
        results = _fetch_all(IDS, _config(site, max_seconds=4.0, max_attempts=5), tmp_path, workers=workers)
    assert {type(r) for r in results.values()} == {ClipError}
    assert {r.reason for r in results.values()} == {"rate_limited"}
    assert all("still rate limited when --fetch_max_seconds 4 ran out" in r.message for r in results.values()), \
        [r.message for r in results.values()]
    # In flight together at first (one each), then the shared backoff outlasts every row's budget.
    assert site.page_requests <= 2 * workers, site.page_requests


def test_429_seen_by_the_guard_feeds_the_pacer(video, tmp_path):
    """The guard reads the 429's Retry-After itself: a second fetch waits for it without asking the site."""
    with LimiterServer(video, limit=1, period=30.0) as site:
        config = _config(site, max_seconds=5.0)
        fetch.fetch_clip(video_id=IDS[0], start=1.0, end=2.0, work_dir=str(tmp_path / "a"), config=config)
        with pytest.raises(ClipError) as caught:
            fetch.fetch_clip(video_id=IDS[1], start=1.0, end=2.0, work_dir=str(tmp_path / "b"), config=config)
        asked = site.page_requests
        with pytest.raises(ClipError) as again:
            fetch.fetch_clip(video_id=IDS[2], start=1.0, end=2.0, work_dir=str(tmp_path / "c"), config=config)
    assert caught.value.reason == again.value.reason == "rate_limited"
    assert "Retry-After" in again.value.message, again.value.message
    assert site.page_requests == asked == 2  # the third row never reached the site


# --------------------------------------------------------------------------- identities and secrets


def test_identity_lists_and_redaction(tmp_path):
    listing = tmp_path / "proxies.txt"
    listing.write_text("# proxies\nhttp://u:pw1@127.0.0.1:1\n\nhttp://u:pw2@127.0.0.1:2\n")
    assert identities.split_values(f"@{listing}", flag="--proxy") == ["http://u:pw1@127.0.0.1:1",
                                                                      "http://u:pw2@127.0.0.1:2"]
    assert identities.split_values("a,b", flag="--cookies") == ["a", "b"]
    assert identities.redact_url("http://user:s3cret@host:8080") == "http://user:***@host:8080"
    assert "TOKEN" not in identities.redact_extractor_args("youtube:player_client=web;po_token=web.gvs+TOKEN")
    pool = identities.Pool([None], ["http://u:pw1@h:1", "http://u:pw2@h:2", "http://u:pw3@h:3"])
    first = pool.current()
    assert pool.rotate_from(first).number == first.number % 3 + 1
    assert pool.rotate_from(first).number == first.number % 3 + 1  # a second report of the same wall: no move
    assert "pw" not in repr(first) and "pw" not in first.label
    with pytest.raises(ValueError, match="Netscape"):
        bad = tmp_path / "bad.txt"
        bad.write_text("session=abc")
        identities.stage_cookies(str(bad))


COOKIE_SECRET = "c00kieS3cretValue"
PROXY_SECRET = "Pr0xyPassw0rd"
TOKEN_SECRET = "P0T0kenSecret"


def _kinetics_csv(path, ids):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
        w.writerows([["archery", vid, 1, 3, "train"] for vid in ids])


def test_build_with_identities_fetches_every_row_and_never_shows_a_secret(video, tmp_path):
    """A fetch-only build under -v through an authenticating proxy with cookies and a PO token, against an
    honest limiter: every row is kept, the proxy and cookies were used, and no secret is in any output file,
    log line or the options the workers get."""
    ids = IDS[:6]
    cookies = tmp_path / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tSID\t{COOKIE_SECRET}\n")
    csv_path, out, clips = tmp_path / "k.csv", tmp_path / "out", tmp_path / "clips"
    _kinetics_csv(csv_path, ids)
    with LimiterServer(video, limit=3, period=2.0) as site, AuthProxy("user", PROXY_SECRET) as proxy:
        argv = ["-v", "--input_csv", str(csv_path), "--output_dir", str(out), "--features", "none",
                "--clips_dir", str(clips), "--video_url_template", site.url + "/videos/{id}.mp4",
                "--fetch_timeout", "10", "--fetch_backoff", "0.05", "--fetch_concurrency", "3",
                "--cookies", str(cookies), "--proxy", f"http://user:{PROXY_SECRET}@{proxy.address}",
                "--yt_dlp_extractor_args", f"youtube:player_client=web;po_token=web.gvs+{TOKEN_SECRET}"]
        code = ("import json, sys; from pipeline.cli import build; rc = build.main(sys.argv[1:]); "
                "import os; print('ENVIRON', json.dumps(dict(os.environ))); sys.exit(rc)")
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": REPO}, timeout=600, check=False)
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs[-4000:]
    assert len(glob.glob(str(clips / "*" / "*.mp4"))) == len(ids), logs[-4000:]
    assert json.load(open(out / "stats.json"))["clips_kept"] == len(ids)
    assert proxy.tunnels > 0 and proxy.refused == 0  # the proxy was used, with its password
    assert site.cookies and all(COOKIE_SECRET in c for c in site.cookies)  # the staged cookies were sent
    assert "ENVIRON" in proc.stdout  # the process environment (the in-memory runner's workers) is searched too
    for secret in (COOKIE_SECRET, PROXY_SECRET, TOKEN_SECRET):
        assert secret not in logs, secret
        for path in glob.glob(str(tmp_path / "**" / "*"), recursive=True):
            if os.path.isfile(path) and path != str(cookies):
                with open(path, "rb") as f:
                    assert secret.encode() not in f.read(), (secret, path)


def test_the_options_workers_get_hold_no_secret(tmp_path):
    """The launcher stages the secrets into the fetch config, then scrubs the options Beam logs under -v, shows
    in the Dataflow console and hands every SDK worker (PIPELINE_OPTIONS)."""
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    from pipeline.cli import build
    from pipeline.cli.options import BuildOptions

    cookies = tmp_path / "c.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n.example.com\tTRUE\t/\tTRUE\t0\tSID\t{COOKIE_SECRET}\n")
    listing = tmp_path / "cookies.list"
    listing.write_text(f"{cookies}\n{cookies}\n")
    po = PipelineOptions(["--proxy", f"http://user:{PROXY_SECRET}@127.0.0.1:3128,http://u2:{PROXY_SECRET}2@h:1",
                          "--cookies", f"@{listing}",
                          "--yt_dlp_extractor_args", f"youtube:player_client=web;po_token=web.gvs+{TOKEN_SECRET}"])
    config = build._staged_fetch_config(po, po.view_as(BuildOptions))
    assert len(config.proxies) == 2 and PROXY_SECRET in config.proxies[0]  # the workers' copy is whole
    assert len(config.cookie_jars) == 2 and COOKIE_SECRET in config.cookie_jars[0]
    assert TOKEN_SECRET in config.extractor_args
    shown = [json.dumps(po.get_all_options()), str(po), repr(config),
             str(JobServiceHandle.encode_pipeline_options(po.get_all_options())),
             ]
    for secret in (COOKIE_SECRET, PROXY_SECRET, TOKEN_SECRET):
        assert not any(secret in text for text in shown), secret
    assert po.view_as(BuildOptions).proxy.startswith("http://user:***@127.0.0.1:3128")


def test_cookies_never_reach_a_command_line(video, tmp_path, monkeypatch):
    """yt-dlp hands the media URL's cookies to the section's ffmpeg as -cookies: visible in /proc to every
    local user. The fetcher forgets them before the cut."""
    from pipeline.net import netguard

    log = tmp_path / "argv.log"
    wrapper = tmp_path / "ffmpeg"
    real = netguard.ffmpeg_for_ytdlp(decode.probe.ffmpeg_exe())
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o700)
    monkeypatch.setattr(netguard, "ffmpeg_for_ytdlp", lambda ffmpeg: str(wrapper))
    jar = f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t4102444800\tSID\t{COOKIE_SECRET}\n"
    with LimiterServer(video, limit=10, period=1.0) as site:
        result = fetch.fetch_clip(video_id=IDS[0], start=1.0, end=3.0, work_dir=str(tmp_path / "w"),
                                  config=_config(site, cookie_jars=(jar,)))
    assert result.figures.method == "section" and site.cookies and COOKIE_SECRET in site.cookies[0]
    argv = log.read_text()
    assert "-i" in argv and COOKIE_SECRET not in argv


def test_the_guard_hands_every_relayed_status_and_retry_after_to_its_observer(video):
    import urllib.error
    import urllib.request


    seen = []
    with LimiterServer(video, limit=1, period=30.0) as site:
        url = site.url + f"/videos/{IDS[0]}.mp4"
        with guard_proxy.GuardProxy(address_policy.AddressPolicy([url])) as guard:
            guard.on_response = lambda status, retry_after: seen.append((status, retry_after))
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": guard.url}))
            opener.open(url, timeout=10).close()
            with pytest.raises(urllib.error.HTTPError):
                opener.open(url, timeout=10)
    assert seen[0] == (200, None) and seen[1][0] == 429 and 29 <= seen[1][1] <= 30


def test_extractor_args_reach_yt_dlp_and_merge_with_extra_options():
    from pipeline.fetch import ytdlp

    config = FetchConfig(extractor_args="youtube:player_client=web,tv;po_token=web.gvs+T0K",
                               extra_ytdlp_options={"extractor_args": {"youtube": {"lang": ["en"]}}})
    params = attempt.build_params(config, out_dir="/tmp", logger=ytdlp.CapturingLogger(), hook=lambda s: None,
                                ffmpeg="ffmpeg", cookies_file=None, timeout=5.0, proxy="http://127.0.0.1:1")
    assert params["extractor_args"] == {"youtube": {"lang": ["en"], "player_client": ["web", "tv"],
                                                    "po_token": ["web.gvs+T0K"]}}
    assert "T0K" not in repr(config)
    with pytest.raises(ValueError) as caught:
        FetchConfig(extractor_args="po_token=S3CRET")
    assert "S3CRET" not in str(caught.value)
