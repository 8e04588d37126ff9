"""`pkmodel model-info`: parameters, multiply-adds and output shapes of the configured network,
or a description of any weights (checkpoint, ONNX, Core ML) with --weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, WEIGHTS_HELP, config_command, key
from pkmodel.config import Config


@config_command
def model_info(
    cfg: Config,
    input_size: int | None = key("model.input_size"),
    width: float | None = key("model.width_mult", "--width"),
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            "-w",
            help=f"Describe these weights instead: {WEIGHTS_HELP}.",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Show parameters, multiply-adds (MACs) per image and output shapes of the configured model.

    MACs count the convolutions and linear layers of one forward pass at batch 1 (torch's FLOP
    counter / 2); BatchNorm, activations and upsampling are not counted.

    With --weights: what a checkpoint, ONNX file or Core ML model (.mlpackage or compiled
    .mlmodelc) is: operations by type, weight and compute precision, input and outputs, size
    on disk, metadata, and the numbers an export checked itself with.
    """
    import json

    if weights is not None:
        from pkmodel.export.describe import describe_weights, format_description

        described = describe_weights(weights)
        if as_json:
            typer.echo(json.dumps(described, indent=2))
        else:
            for line in format_description(described):
                typer.echo(line)
        return

    from pkmodel.model.network import model_summary

    cfg.check("model")
    info = model_summary(cfg.model)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    if info["arch"] == "posekit":
        typer.echo(
            f"model: PoseKit's network (movenet.pytorch's MobileNetV2 MoveNet; taps "
            f"{info['backbone_channels']}, its own fixed neck and heads)"
        )
    else:
        typer.echo(
            f"model: MobileNetV2 x{info['width_mult']} backbone ({info['stem']} stem, taps "
            f"{info['backbone_channels']}), neck {info['neck_channels']}, {info['heads']} heads "
            f"{info['head_channels']}"
        )
    typer.echo(f"input: {info['input_shape']} (RGB, x / 127.5 - 1)")
    typer.echo(
        f"parameters: {info['parameters']:,} ({info['parameters'] / 1e6:.2f} M; backbone "
        f"{info['backbone_parameters'] / 1e6:.2f} M)"
    )
    typer.echo(f"multiply-adds: {info['macs']:,} ({info['macs'] / 1e6:.1f} M MACs per image)")
    for name, shape in info["outputs"].items():
        typer.echo(f"output {name}: {shape}")
    typer.echo("multiply-adds by layer (M MACs, share):")
    width = max(len(name) for name in info["layer_macs"])
    for name, macs in info["layer_macs"].items():
        typer.echo(f"  {name:{width}s} {macs / 1e6:7.2f} {100 * macs / info['macs']:5.1f}%")


def register(app: typer.Typer) -> None:
    app.command("model-info")(model_info)
