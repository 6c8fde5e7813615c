"""Writes a self-contained HTML report with plots for a frame-level dataset: ours or YouTube-8M's.

  python -m pipeline.report out/                                   # writes out/report.html
  python -m pipeline.report yt8m/ --out yt8m.html                  # downloaded train0000.tfrecord ... shards
  python -m pipeline.report out/ --compare yt8m/ --out compare.html   # both on the same plots
  python -m pipeline.report gs://BUCKET/datasets/run1 --max_records 5000
  python -m pipeline.report 'gs://BUCKET/yt8m/frame/train00*.tfrecord' --out report.html

The page shows the figures of stats.json (when the dataset has one) next to plots of the label
distribution, steps per clip, failures by reason and stage, per-dimension mean and spread of the
dequantized RGB and audio features, and fetch figures when stats.json carries them. It has no
scripts, fonts or images from elsewhere: every plot is inline SVG drawn with matplotlib
(`pipeline.cli.plots`), so the file can be mailed or attached to an issue as it is. Records are read
through `pipeline.inspect` (the same checks), at most `--max_records` per dataset (0: all), from
record files taken in a seeded random order so that a sample spans every split; the page says
when it is a sample.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import math
import sys

from pipeline.cli.plots import COLORS, hbar_chart, histogram_chart, line_chart
from pipeline.cli.progress_line import format_bytes
from pipeline.cli.report_data import Dataset, load_dataset
from pipeline.dataset import fileio, records

MAX_LABEL_BARS = 40
_STEP_BIN_WIDTHS = (1, 2, 5, 10, 20, 50)
_MAX_STEP_BINS = 30


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


# ----------------------------------------------------------------------------------------------
# Page sections.

def step_bins(max_steps: int) -> tuple[int, list[tuple[int, int]]]:
    """Bins of a common width (1, 2, 5, 10, 20 or 50 steps) from 1 to max_steps, at most 30 of them."""
    max_steps = max(1, max_steps)
    width = next((w for w in _STEP_BIN_WIDTHS if math.ceil(max_steps / w) <= _MAX_STEP_BINS), _STEP_BIN_WIDTHS[-1])
    return width, [(lo, lo + width - 1) for lo in range(1, max_steps + 1, width)]


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "—"
    return str(value)


def _count(n: int, noun: str) -> str:
    """``1 name``, ``2 names``: the report's counts in words."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _summary_rows(data: Dataset) -> list[tuple[str, str]]:
    """The dataset's headline figures: stats.json's first (the whole build), then what was read."""
    rows = []
    s = data.stats
    if s is not None and s.get("features") == "none":
        for key, label in (("rows_read", "input rows read"), ("clips_kept", "clips kept (fetched now)"),
                           ("clips_already_kept", "clips already kept"), ("failures", "failures"),
                           ("all_rows_accounted_for", "all rows accounted for"), ("clips_dir", "clips directory"),
                           ("started_at", "started"), ("finished_at", "finished")):
            if key in s:
                rows.append((f"stats.json: {label}", _fmt(s[key])))
        fetch = s.get("fetch") or {}
        rows.append(("stats.json: fetched", f"{_fmt(fetch.get('clips_fetched', 0))} clips, "
                                            f"{_fmt(fetch.get('bytes_downloaded', 0))} bytes"))
        return rows
    if s is not None:
        seconds = s.get("seconds_of_video")
        for key, label in (("rows_read", "input rows read"), ("records_written", "records written"),
                           ("failures", "failures"), ("all_rows_accounted_for", "all rows accounted for"),
                           ("steps_written", "steps written"), ("seconds_of_video", "seconds of video"),
                           ("clips_with_silent_audio", "clips with silent audio"),
                           ("records_per_split", "records per split"), ("records_in_dataset", "records in dataset"),
                           ("failures_carried_over", "failures carried over from earlier runs"),
                           ("clips_by_source", "clips by source"), ("vocabulary_size", "vocabulary size"),
                           ("synthetic", "synthetic models"), ("started_at", "started"),
                           ("finished_at", "finished")):
            if key in s:
                text = _fmt(s[key])
                if key == "seconds_of_video" and isinstance(seconds, (int, float)):
                    text += f" ({seconds / 3600:,.2f} h)"
                rows.append((f"stats.json: {label}", text))
    else:
        rows.append(("stats.json", "absent (YouTube-8M shards, or a build that did not finish)"))
    steps = sum(k * v for k, v in data.steps.items())
    rows += [
        ("record files", f"{len(data.paths):,} ({data.files_read:,} read)"),
        ("records read", f"{data.records_read:,}" + (" (sample)" if data.sampled else "")),
        ("steps read", f"{steps:,}"),
        ("steps per record", f"mean {steps / data.records_read:.1f}, min {min(data.steps)}, max {max(data.steps)}"
         if data.records_read else "—"),
        ("distinct labels", f"{len(data.labels):,}; unlabeled records: {data.unlabeled:,}"),
        ("vocabulary.csv", _count(len(data.vocabulary), "name") if data.vocabulary else "not found"),
        ("layout violations", f"{data.violations_total:,}"),
    ]
    for name, moments in (("rgb", data.rgb), ("audio", data.audio)):
        if moments.n:
            mean, std = moments.mean_std()
            rows.append((f"{name} (dequantized)", f"mean {mean.mean():+.4f}, mean per-dimension std {std.mean():.4f}"))
    return rows


def _summary_table(datasets: list[Dataset]) -> str:
    keys: list[str] = []
    values = []
    for data in datasets:
        rows = dict(_summary_rows(data))
        values.append(rows)
        keys += [k for k in rows if k not in keys]
    head = "".join(f'<th style="color:{COLORS[i]}">{_esc(d.name)}</th>' for i, d in enumerate(datasets))
    body = "".join(f"<tr><th>{_esc(k)}</th>" + "".join(f"<td>{_esc(v.get(k, '—'))}</td>" for v in values) + "</tr>"
                   for k in keys)
    return f'<table class="summary"><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>'


def _warnings(datasets: list[Dataset]) -> list[str]:
    out = []
    for data in datasets:
        who = _esc(data.name)
        if data.synthetic:
            out.append(f'<div class="warning synthetic"><strong>SYNTHETIC FEATURES:</strong> {who} was built with '
                       "<code>--models synthetic</code> (seeded random weights). Its features mean nothing; "
                       "use it only to test the plumbing.</div>")
        if data.stats is not None and data.stats.get("features") == "none":
            out.append(f'<div class="note">{who}: a fetch-only build (<code>--features none</code>): no records; '
                       f"{_fmt(data.stats.get('clips_kept', 0))} clips kept and "
                       f"{_fmt(data.stats.get('clips_already_kept', 0))} already kept in "
                       f"{_esc(str(data.stats.get('clips_dir') or '--clips_dir'))}.</div>")
        if data.stats is not None and data.stats.get("all_rows_accounted_for") is False:
            out.append(f'<div class="warning">{who}: rows read ≠ records written + failures in stats.json.</div>')
        if data.violations_total:
            out.append(f'<div class="warning">{who}: {data.violations_total:,} record(s) break the YouTube-8M '
                       "layout (listed below); they are left out of the plots.</div>")
        if data.sampled:
            out.append(f'<div class="note sampling">{who}: <strong>sampled</strong> — plots use the first '
                       f"{data.items_read:,} records (--max_records {data.max_records:,}) "
                       f"from {data.files_read:,} of {len(data.paths):,} record files, taken in a seeded random "
                       "order.</div>")
        if data.ours and data.stats is None:
            out.append(f'<div class="warning">{who}: no stats.json — the build has not finished (or failed); '
                       "figures below come from the files present.</div>")
    return out


def _labels_section(datasets: list[Dataset]) -> str:
    parts = ["<h2>Labels</h2>"]
    for i, data in enumerate(datasets):
        suffix = "" if i == 0 else f"-{i + 1}"
        if not data.labels:
            parts.append(f"<p>{_esc(data.name)}: no labels in the records read.</p>")
            continue
        top = data.labels.most_common(MAX_LABEL_BARS)
        items = [(f"{data.vocabulary[k]} ({k})" if k in data.vocabulary else str(k), float(v)) for k, v in top]
        shown = f"top {len(top)} of {len(data.labels):,}" if len(data.labels) > len(top) else f"all {len(top)}"
        title = f"{data.name}: records per label ({shown} label{'' if len(top) == 1 else 's'})"
        parts.append(f"<h3>{_esc(title)}</h3>")
        parts.append(hbar_chart(f"plot-labels{suffix}", title, items, color=COLORS[i]))
        if not data.vocabulary:
            parts.append("<p class=\"note\">No vocabulary.csv found beside the records; labels are shown as "
                         "indices.</p>")
    return "".join(parts)


def _steps_section(datasets: list[Dataset]) -> str:
    parts = ["<h2>Steps per clip</h2>"]
    max_steps = max((max(d.steps) for d in datasets if d.steps), default=0)
    if not max_steps:
        return "".join(parts) + "<p>No records read.</p>"
    width, bins = step_bins(max_steps)
    labels = [str(lo) if lo == hi else f"{lo}–{hi}" for lo, hi in bins]
    compare = len(datasets) > 1
    series = []
    for data in datasets:
        counts = [sum(n for steps, n in data.steps.items() if lo <= steps <= hi) for lo, hi in bins]
        if compare:  # shares, so datasets of different sizes can be read against each other
            total = max(sum(counts), 1)
            counts = [round(100.0 * c / total, 4) for c in counts]
        series.append((data.name, counts))
    title = f"Records per number of steps ({width}-step bins)"
    parts.append(histogram_chart("plot-steps", title, labels, series,
                                 y_label="% of records" if compare else "records"))
    return "".join(parts)


def _failures_section(datasets: list[Dataset]) -> str:
    parts = ["<h2>Failures</h2>"]
    for i, data in enumerate(datasets):
        suffix = "" if i == 0 else f"-{i + 1}"
        f = data.failures
        if f is None:
            parts.append(f"<p>{_esc(data.name)}: no failure report (not a dataset built by this pipeline).</p>")
            continue
        parts.append(f"<p>{_esc(data.name)}: {f.total:,} failure(s), counted from {_esc(f.source)}.</p>")
        if data.stats is not None and f.source != "stats.json" and data.stats.get("failures") not in (None, f.total):
            parts.append(f'<div class="warning">stats.json says {_fmt(data.stats["failures"])} failures but the '
                         f"failure files hold {f.total:,} lines.</div>")
        if f.unparseable_lines:
            parts.append(f'<div class="warning">{f.unparseable_lines:,} failure line(s) are not JSON.</div>')
        for kind, counter in (("reason", f.by_reason), ("stage", f.by_stage)):
            if counter:
                title = f"{data.name}: failures by {kind}"
                parts.append(f"<h3>{_esc(title)}</h3>")
                items = [(k, float(v)) for k, v in counter.most_common()]
                parts.append(hbar_chart(f"plot-failures-{kind}{suffix}", title, items, color=COLORS[i]))
        if f.examples:
            rows = "".join(f"<tr><td>{_esc(e.get('id'))}</td><td>{_esc(e.get('stage'))}</td>"
                           f"<td>{_esc(e.get('reason'))}</td><td>{_esc(e.get('message'))}</td></tr>"
                           for e in f.examples)
            parts.append(f"<details><summary>First {len(f.examples)} failure line(s)</summary><table class=\"list\">"
                         f"<thead><tr><th>id</th><th>stage</th><th>reason</th><th>message</th></tr></thead>"
                         f"<tbody>{rows}</tbody></table></details>")
    return "".join(parts)


def _features_section(datasets: list[Dataset]) -> str:
    parts = ["<h2>Features (dequantized: q·4/255 + 4/512 − 2)</h2>",
             "<p>Per-dimension mean and spread (population std) over every step of the records read. "
             "The band is mean ± std.</p>"]
    for feature in ("rgb", "audio"):
        moments = [(d.name, getattr(d, feature)) for d in datasets]
        if not any(m.n for _, m in moments):
            parts.append(f"<p>{feature}: no steps read.</p>")
            continue
        stats = [(name, *m.mean_std()) for name, m in moments if m.n]
        width = records.RGB_BYTES if feature == "rgb" else records.AUDIO_BYTES
        title = f"{feature.upper()} ({width} dims): per-dimension mean ± std"
        parts.append(f"<h3>{_esc(title)}</h3>")
        parts.append(line_chart(f"plot-{feature}-mean", title, [(n, mean, std) for n, mean, std in stats],
                                kind="mean", y_label="dequantized value"))
        title = f"{feature.upper()}: per-dimension std"
        parts.append(f"<h3>{_esc(title)}</h3>")
        parts.append(line_chart(f"plot-{feature}-std", title, [(n, std, None) for n, _, std in stats],
                                kind="std", y_label="std"))
    return "".join(parts)


def _flatten(prefix: str, value: object) -> list[tuple[str, object]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f"{prefix}.{k}" if prefix else str(k), v)]
    return [(prefix, value)]


def _fetch_section(datasets: list[Dataset]) -> str:
    """stats.json's `fetch` figures, when a build records them; the section is left out otherwise."""
    parts = []
    for i, data in enumerate(datasets):
        fetch = (data.stats or {}).get("fetch")
        if not isinstance(fetch, dict) or not any(v for _, v in _flatten("", fetch)):
            continue  # absent, or all zero: a build from local files fetched nothing
        suffix = "" if i == 0 else f"-{i + 1}"
        rows = []
        for key, value in _flatten("", fetch):
            text = format_bytes(value) if "bytes" in key and isinstance(value, (int, float)) else _fmt(value)
            rows.append(f"<tr><th>{_esc(key)}</th><td>{_esc(text)}</td></tr>")
        total_bytes = next((fetch[k] for k in ("bytes_downloaded", "bytes", "total_bytes")
                            if isinstance(fetch.get(k), (int, float))), None)
        seconds = next((fetch[k] for k in ("seconds", "fetch_seconds", "total_seconds")
                        if isinstance(fetch.get(k), (int, float))), None)
        if total_bytes is not None and seconds:
            rate = format_bytes(total_bytes / seconds)
            rows.append(f"<tr><th>throughput (bytes / fetch seconds)</th><td>{_esc(rate)}/s</td></tr>")
        clips = fetch.get("clips_fetched")
        if isinstance(clips, (int, float)) and clips:
            per_clip = [f"{format_bytes(total_bytes / clips)}" if total_bytes is not None else "",
                        f"{seconds / clips:,.2f} s" if seconds is not None else ""]
            rows.append(f"<tr><th>per fetched clip</th><td>{_esc(', '.join(p for p in per_clip if p))}</td></tr>")
        parts.append(f"<h3>{_esc(data.name)}</h3><table class=\"summary\">{''.join(rows)}</table>")
        for key, value in fetch.items():
            if isinstance(value, dict) and value and all(isinstance(v, (int, float)) for v in value.values()):
                title = f"{data.name}: fetch {key}"
                parts.append(hbar_chart(f"plot-fetch-{key}{suffix}", title,
                                        [(str(k), float(v)) for k, v in value.items()], color=COLORS[i]))
    return "<h2>Fetching</h2>" + "".join(parts) if parts else ""


MAX_AVAILABILITY_ROWS = 2000


def _availability_section(datasets: list[Dataset]) -> str:
    """stats.json's availability: per split, and per split and label, how many rows became records."""
    parts = []
    for i, data in enumerate(datasets):
        table = (data.stats or {}).get("availability")
        if not isinstance(table, dict) or not table:
            continue
        suffix = "" if i == 0 else f"-{i + 1}"
        rows, split_rows = [], []
        for split, labels in sorted(table.items()):
            if not isinstance(labels, dict):
                continue
            n = sum(int(v.get("rows", 0)) for v in labels.values() if isinstance(v, dict))
            have = sum(int(v.get("records", 0)) for v in labels.values() if isinstance(v, dict))
            split_rows.append(f"<tr><td>{_esc(split)}</td><td>{n:,}</td><td>{have:,}</td><td>{n - have:,}</td>"
                              f"<td>{100.0 * have / max(n, 1):.1f}%</td></tr>")
            for label, v in sorted(labels.items()):
                if isinstance(v, dict):
                    n, have = int(v.get("rows", 0)), int(v.get("records", 0))
                    rows.append((split, label, n, have))
        head = "<thead><tr><th>split</th><th>rows</th><th>records</th><th>missing</th><th>available</th></tr></thead>"
        parts.append(f"<h3>{_esc(data.name)}: per split</h3><table class=\"list\">{head}<tbody>"
                     f"{''.join(split_rows)}</tbody></table>")
        worst = sorted(rows, key=lambda r: (r[3] / max(r[2], 1), r[0], r[1]))
        items = [(f"{split}/{label or '(unlabeled)'}", 100.0 * have / max(n, 1)) for split, label, n, have in worst]
        title = f"{data.name}: % of rows available, least available labels first"
        parts.append(hbar_chart(f"plot-availability{suffix}", title, items[:MAX_LABEL_BARS], color=COLORS[i]))
        body = "".join(f"<tr><td>{_esc(split)}</td><td>{_esc(label)}</td><td>{n:,}</td><td>{have:,}</td>"
                       f"<td>{n - have:,}</td><td>{100.0 * have / max(n, 1):.1f}%</td></tr>"
                       for split, label, n, have in rows[:MAX_AVAILABILITY_ROWS])
        more = f" (first {MAX_AVAILABILITY_ROWS:,} of {len(rows):,})" if len(rows) > MAX_AVAILABILITY_ROWS else ""
        parts.append(f"<details><summary>Per split and label{more}</summary><table class=\"list\"><thead><tr>"
                     "<th>split</th><th>label</th><th>rows</th><th>records</th><th>missing</th><th>available</th>"
                     f"</tr></thead><tbody>{body}</tbody></table></details>")
    return "<h2>Availability</h2>" + "".join(parts) if parts else ""


def _violations_section(datasets: list[Dataset]) -> str:
    parts = []
    for data in datasets:
        if data.violations:
            rows = "".join(f"<tr><td>{_esc(v['id'])}</td><td>{_esc(v['where'])}</td><td>{_esc(v['problem'])}</td></tr>"
                           for v in data.violations)
            parts.append(f"<h3>{_esc(data.name)}</h3><table class=\"list\"><thead><tr><th>id</th><th>where</th>"
                         f"<th>problem</th></tr></thead><tbody>{rows}</tbody></table>")
    return "<h2>Layout violations</h2>" + "".join(parts) if parts else ""


def _stats_details(datasets: list[Dataset]) -> str:
    parts = [f"<details><summary>{_esc(d.name)}: stats.json</summary><pre>{_esc(json.dumps(d.stats, indent=2))}"
             "</pre></details>" for d in datasets if d.stats is not None]
    return "".join(parts)


_CSS = """
body{font-family:sans-serif;margin:24px auto;max-width:900px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:14px;margin:18px 0 4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
table.summary th{background:#f6f6f6;font-weight:normal}
.warning{background:#fdecea;border:2px solid #d93025;padding:8px 12px;margin:8px 0}
.synthetic{font-size:16px}
.note{background:#fff8e1;border:1px solid #f0c36d;padding:6px 12px;margin:8px 0}
svg.plot{display:block;margin:4px 0}
pre{font-size:12px;background:#f6f6f6;padding:8px;overflow:auto}
"""


def render(datasets: list[Dataset]) -> str:
    """The whole page as one string: inline CSS and SVG only, nothing fetched when it is opened."""
    names = " vs ".join(d.name for d in datasets)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    fetch_only = all(d.stats is not None and d.stats.get("features") == "none" for d in datasets)
    # A fetch-only build (--features none) has kept clips and failures, no records: no record sections.
    kind = "Fetch-only build report (kept clips)" if fetch_only else "Frame-level dataset report"
    body = [f"<h1>{kind}: {_esc(names)}</h1>",
            f"<p>Generated {now} by <code>python -m pipeline.report</code>.</p>"]
    body += [*_warnings(datasets), "<h2>Summary</h2>"]
    sections = ((_summary_table, _failures_section, _fetch_section, _stats_details) if fetch_only else
                (_summary_table, _labels_section, _steps_section, _failures_section, _features_section,
                 _fetch_section, _availability_section, _violations_section, _stats_details))
    body += [section(datasets) for section in sections]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Report: {_esc(names)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(part for part in body if part) + "\n</body></html>\n")


def main(argv: list[str] | None = None) -> int:
    """Reads the dataset(s), writes the page; exit status 2 when there is nothing to report on, 1 when a
    record or shard breaks the layout (corrupt file, bad record, duplicate id), naming where."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.report", description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="dataset directory, record glob or file (local or gs://)")
    parser.add_argument("--out", help="where to write the page (default: DATASET_DIR/report.html)")
    parser.add_argument("--compare", help="a second dataset drawn on the same plots (e.g. official YouTube-8M shards)")
    parser.add_argument("--max_records", type=int, default=20000,
                        help="records read per dataset, at most (0: all); the page says when it sampled")
    args = parser.parse_args(argv)
    try:
        import matplotlib  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
        print('error: pipeline.report draws with matplotlib, the "report" extra: pip install -r '
              'requirements-report.txt (or pip install ".[report]")', file=sys.stderr)
        return 2
    datasets = []
    for spec in filter(None, (args.dataset, args.compare)):
        data = load_dataset(spec, max_records=args.max_records or None)
        if not data.paths and data.stats is None and data.failures is None:
            print(f"error: no record files, stats.json or failure files found at {spec}", file=sys.stderr)
            return 2
        datasets.append(data)
    out = args.out or (datasets[0].directory or ".").rstrip("/") + "/report.html"
    fileio.write_atomically(out, render(datasets))  # a half-written page never looks finished
    for data in datasets:
        print(f"{data.name}: {data.records_read:,} records read from {data.files_read:,} of {len(data.paths):,} "
              f"files{' (sampled)' if data.sampled else ''}")
    print(f"wrote {out}")
    bad = [v for data in datasets for v in data.violations]
    if any(data.violations_total for data in datasets):
        # The page is written (it shows them), but a script must not take a damaged dataset for a good one.
        print(f"error: {sum(d.violations_total for d in datasets)} record(s) or file(s) break the layout, e.g. "
              + "; ".join(f"{v['where']}: {v['problem']}" for v in bad[:5]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
