import zipfile
from pathlib import Path

import pytest
import torch

from pkmodel.common.errors import PkmodelError
from pkmodel.config import Config
from pkmodel.model.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello, not weights\n", r"is not a pkmodel checkpoint \(not a PyTorch file\)$"),
        (b"", r"\(not a PyTorch file\)$"),
        (b"\x08\x07\x12\x07pytorch", r"\(not a PyTorch file\)$"),  # the start of an ONNX file
        (b"PK\x03\x04garbage", "not a readable PyTorch file"),
        (b"\x80\x04garbage", "weights-only load refuses|not a readable PyTorch file"),
    ],
)
def test_files_that_are_not_checkpoints_are_one_clear_error(tmp_path, content, reason):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(PkmodelError, match=reason) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_an_onnx_file_as_weights_is_named(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07\x12\x07pytorch")
    with pytest.raises(PkmodelError, match=r"\(an ONNX model, not a PyTorch file\)$"):
        load_checkpoint(tmp_path / "m.onnx")


def test_pickled_objects_and_foreign_dicts_are_refused(tmp_path):
    torch.save({"a": torch.nn.Linear(2, 2)}, tmp_path / "obj.pt")
    with pytest.raises(PkmodelError, match="weights-only load refuses"):
        load_checkpoint(tmp_path / "obj.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(PkmodelError, match="no 'format': 'pkmodel-checkpoint' entry"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(PkmodelError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_round_trip_prefers_ema_weights(tmp_path):
    from pkmodel.model.network import build_model

    cfg = Config()
    cfg.model.input_size, cfg.model.width_mult = 64, 0.35
    model = build_model(cfg.model, pretrained=False)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "c.pt", {"model": model.state_dict(), "ema": ema, "config": cfg.to_dict()})  # fmt: skip
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed
    loaded, loaded_cfg, _ = model_from_checkpoint(tmp_path / "c.pt")
    assert loaded_cfg.model.width_mult == 0.35 and not loaded.training
    name = next(k for k, v in ema.items() if v.is_floating_point())
    assert torch.equal(loaded.state_dict()[name], ema[name])
    plain, _, _ = model_from_checkpoint(tmp_path / "c.pt", prefer_ema=False)
    assert torch.equal(plain.state_dict()[name], model.state_dict()[name])


def test_atomic_files_get_the_usual_permissions(tmp_path):
    import os

    from pkmodel.common.atomic import atomic_write_text, default_file_mode

    mask = os.umask(0o022)
    os.umask(mask)
    expected = 0o666 & ~mask
    atomic_write_text(tmp_path / "a.txt", "x")
    save_checkpoint(tmp_path / "c.pt", {"model": {}, "config": {}})
    assert default_file_mode() == expected
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == expected
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == expected


def _earlier_checkpoint(path, version, unsaid, **model_keys):
    """A checkpoint of ``version`` whose config lacks the key ``unsaid`` (written before it
    existed), with a small network of ``model_keys``; returns that network and its config."""
    from pkmodel.model.network import build_model

    cfg = Config()
    cfg.model.input_size, cfg.model.width_mult = 64, 0.35
    for key, value in model_keys.items():
        setattr(cfg.model, key, value)
    model = build_model(cfg.model, pretrained=False)
    saved = cfg.to_dict()
    del saved["model"][unsaid]
    state = {"format": "pkmodel-checkpoint", "version": version, "model": model.state_dict(), "config": saved}  # fmt: skip
    torch.save(state, path)
    return model, cfg


def test_a_version_1_checkpoint_rebuilds_mobilenetv2s_stem(tmp_path):
    """Checkpoints written before ``model.stem`` existed (version 1, no such key in their
    config) hold networks with MobileNetV2's stem, whatever today's default."""
    model, cfg = _earlier_checkpoint(tmp_path / "v1.pt", 1, "stem", stem="mobilenetv2")
    assert Config().model.stem == "fused-s8"  # today's default differs
    loaded, loaded_cfg, raw = model_from_checkpoint(tmp_path / "v1.pt")
    assert (
        loaded_cfg.model.stem == "mobilenetv2" and raw["config"]["model"]["stem"] == "mobilenetv2"
    )
    name = "backbone.1.conv.0.0.weight"  # MobileNetV2's block 1, which the fused stem has not
    assert torch.equal(loaded.state_dict()[name], model.state_dict()[name])
    # a current checkpoint says its stem itself
    save_checkpoint(tmp_path / "v3.pt", {"model": model.state_dict(), "config": cfg.to_dict()})
    assert load_checkpoint(tmp_path / "v3.pt")["version"] == 3
    assert model_from_checkpoint(tmp_path / "v3.pt")[1].model.stem == "mobilenetv2"


def test_a_version_2_checkpoint_rebuilds_separate_heads(tmp_path):
    """Checkpoints written before ``model.heads`` existed (version 2) hold networks with four
    separate heads, whatever today's default; their stem is in their config."""
    keys = {"stem": "fused", "heads": "separate", "head_channels": 24}
    model, _ = _earlier_checkpoint(tmp_path / "v2.pt", 2, "heads", **keys)
    assert Config().model.heads == "shared"  # today's default differs
    loaded, loaded_cfg, raw = model_from_checkpoint(tmp_path / "v2.pt")
    assert loaded_cfg.model.heads == "separate" and raw["config"]["model"]["heads"] == "separate"
    assert loaded_cfg.model.stem == "fused"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(loaded.eval()(x), model.eval()(x), strict=True):
            assert torch.equal(a, b)


def _tiny_checkpoint(path, **model_keys):
    """A small network's checkpoint (EMA weights too) and its state as saved."""
    from pkmodel.model.network import build_model

    cfg = Config()
    cfg.model.input_size, cfg.model.width_mult = 64, 0.35
    cfg.model.neck_channels = cfg.model.head_channels = 16
    model = build_model(cfg.model, pretrained=False)
    state = model.state_dict()
    save_checkpoint(path, {"model": state, "ema": dict(state), "config": cfg.to_dict()})
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda c: c.update(config="x"), "'config' is 'x' (type str), not the dict of config sections a checkpoint saves"),
        (lambda c: c["config"].update(model=[1]), "'config' section 'model' is [1] (type list), not a dict of keys"),
        (lambda c: c.update(ema={"x": 1}), "'ema' holds 1 (type int) under 'x', not a tensor"),
        (lambda c: c.update(model="w"), "'model' is 'w' (type str), not a state dict of tensors"),
        (lambda c: c["model"]["backbone.0.0.weight"].view(-1).__setitem__(3, float("nan")),
         "the 'model' weights hold NaN or Inf (first in 'backbone.0.0.weight'); the training "
         "that saved them diverged or the file is damaged"),
        (lambda c: c.update(ema=_with_inf(c["ema"], "backbone.0.1.weight")),
         "the 'ema' weights hold NaN or Inf (first in 'backbone.0.1.weight'); the training "
         "that saved them diverged or the file is damaged"),
        (lambda c: c["config"]["model"].update(width_mult=-1.0), "model.width_mult = -1.0 must be in (0, 4]"),
        (lambda c: c["config"]["model"].update(arch="posekit"),
         "model.width_mult 0.35 is not available for model.arch 'posekit' (PoseKit's network has a fixed width 1.0)"),
    ],
)  # fmt: skip
def test_a_bad_entry_is_one_sentence_naming_the_file(tmp_path, change, says):
    path, message = _refusal(tmp_path, change, load_checkpoint)
    assert message == f"{path}: {says}" or (
        says.endswith("(first in ") and message.startswith(f"{path}: {says}")
    )


def _with_inf(weights: dict, name: str) -> dict:
    """A copy of ``weights`` (their own tensors) with one value of ``name`` infinite."""
    out = {k: v.clone() for k, v in weights.items()}
    out[name].view(-1)[0] = float("inf")
    return out


def _refusal(tmp_path, change, load) -> tuple[Path, str]:
    """A tiny checkpoint changed by ``change``, and the PkmodelError ``load`` raises on it."""
    path = tmp_path / "c.pt"
    state = _tiny_checkpoint(path)
    change(state)
    torch.save(state, path)
    with pytest.raises(PkmodelError) as info:
        load(path)
    return path, str(info.value)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda c: c.update(ema={**c["ema"], "x": torch.ones(1)}),
         "the 'ema' weights do not fit the model its config describes ('x' is not in the model)"),
        (lambda c: c.update(ema=None, model={k: v for k, v in list(c["model"].items())[2:]}),
         "the 'model' weights do not fit the model its config describes (no tensor for the "
         "model's 'backbone.0.0.weight' and 1 more missing)"),
        (lambda c: c["config"]["model"].update(neck_channels=24),
         "the 'ema' weights do not fit the model its config describes ('laterals.0.0.weight' is "
         "16 x 8 x 1 x 1 in the file, 24 x 8 x 1 x 1 in the model)"),
    ],
)  # fmt: skip
def test_weights_that_do_not_fit_name_the_first_key_at_fault(tmp_path, change, says):
    path, message = _refusal(tmp_path, change, model_from_checkpoint)
    assert message == f"{path}: {says}"


def test_model_info_and_evaluate_say_what_is_wrong_with_a_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    path = tmp_path / "c.pt"
    state = _tiny_checkpoint(path)
    state["config"] = "x"
    torch.save(state, path)
    says = f"error: {path}: 'config' is 'x' (type str), not the dict of config sections a checkpoint saves"  # fmt: skip
    for args in (["model-info", "--weights", str(path)], ["evaluate", "--weights", str(path)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and result.output.strip() == says, result.output


def test_model_info_refuses_weights_that_do_not_fit_their_config(tmp_path):
    """model-info described the network of a checkpoint's config without loading its weights:
    weights of another network were described as that network."""
    from typer.testing import CliRunner

    from pkmodel.cli import app

    path = tmp_path / "c.pt"
    state = _tiny_checkpoint(path)
    state["config"]["model"].update(neck_channels=24)
    torch.save(state, path)
    result = CliRunner().invoke(app, ["model-info", "--weights", str(path)])
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith(f"error: {path}: the 'ema' weights do not fit")


def test_a_checkpoint_changed_on_disk_is_refused_by_its_checksums(tmp_path):
    """torch.load reads a ZIP entry without checking its CRC: 50 flipped bytes in a weight
    loaded as a silently different network (evaluate exited 0)."""
    path = tmp_path / "c.pt"
    _tiny_checkpoint(path)
    load_checkpoint(path)  # intact
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:  # the largest tensor's bytes, where a bit flips
        info = max(zf.infolist(), key=lambda i: i.file_size)
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 100 : start + 150] = bytes(x ^ 0xFF for x in data[start + 100 : start + 150])
    path.write_bytes(bytes(data))
    with pytest.raises(PkmodelError) as e:
        load_checkpoint(path)
    assert str(e.value) == (
        f"{path} is damaged: its entry {info.filename} does not match its checksum (a copy cut "
        "short or changed on disk)"
    )
