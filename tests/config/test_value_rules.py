"""Range rules of config values (pkmodel.config.sections): values that would allocate gigabytes
or write NaN into a take are one sentence before any work starts."""

from __future__ import annotations

import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.config import load_config
from pkmodel.config.sections import MAX_DEPTH_WINDOW, MAX_LIMB_RADIUS_M


def radii(first: str) -> str:
    return "lift.limb_radius_m=[" + ", ".join([first] + ["0.05"] * (NUM_JOINTS - 1)) + "]"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("lift.window=10001", "lift.window = 10001 must be at most 51 depth pixels: a window "
         "samples one joint's surface, and 51 pixels of a phone's depth map already span 0.5 m "
         "at 2 m, wider than a body"),
        ("lift.window=53", "lift.window = 53 must be at most 51 depth pixels"),
        ("lift.face_window=101", "lift.face_window = 101 must be at most 51 depth pixels"),
        (radii("inf"), "must list 17 radii in metres (one per COCO joint), each in [0, 0.5]: "
         "the distance from the skin to the joint"),
        (radii("nan"), "each in [0, 0.5]"),
        (radii("0.6"), "lift.limb_radius_m = [0.6, 0.05,"),
        (radii("-0.01"), "each in [0, 0.5]"),
    ],
)  # fmt: skip
def test_lift_windows_and_radii_have_bounds(tmp_path, monkeypatch, setting, message):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [setting], env={})
    with pytest.raises(PkmodelError) as err:
        cfg.lift.check()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_bounds_themselves_pass(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    top = f"lift.window={MAX_DEPTH_WINDOW}"
    load_config(None, [top, f"lift.face_window={MAX_DEPTH_WINDOW}"], env={}).lift.check()
    load_config(None, [radii(str(MAX_LIMB_RADIUS_M))], env={}).lift.check()
    load_config(None, [radii("0")], env={}).lift.check()


def test_pkmodel_lift_refuses_a_huge_window_before_reading_anything(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["lift", "--ground-truth-2d", "-i", "missing", "--set", "lift.window=10001"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: lift.window = 10001 must be at most 51 depth pixels")


@pytest.mark.parametrize("key", ["lift.out_dir", "train.out_dir", "eval.out_dir", "export.out_dir",
                                 "data.prepared_dir", "benchmark.out"])  # fmt: skip
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch, key):
    """Path("") is "."; lift.out_dir = "" silently wrote into the current folder."""
    monkeypatch.chdir(tmp_path)
    section, name = key.split(".")
    (tmp_path / "c.toml").write_text(f'[{section}]\n{name} = ""\n')
    env = f"PKMODEL_{section.upper()}__{name.upper()}"
    for kwargs, source in [
        ({"path": tmp_path / "c.toml"}, str(tmp_path / "c.toml")),
        ({"env": {env: ""}}, f"env {env}"),
        ({"overrides": [f"{key}="]}, "--set"),
    ]:
        with pytest.raises(PkmodelError) as err:
            load_config(**{"env": {}, **kwargs})
        assert str(err.value) == (
            f"{source}: {key} must be a path, got '' (an empty path would mean the current "
            "folder; write '.' for that)"
        )
    assert load_config(None, [f"{key}=."], env={}).sources[key] == "--set"  # '.' says so


def test_a_key_name_checks_that_keys_rules_alone():
    cfg = load_config(None, ["lift.window=4", "lift.min_score=2"], env={})
    with pytest.raises(PkmodelError, match=r"^lift.window = 4 must be a positive odd number"):
        cfg.check("lift")
    with pytest.raises(PkmodelError, match=r"^lift.min_score = 2.0 must be in \[0, 1\]"):
        cfg.check("lift.min_score")
    cfg.check("lift.sheet_frames", "train")  # neither breaks a rule


def test_the_ends_of_closed_ranges_pass_and_a_negative_window_does_not(tmp_path, monkeypatch):
    """[0, 1] and 1-100 include their ends: a probability of 0 turns an augmentation off, and
    JPEG quality 100 is the best; a window of -1 is odd but no window."""
    monkeypatch.chdir(tmp_path)
    ends = ["synthetic.second_person_prob=0", "augment.flip_prob=1", "synthetic.jpeg_quality=100",
            "synthetic.jpeg_quality=1", "augment.rotate_deg=180", "synthetic.depth_scale=1"]  # fmt: skip
    cfg = load_config(None, ends, env={})
    cfg.check("synthetic", "augment")
    cfg = load_config(None, ["lift.window=-1"], env={})
    with pytest.raises(PkmodelError) as err:
        cfg.check("lift.window")
    assert str(err.value) == "lift.window = -1 must be a positive odd number"


def test_a_choice_is_of_its_literals_type():
    """rules.is_choice: false is not 0 and 90.0 is not 90, though Python finds them equal."""
    from pkmodel.config.rules import is_choice

    assert is_choice(90, (0, 90, 180)) and is_choice("auto", ("auto", 0))
    assert not is_choice(90.0, (0, 90, 180)) and not is_choice(False, (0, 90))
    assert not is_choice(True, (1, 2))
