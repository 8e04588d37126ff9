"""pkmodel checkpoints: atomic saving, safe loading (weights_only) and rebuilding the model.

A checkpoint is a dict with ``format == "pkmodel-checkpoint"``, ``version``, ``model`` (state
dict), optional ``ema`` (state dict), ``config`` (``Config.to_dict()``) and training state
(optimizer, scheduler, scaler, epoch, step, rng, best AP) written by `pkmodel train`.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

from pkmodel.common.atomic import atomic_open
from pkmodel.common.errors import PkmodelError, not_there
from pkmodel.common.versioned import FileKind
from pkmodel.config import Config, config_from_dict
from pkmodel.model.network import build_model, check_model_config
from pkmodel.model.posekit import posekit_config_dict, posekit_state_dict
from pkmodel.model.torchfile import load_torch_file

CHECKPOINT_FORMAT = "pkmodel-checkpoint"
# 2: model.stem (the fused stem became the default); version 1's networks all have
# MobileNetV2's, which loading says in their config
# 3: model.heads (shared heads and the fused-s8 stem became the default); the networks of
# versions 1 and 2 all have separate heads, which loading says in their config
CHECKPOINT_VERSION = 3
CHECKPOINT = FileKind(
    "pkmodel checkpoint", ("format", CHECKPOINT_FORMAT), CHECKPOINT_VERSION, ("model", "config")
)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file beside ``path``, fsync, then rename: never half-written."""
    import torch

    state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state}
    with atomic_open(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load a pkmodel checkpoint with ``weights_only=True``; anything else is a PkmodelError,
    as are weights that are not state dicts of tensors and a config that describes no network.

    A PoseKit ``.pth`` (movenet.pytorch's state dict) is read as a checkpoint too: its weights
    under ``model`` and a default config with ``model.arch = "posekit"`` (``source: posekit``).
    """

    path = Path(path)
    if not path.is_file():
        raise PkmodelError(f"weights file {path} {not_there(path)}")
    hint = "an ONNX model, " if path.suffix.lower() == ".onnx" else ""
    state = load_torch_file(path, f"{path} is not a pkmodel checkpoint", map_location, hint)
    if isinstance(state, dict) and "format" not in state:
        converted = posekit_checkpoint(state)  # a PoseKit .pth: its weights, a default config
        if converted is not None:
            return converted
    state = _upgraded(CHECKPOINT.check(state, path))
    _check_weights(state, path)
    checkpoint_config(state, path)
    return state


def _shown(value: Any) -> str:
    """A value and its type for an error sentence, cut short: ``'x' (type str)``."""
    return f"{reprlib.repr(value)} (type {type(value).__name__})"


def _check_weights(state: dict[str, Any], path: Path) -> None:
    """``model`` (and ``ema`` unless None) must be state dicts: names -> tensors, the floating
    ones finite (a network with a NaN weight gives NaN everywhere, far from where it loaded)."""
    import torch

    for entry in ("model", "ema"):
        weights = state.get(entry)
        if entry == "ema" and weights is None:
            continue
        if not isinstance(weights, dict):
            raise PkmodelError(f"{path}: '{entry}' is {_shown(weights)}, not a state dict of tensors")  # fmt: skip
        for name, value in weights.items():
            if not torch.is_tensor(value):
                raise PkmodelError(
                    f"{path}: '{entry}' holds {_shown(value)} under {name!r}, not a tensor"
                )
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise PkmodelError(
                    f"{path}: the '{entry}' weights hold NaN or Inf (first in {name!r}); the "
                    "training that saved them diverged or the file is damaged"
                )


def checkpoint_config(state: dict[str, Any], path: str | Path) -> Config:
    """The Config a checkpoint saved, checked as far as building its network needs: a bad
    entry is one PkmodelError naming the file."""
    config = state["config"]
    if not isinstance(config, dict):
        raise PkmodelError(
            f"{path}: 'config' is {_shown(config)}, not the dict of config sections a checkpoint saves"  # fmt: skip
        )
    for section, values in config.items():
        if not isinstance(values, dict):
            raise PkmodelError(
                f"{path}: 'config' section {section!r} is {_shown(values)}, not a dict of keys"
            )
    cfg = config_from_dict(config, f"checkpoint {path}")  # a wrong type names the file and key
    try:
        check_model_config(cfg.model)
    except PkmodelError as e:
        raise PkmodelError(f"{path}: {e}") from None
    return cfg


def _upgraded(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of an earlier version with what its config left unsaid made explicit."""
    version = int(state.get("version", 0))
    if version < CHECKPOINT_VERSION and isinstance(state.get("config"), dict):
        model = state["config"].setdefault("model", {})
        if isinstance(model, dict):
            if version < 2:
                model.setdefault("stem", "mobilenetv2")
            model.setdefault("heads", "separate")
    return state


def posekit_checkpoint(state: Any) -> dict[str, Any] | None:
    """A loaded PoseKit ``.pth`` as a pkmodel checkpoint dict (weights + config), else None."""
    weights = posekit_state_dict(state)
    if weights is None:
        return None
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": weights,
        "ema": None,
        "config": posekit_config_dict(),
        "source": "posekit",
    }


def model_from_checkpoint(path: str | Path, prefer_ema: bool = True, map_location: str = "cpu"):
    """Rebuild the network of a checkpoint with its saved config; EMA weights when present.

    Returns (model in eval mode, Config, raw checkpoint dict).
    """

    state = load_checkpoint(path, map_location)
    cfg = checkpoint_config(state, path)
    model = build_model(cfg.model, pretrained=False)
    entry = "ema" if prefer_ema and state.get("ema") else "model"
    load_weights_into(
        model, state[entry], f"{path}: the '{entry}' weights", "the model its config describes"
    )
    model.eval()
    return model, cfg, state


def load_weights_into(
    model: Any, weights: dict[str, Any], what: str, fit: str = "this model"
) -> None:
    """``model.load_state_dict(weights)``; weights that do not fit are one sentence, ``what``
    (``FILE: the 'ema' weights``) naming them and the first key or shape that differs."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        # DDP's wrapper loads through its module: its keys are the module's
        module = getattr(model, "module", model)
        why = _misfit(module.state_dict(), weights) or str(e).strip().splitlines()[0]
        raise PkmodelError(f"{what} do not fit {fit} ({why})") from None


def _misfit(wanted: dict[str, Any], weights: dict[str, Any]) -> str | None:
    """The first key the model has and the weights lack, or the other way round, or the first
    tensor of another shape (with how many more keys are missing or unexpected)."""

    def more(keys: list[str], what: str) -> str:
        return f" and {len(keys) - 1} more {what}" if len(keys) > 1 else ""

    missing = [k for k in wanted if k not in weights]
    if missing:
        return f"no tensor for the model's {missing[0]!r}{more(missing, 'missing')}"
    unexpected = [k for k in weights if k not in wanted]
    if unexpected:
        return f"{unexpected[0]!r} is not in the model{more(unexpected, 'unexpected')}"
    for name, value in wanted.items():
        if tuple(weights[name].shape) != tuple(value.shape):
            return f"{name!r} is {_shape(weights[name])} in the file, {_shape(value)} in the model"
    return None


def _shape(tensor: Any) -> str:
    return " x ".join(map(str, tensor.shape)) or "a scalar"


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _training_state_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with the training state `pkmodel train` writes (None when it is fine)."""
    import torch

    for entry in ("optimizer", "scheduler", "rng", "epoch", "step", "best"):
        if entry not in state:
            return f"no '{entry}' entry"
    optimizer = state["optimizer"]
    if not (
        isinstance(optimizer, dict)
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
        and optimizer["param_groups"]
        and all(
            isinstance(g, dict) and isinstance(g.get("params"), list)
            for g in optimizer["param_groups"]
        )  # fmt: skip
    ):
        return f"'optimizer' is {_shown(optimizer)}, not an optimizer state with parameter groups"
    scheduler = state["scheduler"]
    keys = ("plateau_factor", "plateau_best", "plateau_bad")
    if not (isinstance(scheduler, dict) and all(_number(scheduler.get(k)) for k in keys)):
        return f"'scheduler' is {_shown(scheduler)}, not a schedule state with {', '.join(keys)}"
    rng = state["rng"]
    if not isinstance(rng, dict):
        return f"'rng' is {_shown(rng)}, not a dict of random states"
    # python_pos is random.getstate()'s last item (None or a float), taken as it is
    kinds = {"python": list, "python_pos": object, "numpy": torch.Tensor, "numpy_pos": int, "torch": torch.Tensor}  # fmt: skip
    for key, kind in kinds.items():
        if key not in rng or not isinstance(rng[key], kind):
            return f"'rng' has {_shown(rng.get(key))} under {key!r}, not a {kind.__name__}"
    if rng["torch"].dtype != torch.uint8 or rng["numpy"].numel() != 624:  # MT19937's key
        return "'rng' holds torch or numpy random states of the wrong size or type"
    for entry in ("epoch", "step"):
        if not _whole(state[entry]):
            return f"'{entry}' is {_shown(state[entry])}, not a whole number >= 0"
    best = state["best"]
    if not (isinstance(best, dict) and all(_number(best.get(k)) for k in ("ap", "epoch", "bad"))):
        return f"'best' is {_shown(best)}, not a record of ap, epoch and bad"
    return None


def check_resumable(state: dict[str, Any], path: str | Path) -> None:
    """A checkpoint that `train --resume` can continue: the training state entries are there and
    of the right kinds; else one PkmodelError naming the file and the entry."""
    problem = _training_state_problem(state)
    if problem is not None:
        raise PkmodelError(f"{path} cannot be resumed: {problem}")
