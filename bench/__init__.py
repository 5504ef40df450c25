"""Benchmarks against the local stack (docs/benchmarks.md): `revloop bench ingest` and
`revloop bench accept-path`. A development tool, not part of the revloop wheel."""

from bench.accept_path import accept_path_command
from bench.ingest import bench_app

bench_app.command("accept-path")(accept_path_command)

__all__ = ["bench_app"]
