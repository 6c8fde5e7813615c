"""Benchmarks of the dataset builder: `python benchmarks/run.py [--quick] [--json OUT]`."""
