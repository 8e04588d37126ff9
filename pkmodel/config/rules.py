"""Range checks of config sections that the type check cannot catch, and ``config_problems``.

Each ``check_*`` raises one ``PkmodelError`` sentence naming the first bad key and its value;
the commands call the checks of the sections they use before any work starts, and
``pkmodel config check`` runs every section's check at once (``config_problems``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from pkmodel.common.errors import PkmodelError

Rule = tuple[str, Callable[[Any], bool], str]


# Rule builders for check_rules: a finite number in a range, with the usual sentence.


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def probability(key: str) -> Rule:
    return (key, lambda v: finite(v) and 0.0 <= v <= 1.0, "must be in [0, 1]")


def at_least(key: str, low: float, text: str | None = None) -> Rule:
    return (key, lambda v: finite(v) and v >= low, text or f"must be >= {low:g}")


def positive(key: str, text: str = "must be positive") -> Rule:
    return (key, lambda v: finite(v) and v > 0, text)


def in_range(key: str, low: float, high: float, text: str) -> Rule:
    """``low <= value <= high``."""
    return (key, lambda v: finite(v) and low <= v <= high, text)


def check_rules(section: str, values: Any, rules: Sequence[Rule]) -> None:
    """Raise PkmodelError for the first rule that ``values.<key>`` breaks."""
    for key, ok, rule in rules:
        value = getattr(values, key)
        if not ok(value):
            raise PkmodelError(f"{section}.{key} = {value!r} {rule}")


def check_targets(targets: Any) -> None:
    """[targets]: Gaussian sigmas (cells) must be positive, the smallest no larger than the caps."""
    check_rules(
        "targets",
        targets,
        [
            at_least("sigma_scale", 0.0),
            positive("min_sigma"),
            positive("max_sigma"),
            at_least("center_sigma_scale", 0.0),
            positive("center_max_sigma"),
        ],
    )
    for cap in ("max_sigma", "center_max_sigma"):
        if getattr(targets, cap) < targets.min_sigma:
            raise PkmodelError(
                f"targets.{cap} = {getattr(targets, cap)!r} must be >= targets.min_sigma "
                f"({targets.min_sigma!r})"
            )


def check_loss(loss: Any) -> None:
    """[loss]: weights are >= 0 and at least one term is on."""
    weights = ("heatmap_weight", "center_weight", "reg_weight", "offset_weight", "bone_weight")
    check_rules(
        "loss",
        loss,
        [at_least(w, 0.0) for w in weights]
        + [at_least("foreground_weight", 0.0), at_least("offset_radius", 0)],
    )
    if all(getattr(loss, w) == 0 for w in weights):
        raise PkmodelError("loss: every weight is 0, so nothing would be learned")


def check_augment(augment: Any) -> None:
    """[augment]: probabilities in [0, 1], magnitudes in range, scale_min <= scale_max."""
    probs = ("flip_prob", "affine_prob", "crop_pad_prob", "color_prob", "blur_prob",
             "noise_prob", "occlusion_prob")  # fmt: skip
    check_rules(
        "augment",
        augment,
        [probability(p) for p in probs]
        + [
            positive("scale_min"),
            positive("scale_max"),
            ("rotate_deg", lambda v: finite(v) and 0 <= v <= 180, "must be in [0, 180]"),
            ("shift", lambda v: finite(v) and 0 <= v < 1, "must be in [0, 1)"),
            ("crop_pad_max", lambda v: finite(v) and 0 <= v < 0.5, "must be in [0, 0.5)"),
        ],
    )
    if augment.scale_min > augment.scale_max:
        raise PkmodelError(
            f"augment.scale_min = {augment.scale_min!r} must be <= augment.scale_max "
            f"({augment.scale_max!r})"
        )


def check_decoder(decoder: Any) -> None:
    """[decoder]: the score threshold is a probability; the prior offset keeps 1 / (d + c) finite."""
    check_rules(
        "decoder", decoder, [probability("score_threshold"), positive("center_prior_offset")]
    )


def check_eval(ev: Any) -> None:
    """[eval]: batch size and PCK threshold."""
    check_rules(
        "eval", ev, [at_least("batch_size", 1, "must be at least 1"), positive("pck_threshold")]
    )


def config_problems(cfg: Any) -> list[str]:
    """Every section's first problem, one sentence each (empty when the config is usable);
    the devices are checked against this machine (an absent GPU is a problem here)."""
    from pkmodel.common.devices import select_device
    from pkmodel.data.prepare import PrepareParams
    from pkmodel.data.synthetic.generate import SyntheticSpec
    from pkmodel.datatools.pseudo import PseudoParams
    from pkmodel.engine.train import check_train_config
    from pkmodel.export.coreml import check_export_config
    from pkmodel.export.onnx import check_opset
    from pkmodel.lift.pipeline import check_lift_config
    from pkmodel.model.network import check_model_config
    from pkmodel.tools.benchmark.run import Plan

    checks: list[Callable[[], None]] = [
        lambda: SyntheticSpec.from_config(cfg).check(),
        lambda: PrepareParams.from_config(cfg.prepare).check(),
        lambda: check_model_config(cfg.model),
        lambda: check_targets(cfg.targets),
        lambda: check_loss(cfg.loss),
        lambda: check_augment(cfg.augment),
        lambda: check_train_config(cfg),
        lambda: select_device(cfg.train.device),
        lambda: check_decoder(cfg.decoder),
        lambda: check_eval(cfg.eval),
        lambda: PseudoParams.from_config(cfg.pseudo_label).check(),
        lambda: check_export_config(cfg.export),
        lambda: check_opset(cfg.export.onnx_opset),
        lambda: check_lift_config(cfg.lift),
        lambda: select_device(cfg.lift.device, key="lift.device"),
        lambda: Plan.from_config(cfg, quick=False).check(),
    ]
    problems = []
    for check in checks:
        try:
            check()
        except PkmodelError as e:
            problems.append(str(e))
    return problems
