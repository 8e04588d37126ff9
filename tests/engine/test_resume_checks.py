"""`train --resume` on checkpoints with a broken training state, runs already at their epochs,
--finetune with --resume, and validation labels checked before the first epoch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.errors import PkmodelError
from pkmodel.engine.train import train
from pkmodel.model.checkpoint import check_resumable
from tests.conftest import tiny_train_config


@pytest.fixture(scope="module")
def one_epoch(tiny_prepared, tmp_path_factory) -> Path:
    """A finished 1-epoch run's last.pt."""
    out = tmp_path_factory.mktemp("run1")
    train(tiny_train_config(tiny_prepared, out, epochs=1), progress=False)
    return out / "last.pt"


def _broken(state: dict, edit: str) -> dict:
    state = dict(state)
    if edit.startswith("del "):
        del state[edit[4:]]
    else:
        key, value = edit.split("=", 1)
        state[key] = eval(value)  # noqa: S307  (the test's own literals)
    return state


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        *[
            (f"del {k}", f"no '{k}' entry")
            for k in ("optimizer", "scheduler", "rng", "epoch", "best", "step")
        ],  # fmt: skip
        ("optimizer={'state': {}, 'param_groups': []}", "'optimizer' is"),
        ("rng={'torch': 5}", "'rng' has"),
        ("scheduler={'x': 1}", "'scheduler' is {'x': 1}"),
        ("epoch='one'", "'epoch' is 'one' (type str), not a whole number >= 0"),
        ("epoch=-5", "'epoch' is -5"),
        ("best=[]", "'best' is"),
    ],
)
def test_a_broken_training_state_is_one_sentence(one_epoch, edit, message):
    state = torch.load(one_epoch, weights_only=True)
    check_resumable(state, one_epoch)  # the real one is fine
    with pytest.raises(PkmodelError, match="cannot be resumed: ") as e:
        check_resumable(_broken(state, edit), "R/last.pt")
    assert str(e.value).startswith("R/last.pt cannot be resumed") and message in str(e.value)


def test_resume_refuses_before_training(tiny_prepared, one_epoch, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    state = torch.load(one_epoch, weights_only=True)
    groups = state["optimizer"]["param_groups"]
    state["optimizer"]["param_groups"] = [*groups, dict(groups[0])]
    torch.save(state, run / "last.pt")
    cfg = tiny_train_config(tiny_prepared, run, epochs=3)
    with pytest.raises(PkmodelError, match="its 'optimizer' does not fit"):
        train(cfg, resume=run / "last.pt", progress=False)
    for entry in ("model", "ema"):  # weights missing a tensor: torch's RuntimeError before
        state = torch.load(one_epoch, weights_only=True)
        state[entry] = {k: v for k, v in state[entry].items() if not k.endswith("running_mean")}
        torch.save(state, run / "last.pt")
        with pytest.raises(PkmodelError) as e:
            train(cfg, resume=run / "last.pt", progress=False)
        assert str(e.value).startswith(
            f"{run / 'last.pt'}: the '{entry}' weights do not fit this model (no tensor for the "
            "model's '"
        ) and str(e.value).endswith("more missing)")
    shutil.copy(one_epoch, run / "last.pt")
    # a finished run resumed: nothing to train, nothing touched, exit 0 (a "resume until done"
    # loop stays idempotent), and the CLI says why
    done = train(tiny_train_config(tiny_prepared, run, epochs=1), resume=run / "last.pt")
    assert done.epochs_run == 0 and done.resumed_from == 1
    assert (run / "last.pt").read_bytes() == one_epoch.read_bytes()
    assert not (run / "metrics.jsonl").exists()
    result = CliRunner().invoke(app, ["train", "--out", str(run), "--resume", "--epochs", "1",
                                      "--set", f"data.prepared_dir={tiny_prepared}",
                                      "--set", "model.input_size=64", "--set", "model.width_mult=0.35",
                                      "--set", "model.neck_channels=24", "--set", "model.head_channels=24",
                                      "--set", "train.batch_size=8",
                                      "--device", "cpu", "--workers", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "nothing to train: " in result.output and "has already trained 1 epoch(s)" in result.output
    )


def test_finetune_with_resume_is_refused(one_epoch, tmp_path):
    result = CliRunner().invoke(
        app, ["train", "--out", str(one_epoch.parent), "--resume", "--finetune", str(one_epoch)]
    )
    assert result.exit_code == 2 and "give one of them" in result.output


def test_bad_validation_labels_stop_the_run_before_it_trains(tiny_prepared, tmp_path):
    prepared = tmp_path / "prep"
    prepared.mkdir()
    (prepared / "imgs").symlink_to(tiny_prepared / "imgs")
    shutil.copy(tiny_prepared / "train.json", prepared / "train.json")
    val = json.loads((tiny_prepared / "val.json").read_text())
    val["samples"][0]["image_id"] = "x"
    (prepared / "val.json").write_text(json.dumps(val))
    cfg = tiny_train_config(prepared, tmp_path / "run", epochs=1)
    with pytest.raises(PkmodelError, match=r"val.json: samples\[0\].image_id is 'x'"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()  # refused before the run folder was made
