"""Benchmarks against the local stack (docs/benchmarks.md): `revloop bench ingest`,
`revloop bench accept-path`, `revloop bench streams`, `revloop bench normalizer`,
`revloop bench sinks`, `revloop bench replay`, `revloop bench lag` and `revloop bench ledger`.
A development tool, not part of the revloop wheel."""

from bench.accept_path import accept_path_command
from bench.ingest import bench_app
from bench.lag import lag_command
from bench.ledger import ledger_command
from bench.normalizer import normalizer_command, prototype_command
from bench.replay import replay_command
from bench.sinks import sinks_command
from bench.streams import streams_command

bench_app.command("accept-path")(accept_path_command)
bench_app.command("streams")(streams_command)
bench_app.command("normalizer")(normalizer_command)
bench_app.command("normalizer-prototype", hidden=True)(prototype_command)
bench_app.command("sinks")(sinks_command)
bench_app.command("replay")(replay_command)
bench_app.command("lag")(lag_command)
bench_app.command("ledger")(ledger_command)

__all__ = ["bench_app"]
