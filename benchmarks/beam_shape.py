"""The build's shape in plain Beam, without the project's code: does the SDK worker grow per row?

    python -m benchmarks.beam_shape CSV [--group_size 100000] [--no_group] [--workers 2]

Reads the CSV's lines (header skipped), spreads them with a Reshuffle, turns each into a
failure-line-sized dict, counts them per reason (a lifted CombinePerKey), and, unless
--no_group, groups their JSON lines by shard (rows / --group_size keys, as the build groups its
failure report) and counts each group. DirectRunner multi_processing, as benchmarks.csv_scale runs
the build; that script samples the processes' memory. Prints one RESULT line of counts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zlib

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions


def as_failure(line: str) -> dict:
    """A dict of the size and shape of a missing_file failure line."""
    return {"id": line[:64], "reason": "missing_file", "stage": "decode", "row": 0,
            "message": f"video file not found: {line}", "fields": {"video": line, "labels": "x"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv")
    parser.add_argument("--rows", type=int, required=True, help="Rows in the CSV (sets the number of groups).")
    parser.add_argument("--group_size", type=int, default=100000,
                        help="Values per group (the build's failures_per_shard).")
    parser.add_argument("--no_group", action="store_true", help="Leave out the GroupByKey.")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    keys = max(1, math.ceil(args.rows / args.group_size))
    options = PipelineOptions(["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"])
    with beam.Pipeline(options=options) as p:
        failures = (p | beam.io.ReadFromText(args.csv, skip_header_lines=1) | beam.Reshuffle()
                    | "AsFailure" >> beam.Map(as_failure))
        counts = [failures | "ByReason" >> beam.Map(lambda f: (f["reason"], 1)) | "Sum" >> beam.CombinePerKey(sum)]
        if not args.no_group:
            counts.append(
                failures
                | "ByShard" >> beam.Map(lambda f: (zlib.crc32(f["id"].encode()) % keys, json.dumps(f)))
                | "GroupShard" >> beam.GroupByKey()
                | "CountGroup" >> beam.Map(lambda kv: ("grouped", sum(1 for _ in kv[1])))
                | "SumGroups" >> beam.CombinePerKey(sum))
        _ = (counts | beam.Flatten() | beam.combiners.ToDict()
             | beam.Map(lambda d: print("RESULT " + json.dumps(d), flush=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
