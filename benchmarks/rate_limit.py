"""Clips/s the fetcher achieves against a loopback limiter, against the rate the limiter allows.

A loopback site (pipeline.testing.loopback_limiter) lets at most R new videos start per PERIOD and answers
the rest 429 with Retry-After. N rows are fetched on --concurrency threads of one process (the
pacer is per process), once without --fetch_rate (the pacer learns from the 429s) and once with
--fetch_rate R/PERIOD. Prints clips/s, the ratio to R/PERIOD (target >= 0.9) and the 429 count.

    PYTHONPATH=. python -m benchmarks.rate_limit --rows 24 --limit 4 --period 4
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import tempfile
import time

from pipeline.errors import ClipError
from pipeline.fetch import clips as fetch
from pipeline.fetch.config import FetchConfig
from pipeline.net import pacing
from pipeline.testing import testvideo
from pipeline.testing.loopback_limiter import LimiterServer


def _run(video: bytes, *, rows: int, limit: int, period: float, concurrency: int, fetch_rate: str | None,
         work: str) -> dict:
    pacing.reset()
    with LimiterServer(video, limit=limit, period=period) as site:
        config = FetchConfig(url_template=site.url + "/videos/{id}.mp4", backoff_base=0.2, socket_timeout=10.0,
                                   max_attempts=3, max_seconds=max(120.0, 4 * rows * period / limit),
                                   fetch_rate=fetch_rate)

        def one(i: int) -> bool:
            try:
                result = fetch.fetch_clip(video_id=f"bench{i:06d}", start=1.0, end=3.0,
                                          work_dir=os.path.join(work, str(i)), config=config)
            except ClipError:
                return False
            os.unlink(result.path)
            return True

        began = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            ok = sum(pool.map(one, range(rows)))
        seconds = time.monotonic() - began
    allowed = limit / period
    # At the site: a sliding window lets the first `limit` videos start at once and R/PERIOD after
    # them, so (admitted - limit) / (last admission - first) is at most the allowed rate.
    times = site.admitted_at
    span = times[-1] - times[0] if len(times) > limit else float("nan")
    site_rate = (len(times) - limit) / span if len(times) > limit else float("nan")
    half = times[len(times) // 2:]
    steady = (len(half) - 1) / (half[-1] - half[0]) if len(half) > 2 else float("nan")
    return {"fetch_rate": fetch_rate or "none", "rows": rows, "fetched": ok, "seconds": seconds,
            "steady": steady / allowed,
            "clips_per_s": ok / seconds, "allowed_per_s": allowed, "site_rate": site_rate,
            "ratio": site_rate / allowed, "ratio_all": (ok / seconds) / allowed, "http_429": site.refused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--limit", type=int, default=4, help="new videos the limiter allows per period")
    parser.add_argument("--period", type=float, default=4.0, help="the limiter's period, seconds")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "v.mp4")
        testvideo.generate_test_video(path, seconds=8, size="160x120", rate=10, audio=False)
        with open(path, "rb") as f:
            video = f.read()
        print(f"limiter: {args.limit} new videos per {args.period:g}s = {args.limit / args.period:.3f}/s; "
              f"{args.rows} rows, {args.concurrency} threads")
        for rate in (None, f"{args.limit}/{args.period:g}s"):
            r = _run(video, rows=args.rows, limit=args.limit, period=args.period, concurrency=args.concurrency,
                     fetch_rate=rate, work=work)
            print(f"--fetch_rate {r['fetch_rate']:>6}: {r['fetched']}/{r['rows']} fetched in {r['seconds']:.1f}s = "
                  f"{r['clips_per_s']:.3f} clips/s ({r['ratio_all']:.2f} of the allowed {r['allowed_per_s']:.3f}/s, "
                  f"first and last fetch included); new videos at the site after its free first window "
                  f"{r['site_rate']:.3f}/s = {r['ratio']:.2f} of allowed, second half of the run "
                  f"{r['steady']:.2f} of allowed; "
                  f"HTTP 429s: {r['http_429']}")


if __name__ == "__main__":
    main()
