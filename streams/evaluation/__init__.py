"""Judging runs: composite accuracy, back-tests, drift injection, the demo and the report."""
