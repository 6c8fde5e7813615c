"""The command-line tools (build, inspect, report, sample, download_yt8m, doctor) and their options."""
