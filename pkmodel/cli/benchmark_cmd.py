"""`pkmodel benchmark`: every performance figure on this machine, as JSON and a table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, config_command, key
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
    equal_minutes: Annotated[
        float,
        typer.Option(
            "--equal-minutes",
            metavar="M",
            help="Also train the demo's network and the --against one side by side for M "
            "minutes each on the demo's data, --seeds times: best AP, PCK@0.2 and epochs of "
            "each, and their medians (about seeds x M minutes more; 0 = off).",
        ),
    ] = 0.0,
    seeds: Annotated[
        int, typer.Option("--seeds", metavar="N", help="Seeds (pairs of runs) of --equal-minutes.")
    ] = 3,
    against: Annotated[
        list[str] | None,
        typer.Option(
            "--against",
            metavar="SECTION.KEY=VALUE",
            help="The other network of --equal-minutes, as settings on top of the demo's "
            "(repeatable). Default: the demo's network before the lighter default "
            "(model.stem=mobilenetv2, model.heads=separate, model.head_channels=48, "
            "train.lr=1e-2).",
        ),
    ] = None,
    keep: Annotated[
        Path | None,
        typer.Option(
            "--keep",
            metavar="DIR",
            help="Keep the --equal-minutes runs (checkpoints, metrics.jsonl, logs), their "
            "config and the demo's data in DIR, a new or empty folder, instead of the "
            "temporary folder.",
            parser=PATH,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Measure every stage's speed on this machine (JSON and a table).

    Model parameters and MACs, PyTorch eager and onnxruntime latency (batch 1) and throughput
    (benchmark.batch_size), decoder microseconds per frame, Dataset samples/s, training
    images/s, prepare-coco crops/s and synthetic images/s, each a median over repeats, with
    the machine described (CPU, threads, versions).

    It makes its own small synthetic set in a temporary folder, so it needs no data. Writes
    JSON (default runs/benchmark.json) and prints a table; about 1.5 minutes on 2 CPU cores at
    the default sizes, plus about seeds x M minutes with --equal-minutes M. What each figure
    measures: docs/benchmark.md.
    """
    from pkmodel.common.errors import PkmodelError
    from pkmodel.tools.benchmark.run import (
        apply_quick,
        check_out_path,
        format_table,
        is_explicit,
        quick_out_path,
        run_benchmark,
        write_result,
    )
    from pkmodel.tools.equal_minutes import EARLIER_DEMO_NETWORK

    path = Path(cfg.benchmark.out)
    if quick:
        apply_quick(cfg)
        if not is_explicit(cfg, "benchmark.out"):
            path = quick_out_path(path)
    path = check_out_path(path)
    if equal_minutes < 0 or not math.isfinite(equal_minutes):
        raise PkmodelError(f"--equal-minutes must be >= 0 (0 = off), got {equal_minutes:g}")
    if seeds < 1:
        raise PkmodelError(f"--seeds must be at least 1, got {seeds}")
    if against and not equal_minutes:
        raise PkmodelError("--against sets the other network of --equal-minutes; give that too")
    if keep is not None and not equal_minutes:
        raise PkmodelError("--keep keeps the runs of --equal-minutes; give that too")
    plan = None
    if equal_minutes:
        plan = {"minutes": equal_minutes, "seeds": seeds, "keep": keep,
                "against": tuple(against) if against else EARLIER_DEMO_NETWORK}  # fmt: skip
    result = run_benchmark(
        cfg, quick=quick, progress=not quiet, compare=compare, equal_minutes=plan
    )
    write_result(path, result)
    typer.echo(format_table(result))
    typer.echo(f"\nwrote {path}")


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark_command)
