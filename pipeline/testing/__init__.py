"""Fixtures the tests, the sample and the benchmarks share: loopback server, test videos."""
