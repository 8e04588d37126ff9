"""`pkmodel benchmark`: every performance figure on this machine, as JSON and a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import config_command, key
from pkmodel.config import Config


@config_command
def benchmark_command(
    cfg: Config,
    out: Path | None = key(
        "benchmark.out",
        "--out",
        "-o",
        help="JSON file of the figures; unless it is given, --quick writes NAME-quick.json",
    ),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Tiny sizes (64 px, width 0.35, 2 repeats) for tests: checks that every "
            "measurement runs; the numbers mean little.",
        ),
    ] = False,
    input_size: int | None = key("model.input_size"),
    width: float | None = key("model.width_mult", "--width"),
    repeats: int | None = key("benchmark.repeats"),
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Also time pkmodel's network against PoseKit's (model.arch posekit) in the "
            "same run, alternating: training step, eager and onnxruntime latency, MACs; "
            "ratios above 1 mean pkmodel is faster.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Measure every stage's speed on this machine (JSON and a table).

    Model parameters and MACs, PyTorch eager and onnxruntime latency (batch 1) and throughput
    (benchmark.batch_size), decoder microseconds per frame, Dataset samples/s, training
    images/s, prepare-coco crops/s and synthetic images/s, each a median over repeats, with
    the machine described (CPU, threads, versions).

    It makes its own small synthetic set in a temporary folder, so it needs no data. Writes
    JSON (default runs/benchmark.json) and prints a table; about 1.5 minutes on 2 CPU cores at
    the default sizes. What each figure measures: docs/benchmark.md.
    """
    from pkmodel.tools.benchmark.run import (
        apply_quick,
        check_out_path,
        format_table,
        is_explicit,
        quick_out_path,
        run_benchmark,
        write_result,
    )

    path = Path(cfg.benchmark.out)
    if quick:
        apply_quick(cfg)
        if not is_explicit(cfg, "benchmark.out"):
            path = quick_out_path(path)
    path = check_out_path(path)
    result = run_benchmark(cfg, quick=quick, progress=not quiet, compare=compare)
    write_result(path, result)
    typer.echo(format_table(result))
    typer.echo(f"\nwrote {path}")


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark_command)
