"""Benchmarks: scripts that print figures (median of several runs, ratios against a
baseline measured in the same run). Never timed assertions in tests."""
