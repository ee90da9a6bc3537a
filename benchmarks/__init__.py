"""Reproducible benchmarks: ingest, SRU and Z39.50 load against our server and zebrasrv, and the
federation overhead. `python -m benchmarks.run --help`; results are written up in docs/benchmarks.md."""
