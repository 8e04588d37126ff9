"""`pkmodel export-coreml` and `pkmodel export-onnx`: verified exports of a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, config_command, key
from pkmodel.config import Config

WeightsOption = Annotated[
    Path,
    typer.Option(
        "--weights",
        "-w",
        help="pkmodel checkpoint (.pt) to export; its EMA weights are used when present.",
        show_default=False,
        parser=PATH,
    ),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]


def _print_report(report, what: str) -> None:
    from pkmodel.export.common import human_size

    for line in report.checks:
        typer.echo(f"  {'!!' if 'WARNING' in line else 'ok'}  {line}")
    for reason in report.skipped:
        typer.echo(f"  --  skipped: {reason}")
    typer.echo(f"wrote {what} {report.path} ({human_size(report.size_bytes)})")


@config_command
def export_coreml_command(
    cfg: Config,
    weights: WeightsOption,
    # --out names a file, where export.out_dir is a folder: not a key() (it sets no key).
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output .mlpackage. Default: export.out_dir/pkmodel.mlpackage, the name the PoseKit app loads.",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    # --fp32 and --bgr are on/off flags that set export.precision / export.color_layout to one
    # of their values, where key() gives an option the key's own type (a Literal as text, like
    # --compress): hand-written, and applied after resolution (an option wins over --set).
    fp32: Annotated[
        bool,
        typer.Option(
            "--fp32", help="FP32 weights and compute instead of FP16 (export.precision = fp32)."
        ),
    ] = False,
    bgr: Annotated[
        bool,
        typer.Option(
            "--bgr",
            help="BGR image input instead of RGB (export.color_layout = BGR); the model "
            "reorders it to the RGB the network was trained on.",
        ),
    ] = False,
    compress: str | None = key(
        "export.compress",
        help="weight compression: none, int8 (8-bit linear) or palette (export.palette_bits-bit "
        "lookup tables)",
    ),
    check_ap: Annotated[
        Path | None,
        typer.Option(
            "--check-ap",
            help="A prepared split (LABELS.json): evaluate the exported model (pkmodel's Core "
            "ML runner) and the checkpoint in FP32 on it and print both APs: what the "
            "precision and compression cost.",
            metavar="LABELS",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Export a checkpoint to Core ML (ML Program, image input, FP16 by default) and verify it.

    The app passes camera pixels 0..255 (normalisation is inside the model) and gets the four
    outputs heatmaps, centers, regs, offsets; decoder settings, joints and skeleton are in the
    model's metadata. The saved spec is reloaded and checked (input, outputs, shapes, types,
    weight precision, metadata); then the program is run by pkmodel's Core ML runner on
    export.check_images against PyTorch, and a difference beyond its tolerance fails the export
    (nothing is written). On macOS Core ML itself also runs it.
    """
    from pkmodel.common.errors import PkmodelError, not_there
    from pkmodel.export.coreml import export_coreml

    if check_ap is not None and not check_ap.is_file():
        raise PkmodelError(f"--check-ap labels file {check_ap} {not_there(check_ap)}")

    if fp32:
        cfg.set("export.precision", "fp32", "--fp32")
    if bgr:
        cfg.set("export.color_layout", "BGR", "--bgr")
    out = out if out is not None else cfg.export.out_dir / "pkmodel.mlpackage"
    ref = None
    if check_ap is not None:
        from pkmodel.engine.evaluate import evaluate_weights

        # The checkpoint first: labels that cannot be evaluated fail before anything is written.
        ref = evaluate_weights(weights, check_ap, cfg)
    report = export_coreml(weights, out, cfg, force=force, log=typer.echo)
    _print_report(report, "Core ML model")
    if check_ap is not None and ref is not None:
        typer.echo(f"AP on {check_ap} (flip test {'on' if cfg.eval.flip_test else 'off'}):")
        got = evaluate_weights(report.path, check_ap, cfg)
        kind = cfg.export.compress if cfg.export.compress != "none" else cfg.export.precision
        if cfg.export.compress == "palette":
            kind = f"palette {cfg.export.palette_bits}-bit"
        for what, m in ((f"PyTorch FP32 ({weights.name})", ref), (f"Core ML {kind}", got)):
            typer.echo(f"  {what:<34} AP {m['AP']:.3f}  AP50 {m['AP50']:.3f}  PCK {m['PCK']:.3f}")
        typer.echo(f"  AP change: {got['AP'] - ref['AP']:+.3f}")


@config_command
def export_onnx_command(
    cfg: Config,
    weights: WeightsOption,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output .onnx file. Default: export.out_dir/pkmodel.onnx.",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    dynamic_batch: bool | None = key(
        "export.dynamic_batch",
        "--dynamic-batch/--fixed-batch",
        help="a dynamic or a fixed (1) batch dimension",
    ),
    opset: int | None = key("export.onnx_opset", "--opset"),
    force: ForceOption = False,
) -> None:
    """Export a checkpoint to ONNX (float32 input x / 127.5 - 1, the four named outputs).

    Runs onnx.checker (full check) and compares onnxruntime with PyTorch on every output;
    nothing is written when they differ by more than 1e-4 plus 10 times PyTorch's own float32
    rounding of the output (measured against float64).
    """
    from pkmodel.export.onnx import export_onnx

    out = out if out is not None else cfg.export.out_dir / "pkmodel.onnx"
    report = export_onnx(weights, out, cfg, force=force, log=typer.echo)
    _print_report(report, "ONNX model")


def register(app: typer.Typer) -> None:
    app.command("export-coreml")(export_coreml_command)
    app.command("export-onnx")(export_onnx_command)
