"""`pkmodel benchmark`: every performance figure on this machine, as JSON and a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import ConfigOption, SetOption, resolve_config, user_errors


@user_errors
def benchmark_command(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="JSON file of the figures (benchmark.out; --quick writes NAME-quick.json unless given).",
            show_default=False,
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Tiny sizes (64 px, width 0.35, 2 repeats) for tests: checks that every "
            "measurement runs; the numbers mean little.",
        ),
    ] = False,
    input_size: Annotated[
        int | None,
        typer.Option(
            "--input-size",
            help="Network input side in pixels (model.input_size).",
            show_default=False,
        ),
    ] = None,  # fmt: skip
    width: Annotated[
        float | None,
        typer.Option(
            "--width", help="MobileNetV2 width multiplier (model.width_mult).", show_default=False
        ),
    ] = None,
    repeats: Annotated[
        int | None,
        typer.Option(
            "--repeats",
            help="Timed repeats per figure; figures are medians (benchmark.repeats).",
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Measure every stage's speed on this machine (JSON and a table).

    Model parameters and MACs, PyTorch eager and onnxruntime latency (batch 1) and throughput (benchmark.batch_size), decoder microseconds
    per frame, Dataset samples/s, training images/s, prepare-coco crops/s and synthetic
    images/s, each a median over repeats, with the machine described (CPU, threads, versions).

    It makes its own small synthetic set in a temporary folder, so it needs no data. Writes
    JSON (default runs/benchmark.json) and prints a table; about 3-5 minutes on 2 CPU cores at
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

    cfg = resolve_config(
        config,
        set_,
        model__input_size=input_size,
        model__width_mult=width,
        benchmark__repeats=repeats,
        benchmark__out=out,
    )
    path = Path(cfg.benchmark.out)
    if quick:
        apply_quick(cfg)
        if not is_explicit(cfg, "benchmark.out"):
            path = quick_out_path(path)
    path = check_out_path(path)
    result = run_benchmark(cfg, quick=quick, progress=not quiet)
    write_result(path, result)
    typer.echo(format_table(result))
    typer.echo(f"\nwrote {path}")


def register(app: typer.Typer) -> None:
    app.command("benchmark")(benchmark_command)
