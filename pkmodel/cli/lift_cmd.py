"""`pkmodel lift`: 2D joints + depth -> 3D takes, pictures and (with 3D ground truth) metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pkmodel.cli.common import PATH, WEIGHTS_HELP, config_command, key
from pkmodel.config import Config


@config_command
def lift_command(
    cfg: Config,
    input_dir: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            help="RGB-D recording(s): a make-synthetic folder (its sequences/), one sequence "
            "folder, a plain folder with intrinsics.json and colour + 16-bit depth PNGs, a Stray "
            "Scanner folder, a Record3D .r3d file, or a folder of them.",
            show_default=False,
            parser=PATH,
        ),
    ],
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights",
            "-w",
            help=f"Network that finds the 2D joints: {WEIGHTS_HELP} (a checkpoint's EMA "
            "weights when present).",
            show_default=False,
            parser=PATH,
        ),
    ] = None,
    out: Path | None = key("lift.out_dir", "--out", "-o"),
    ground_truth_2d: Annotated[
        bool,
        typer.Option(
            "--ground-truth-2d",
            help="Use the labelled 2D joints instead of a network (synthetic sequences): "
            "measures the depth stage alone.",
        ),
    ] = False,
    smoothing: str | None = key("lift.smoothing"),
    surface_correction: bool | None = key("lift.surface_correction"),
    device: str | None = key("lift.device"),
    take_format: str | None = key("lift.take_format"),
    no_pictures: Annotated[
        bool,
        typer.Option("--no-pictures", help="Skip overlays and the 3D contact sheet (faster)."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bars.")] = False,
) -> None:
    """Lift 2D joints to 3D with depth: takes, overlays, 3D plots and metrics.

    Per recording: 2D joints (network, or --ground-truth-2d) -> median depth around each joint
    -> back-projection with the intrinsics -> surface-to-joint correction -> smoothing over
    time -> canonical frame (pelvis origin).

    Writes OUT/NAME/take.json, take.bin and take.zip, OUT/NAME/overlays/, OUT/NAME/canonical_3d.png
    and OUT/metrics.json (MPJPE, depth validity and jitter when the recordings carry 3D ground
    truth). Formats and figures: docs/3d.md. With --take-format posekit (or both) the take is
    written for the PoseKit app instead of (or beside) pkmodel's: OUT/NAME/posekit_take/
    (meta.json, frames.bin: copy it into the app's Documents/PoseTakes/) and
    OUT/NAME/posekit_take.zip; docs/posekit-app.md.
    """
    from pkmodel.common.atomic import check_writable
    from pkmodel.common.errors import PkmodelError
    from pkmodel.lift.pipeline import ModelJoints, run_lift
    from pkmodel.lift.rgbd import find_sequences

    if ground_truth_2d and weights is not None:
        raise PkmodelError("give either --weights or --ground-truth-2d, not both")
    if not ground_truth_2d and weights is None:
        raise PkmodelError("--weights CKPT is required (or --ground-truth-2d on synthetic data)")
    cfg.lift.check()
    # before the frames are read
    check_writable(cfg.lift.out_dir, "--out (lift.out_dir)", folder=True)
    sequences = find_sequences(input_dir, cfg.lift.intrinsics_key, cfg.lift.fps, warn=_warn)
    detector = None if weights is None else ModelJoints(weights, cfg, cfg.lift.device)
    out_dir = cfg.lift.out_dir
    doc = run_lift(sequences, cfg, out_dir, detector, progress=not quiet, pictures=not no_pictures)

    for name, m in doc["sequences"].items():
        extra = ""
        if m.get("bone_spread_mm") is not None:
            extra = f"; bone-length spread {m['bone_spread_mm']:.1f} mm"
        if m.get("inferred_rate"):
            extra += f", {100 * m['inferred_rate']:.1f}% of joints placed by the skeleton"
        if m.get("limb_scale") is not None:
            extra += f"; limb radii x {m['limb_scale']:.2f} ({m['limb_scale_samples']} widths)"
        if m.get("depth_band_widens_from_m") is not None:
            extra += f"; depth band wider for the noise beyond {m['depth_band_widens_from_m']} m"
            if m.get("depth_band_widens_until_m") is not None:
                extra += f" up to {m['depth_band_widens_until_m']} m"
        if m.get("rotate_deg"):
            auto = m.get("rotate_auto")
            how = f"lift.rotate auto, from the {auto['source']}" if auto else "lift.rotate"
            extra += f"; frames turned {m['rotate_deg']} degrees clockwise for the network ({how})"
        typer.echo(f"{name}: {m['frames']} frames, take in {out_dir / name}{extra}")
    overall = doc["overall"]
    if overall:
        typer.echo(
            f"3D metrics ({overall['selected']}, {doc['two_d']} 2D, {doc['frames']} frames):"
        )
        rows = [
            ("MPJPE visible joints, camera frame", "mpjpe_visible_mm", "mm"),
            ("MPJPE all labelled joints", "mpjpe_all_mm", "mm"),
            ("MPJPE visible joints, canonical frame", "mpjpe_canonical_visible_mm", "mm"),
            ("  ... frames with the torso visible", "mpjpe_canonical_torso_visible_mm", "mm"),
            ("depth validity rate", "depth_validity_rate", ""),
            ("joints placed by the skeleton", "inferred_rate", ""),
            ("bone-length spread (sd over the take)", "bone_spread_mm", "mm"),
            ("jitter (mean acceleration), all joints", "jitter_m_s2", "m/s^2"),
            ("  ... of the ground truth", "gt_jitter_m_s2", "m/s^2"),
            ("jitter, visible joints", "jitter_visible_m_s2", "m/s^2"),
            ("  ... of the ground truth", "gt_jitter_visible_m_s2", "m/s^2"),
        ]
        for label, key, unit in rows:
            if key in overall:  # errors only where the recordings have 3D ground truth
                value = overall[key]
                typer.echo(f"  {label:40s} {'n/a' if value is None else value} {unit}")
    typer.echo(f"wrote {out_dir / 'metrics.json'}")


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)


def register(app: typer.Typer) -> None:
    app.command("lift")(lift_command)
