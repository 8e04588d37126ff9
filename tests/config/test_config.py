import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.errors import PkmodelError
from pkmodel.config import (
    Config,
    all_keys,
    config_from_dict,
    default_config_toml,
    load_config,
)
from tests.conftest import ROOT

runner = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_layering_default_file_env_set_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg_file = write(tmp_path / "c.toml", "[train]\nlr = 0.5\nepochs = 7\nbatch_size = 4\n")
    env = {"PKMODEL_TRAIN__EPOCHS": "8", "PKMODEL_TRAIN__BATCH_SIZE": "5"}
    cfg = load_config(cfg_file, ["train.batch_size=6", "model.width_mult=0.5"],
                      {"train.optimizer": "sgd", "train.seed": None}, env=env)  # fmt: skip
    assert cfg.train.lr == 0.5 and cfg.sources["train.lr"] == str(cfg_file)
    assert cfg.train.epochs == 8 and cfg.sources["train.epochs"] == "env PKMODEL_TRAIN__EPOCHS"
    assert cfg.train.batch_size == 6 and cfg.sources["train.batch_size"] == "--set"
    assert cfg.model.width_mult == 0.5
    assert cfg.train.optimizer == "sgd" and cfg.sources["train.optimizer"] == "option"
    assert cfg.train.seed == 0 and cfg.sources["train.seed"] == "default"


def test_a_broken_rule_says_where_its_values_came_from(tmp_path, monkeypatch):
    """Range errors name the source of the values they are about (a type error already did):
    the file, the environment variable, --set or the option; the defaults go unnamed."""
    from typer.testing import CliRunner

    from pkmodel.cli import app

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "c.toml", "[lift]\nwindow = 4\n")
    runner = CliRunner()
    base = ["lift", "--ground-truth-2d", "-i", str(tmp_path), "-o", "out"]
    cases = [
        (["-c", "c.toml"], {},
         "lift.window = 4 must be a positive odd number (lift.window from c.toml)"),
        ([], {"PKMODEL_LIFT__WINDOW": "4"},
         "(lift.window from env PKMODEL_LIFT__WINDOW)"),
        (["--set", "lift.min_depth_m=20"], {},
         "lift.max_depth_m = 10.0 must be above lift.min_depth_m (20.0) (lift.min_depth_m from "
         "--set)"),
        (["--set", "lift.window=5", "--set", "lift.one_euro_beta=-1"], {},
         "lift.one_euro_beta = -1.0 must be >= 0 (lift.one_euro_beta from --set)"),
        (["--smoothing", "nope"], {}, "error: --smoothing: lift.smoothing must be one of"),
    ]  # fmt: skip
    for args, env, message in cases:
        result = runner.invoke(app, base + args, env=env)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert message in " ".join(result.output.split()), (args, result.output)
    # lift.max_depth_m, a default, goes unnamed above; a library caller gets the bare rule
    from pkmodel.config import Config
    from pkmodel.config.rules import RuleError

    cfg = Config()
    cfg.lift.min_depth_m = 20.0
    with pytest.raises(RuleError) as info:
        cfg.lift.check()
    assert info.value.keys == ("lift.max_depth_m", "lift.min_depth_m")
    assert str(info.value) == "lift.max_depth_m = 10.0 must be above lift.min_depth_m (20.0)"


def test_option_beats_set_and_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["train.epochs=3"], {"train.epochs": 4},
                      env={"PKMODEL_TRAIN__EPOCHS": "2"})  # fmt: skip
    assert cfg.train.epochs == 4


def test_relative_paths_resolve_against_config_folder(tmp_path, monkeypatch):
    sub = tmp_path / "proj"
    sub.mkdir()
    cfg_file = write(sub / "config.toml", '[train]\nout_dir = "runs/x"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cfg_file, ["eval.out_dir=here"], env={})
    assert cfg.train.out_dir == (sub / "runs/x").resolve()
    assert cfg.data.prepared_dir == (sub / "dataset/prepared").resolve()  # default, too
    assert cfg.eval.out_dir == (tmp_path / "here").resolve()  # CLI: current folder
    assert cfg.model.pretrained is None  # '' means none


def test_config_toml_in_current_folder_is_found(tmp_path, monkeypatch):
    write(tmp_path / "config.toml", "[model]\ninput_size = 256\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(env={}).model.input_size == 256
    monkeypatch.setenv(
        "PKMODEL_CONFIG", str(write(tmp_path / "o.toml", "[model]\ninput_size = 224\n"))
    )
    assert load_config().model.input_size == 224


def test_env_parses_bools_lists_and_strings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"PKMODEL_TRAIN__EMA": "false", "PKMODEL_TRAIN__DEVICE": "cuda:1",
           "PKMODEL_EXPORT__AUTHOR": "Jane Doe", "PKMODEL_VENV": "/opt/venv"}  # fmt: skip
    cfg = load_config(env=env)
    assert cfg.train.ema is False and cfg.train.device == "cuda:1"
    assert cfg.export.author == "Jane Doe"


@pytest.mark.parametrize(
    ("toml", "overrides", "env", "message"),
    [
        (
            "[train]\nlrr = 1.0\n",
            [],
            {},
            "unknown config key 'train.lrr' (did you mean 'train.lr'?)",
        ),
        ("[trian]\nlr = 1.0\n", [], {}, "unknown config section 'trian' (did you mean 'train'?)"),
        ("[train]\nepochs = 'ten'\n", [], {}, "train.epochs must be an integer, got 'ten'"),
        ("[train]\nema = 1\n", [], {}, "train.ema must be true or false, got 1"),
        ("[train]\noptimizer = 'adamx'\n", [], {}, "train.optimizer must be one of 'adamw'"),
        ("[train\n", [], {}, "is not valid TOML"),
        ("", ["train.lr"], {}, "--set 'train.lr' must look like section.key=value"),
        ("", ["train.lr=fast"], {}, "--set: train.lr must be a number, got 'fast'"),
        ("", ["lr=1"], {}, "is not a config key of the form section.key"),
        (
            "",
            [],
            {"PKMODEL_TRAIN__EPOCS": "3"},
            "environment variable PKMODEL_TRAIN__EPOCS: unknown",
        ),
        ("", [], {"PKMODEL_EPOCHS": "3"}, "is not of the form PKMODEL_<SECTION>__<KEY>"),
    ],
)
def test_errors_are_one_clear_sentence(tmp_path, monkeypatch, toml, overrides, env, message):
    monkeypatch.chdir(tmp_path)
    cfg_file = write(tmp_path / "bad.toml", toml)
    with pytest.raises(PkmodelError) as info:
        load_config(cfg_file, overrides, env=env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        PkmodelError, match=r"config file .*nope.toml \(from --config\) does not exist"
    ):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(PkmodelError, match="from PKMODEL_CONFIG"):
        load_config(env={"PKMODEL_CONFIG": str(tmp_path / "gone.toml")})


def test_shipped_config_toml_documents_every_default():
    import tomllib

    shipped = tomllib.loads((ROOT / "config.toml").read_text())
    assert shipped == tomllib.loads(default_config_toml())
    assert sorted(f"{s}.{k}" for s, v in shipped.items() for k in v) == sorted(all_keys())
    for line in (ROOT / "config.toml").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            assert "  # " in line, f"undocumented config line: {line}"


def test_to_dict_round_trip():
    cfg = Config()
    cfg.set("train.lr", 0.25, "test")
    again = config_from_dict(cfg.to_dict(), "checkpoint")
    assert again.to_dict() == cfg.to_dict()
    assert again.sources["train.lr"] == "checkpoint"


def test_optional_paths_in_the_file_resolve_against_its_folder(tmp_path, monkeypatch):
    """Fault guarded: `_optional_inner` returning NoneType for `Path | None`, so a relative
    model.pretrained or train.finetune in a config file stayed relative to the current folder."""
    sub = tmp_path / "proj"
    sub.mkdir()
    cfg_file = write(
        sub / "c.toml", '[model]\npretrained = "w/m.pth"\n[train]\nfinetune = "r.pt"\n'
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cfg_file, env={})
    assert cfg.model.pretrained == (sub / "w/m.pth").resolve()
    assert cfg.train.finetune == (sub / "r.pt").resolve()
    cfg = load_config(cfg_file, env={"PKMODEL_TRAIN__FINETUNE": "x.pt"})
    assert cfg.train.finetune == (tmp_path / "x.pt").resolve()  # environment: current folder


def test_config_option_beats_the_config_environment_variable(tmp_path, monkeypatch):
    """Fault guarded: $PKMODEL_CONFIG read before --config, so an explicit file was ignored."""
    monkeypatch.chdir(tmp_path)
    explicit = write(tmp_path / "a.toml", "[model]\ninput_size = 224\n")
    other = write(tmp_path / "b.toml", "[model]\ninput_size = 256\n")
    cfg = load_config(explicit, env={"PKMODEL_CONFIG": str(other)})
    assert cfg.model.input_size == 224 and cfg.file == explicit.resolve()


def test_options_of_zero_and_false_are_applied(tmp_path, monkeypatch):
    """Fault guarded: options tested for truth instead of `is not None`, so `--seed 0` or
    `--no-ema` silently kept the file's value."""
    monkeypatch.chdir(tmp_path)
    cfg_file = write(tmp_path / "c.toml", "[train]\nseed = 5\nema = true\n")
    cfg = load_config(cfg_file, options={"train.seed": 0, "train.ema": False}, env={})
    assert cfg.train.seed == 0 and cfg.sources["train.seed"] == "option"
    assert cfg.train.ema is False and cfg.sources["train.ema"] == "option"


def test_text_values_stay_text_and_keep_their_equals_signs(tmp_path, monkeypatch):
    """Faults guarded: string keys parsed as TOML (an author "2024" became an integer and was
    refused), --set split at every '=' (a value holding '=' was refused), and a three-part key
    passing the section.key check (a ValueError traceback instead of one sentence)."""
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, ["export.license=a=b"],
                      env={"PKMODEL_EXPORT__AUTHOR": "2024", "PKMODEL_EXPORT__VERSION": "1.0"})  # fmt: skip
    assert (cfg.export.author, cfg.export.version, cfg.export.license) == ("2024", "1.0", "a=b")
    with pytest.raises(PkmodelError, match=r"'train\.lr\.x' is not a config key of the form"):
        load_config(None, ["train.lr.x=1"], env={})


def test_checkpoint_configs_with_keys_this_version_lacks_still_load():
    """Fault guarded: config_from_dict no longer skipping unknown keys, so a checkpoint saved
    by another version raised 'unknown config key'."""
    data = Config().to_dict()
    data["train"]["old_key"] = 1
    data["gone_section"] = {"x": 2}
    data["train"]["epochs"] = 3
    assert config_from_dict(data, "checkpoint").train.epochs == 3


def test_config_show_text_reads_back_as_the_same_toml(tmp_path):
    """Fault guarded: _toml_value not escaping backslashes, so `config show` wrote a Windows
    path or an author with a backslash as TOML that does not read back."""
    import tomllib

    from pkmodel.config import format_config

    cfg = Config()
    cfg.set("export.author", 'C:\\data\\new "x"', "test")
    assert tomllib.loads(format_config(cfg)) == cfg.to_dict()


# --- the CLI: one line on stderr, exit code 2, no traceback ---------------------------------


def test_cli_config_show_prints_values_and_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["config", "show", "--set", "train.epochs=9"])
    assert result.exit_code == 0, result.output
    assert "epochs = 9  # --set" in result.output
    assert "lr = 0.002  # default" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["config", "show", "--set", "train.epoch=3"],
        ["config", "show", "--set", "train.epochs=x"],
        ["config", "show", "--set", "nonsense"],
        ["config", "show", "--config", "missing.toml"],
    ],
)
def test_cli_errors_exit_2_without_traceback(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_cli_config_check_passes_the_defaults_and_the_shipped_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 0 and result.output.startswith("config OK"), result.output
    result = runner.invoke(app, ["config", "check", "--config", str(ROOT / "config.toml")])
    assert result.exit_code == 0, result.output


def test_cli_config_check_names_the_first_problem_of_every_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sets = ["targets.min_sigma=0", "augment.rotate_deg=200", "decoder.center_prior_offset=0",
            "export.minimum_ios=14", "lift.window=2", "train.lr=-1", "train.epochs=0",
            "model.input_size=100", "synthetic.fps=0", "prepare.crop_size=4", "eval.pck_threshold=0",
            "benchmark.repeats=0", "pseudo_label.min_joints=20", "export.onnx_opset=7",
            "train.device=tpu", "lift.device=tpu"]  # fmt: skip
    result = runner.invoke(app, ["config", "check", *sum((["--set", s] for s in sets), [])])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    # One line per section (train's first problem only), each naming the key and value.
    assert len(lines) == len(sets) - 1 and all(line.startswith("error: ") for line in lines)
    for expected in ["targets.min_sigma = 0.0 must be positive",
                     "augment.rotate_deg = 200.0 must be in [0, 180]",
                     "decoder.center_prior_offset = 0.0 must be positive",
                     "export.minimum_ios = 14 is not supported", "lift.window = 2 must be a positive odd",
                     "train.epochs = 0 must be at least 1", "model.input_size = 100",
                     "synthetic.fps = 0.0 must be > 0", "prepare.crop_size = 4 must be >= 8",
                     "eval.pck_threshold = 0.0 must be positive", "benchmark.repeats = 0 must be >= 1",
                     "pseudo_label.min_joints = 20 must be 1-17", "export.onnx_opset = 7",
                     "train.device (--device) 'tpu'", "lift.device (--device) 'tpu'"]:  # fmt: skip
        assert sum(expected in line for line in lines) == 1, (expected, lines)
    assert "error: lift.window = 2 must be a positive odd number (lift.window from --set)" in lines
    assert "Traceback" not in result.output


def test_cli_config_init_refuses_to_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["config", "init", "c.toml"]).exit_code == 0
    result = runner.invoke(app, ["config", "init", "c.toml"])
    assert result.exit_code == 2 and "--force" in result.output
    assert runner.invoke(app, ["config", "init", "c.toml", "--force"]).exit_code == 0


def test_cli_config_init_names_a_folder_or_fifo_at_once(tmp_path, monkeypatch):
    """A folder was "already exists; pass --force to overwrite it", and with --force "it is a
    folder, not a file": the reason comes first now, --force or not."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo")
    for force in ([], ["--force"]):
        result = runner.invoke(app, ["config", "init", "folder", *force])
        assert (result.exit_code, result.output) == (
            2,
            "error: cannot write folder: it is a folder, not a file\n",
        )
        result = runner.invoke(app, ["config", "init", "fifo", *force])
        assert (result.exit_code, result.output) == (
            2,
            "error: cannot write fifo: it is not a regular file\n",
        )
    assert not any((tmp_path / "folder").iterdir()) and (tmp_path / "fifo").is_fifo()


def test_every_command_has_help():
    import typer.main

    group = typer.main.get_command(app)

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    for path, cmd in walk(group, []):
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, path
        assert (cmd.help or "").strip(), f"command {path} has no help text"
        for param in cmd.params:
            if type(param).__name__.endswith("Option") and param.name != "help":
                assert (param.help or "").strip(), f"option {param.name} of {path} has no help"


def test_every_section_checks_its_own_rules_and_choices():
    """Each [section] carries its range rules; Config.check runs the named sections in order."""
    from pkmodel.config import SECTIONS, Config

    cfg = Config()
    cfg.check()  # the defaults pass every rule
    for name, cls in SECTIONS.items():
        assert cls.name == name and getattr(cfg, name).name == name
    cfg.synthetic.depth_sensor = "kinect"  # a section built in code: its Literal is checked too
    with pytest.raises(PkmodelError, match="synthetic.depth_sensor = 'kinect' must be one of exact, lidar"):  # fmt: skip
        cfg.check()
    cfg.check("model", "train")  # only the named sections
    cfg.train.lr = 0.0
    with pytest.raises(PkmodelError, match=r"^train\.lr = 0\.0 must be positive$"):
        cfg.check("model", "train")
    # A number is finite before any range applies (TOML and --set take inf and nan), and
    # within +-1e6 (1e308 passed every "positive" rule and overflowed later: warmup steps,
    # crop sides, PCK thresholds)
    for text, message in [("targets.sigma_scale=inf", "targets.sigma_scale = inf must be a finite number within +-1e6"),
                          ("lift.depth_band_m=nan", "lift.depth_band_m = nan must be a finite number within +-1e6"),
                          ("train.warmup_epochs=1e308", "train.warmup_epochs = 1e+308 must be a finite number within +-1e6"),
                          ("loss.bone_weight=-2e6", "loss.bone_weight = -2000000.0 must be a finite number within +-1e6"),
                          ("prepare.expand_ratio=1e6", "prepare.expand_ratio = 1000000.0 must be in (0, 10]: a crop 10 times the box is all background"),
                          # whole numbers too: 20 digits overflowed in NumPy and islice, a
                          # negative or 2^32 seed in the generators, 1e20 workers hung
                          ("eval.batch_size=99999999999999999999999", "eval.batch_size = 99999999999999999999999 must be a whole number within +-1e6"),
                          ("synthetic.frames=-2000000", "synthetic.frames = -2000000 must be a whole number within +-1e6"),
                          ("train.seed=-1", "train.seed = -1 must be a whole number from 0 to 4294967295"),
                          ("synthetic.seed=4294967296", "synthetic.seed = 4294967296 must be a whole number from 0 to 4294967295"),
                          ("train.workers=1025", "train.workers = 1025 must be 0-1024 (0 = one per core)"),
                          ("prepare.workers=-1", "prepare.workers = -1 must be 0-1024 (0 = one per core)")]:  # fmt: skip
        with pytest.raises(PkmodelError) as err:
            load_config(None, [text], env={}).check()
        assert str(err.value) == message
    # the ends of each range pass
    for text in ["train.seed=4294967295", "train.seed=0", "train.workers=1024", "eval.batch_size=1000000"]:  # fmt: skip
        load_config(None, [text], env={}).check()


def test_unwritable_outputs_are_one_sentence_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file, not a folder\n")
    (tmp_path / "folder").mkdir()
    result = runner.invoke(app, ["config", "init", "afile/c.toml"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.strip() == "error: cannot write into afile: it is a file, not a folder"
    result = runner.invoke(app, ["config", "init", "folder", "--force"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: cannot write folder: it is a folder, not a file"
    assert (tmp_path / "afile").read_text() == "a file, not a folder\n"  # nothing lost


def test_outputs_that_cannot_be_written_are_refused_before_any_work(
    tmp_path, monkeypatch, tiny_synthetic, tiny_prepared
):
    """lift, evaluate, export, predict, train and benchmark name the unwritable --out before
    any work, not when writing after minutes of it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x\n")
    bad = tmp_path / "afile" / "sub"
    image = next((tiny_synthetic / "val").glob("*.jpg"))
    commands = {
        "lift": ["lift", "--ground-truth-2d", "--input", str(tiny_synthetic), "--out", str(bad)],
        "evaluate": ["evaluate", "--oracle", "--labels", str(tiny_prepared / "val.json"),
                     "--out", str(bad)],
        "export-onnx": ["export-onnx", "-w", "missing.pt", "-o", str(bad / "m.onnx")],
        "export-coreml": ["export-coreml", "-w", "missing.pt", "-o", str(bad / "m.mlpackage")],
        "predict": ["predict", str(image), "--weights", "missing.pt", "--out", str(bad)],
        "train": ["train", "--out", str(bad), "--set", f"data.prepared_dir={tiny_prepared}"],
        "benchmark": ["benchmark", "--quick", "--out", str(bad / "b.json")],
    }  # fmt: skip
    for name, args in commands.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (name, result.output)
        assert result.output.startswith("error: cannot write --out"), (name, result.output)
        assert f"{tmp_path / 'afile'} is a file, not a folder" in result.output, name
        assert len(result.output.strip().splitlines()) == 1, (name, result.output)
    assert (tmp_path / "afile").read_text() == "x\n"


def test_check_writable_names_an_unwritable_folder(tmp_path, monkeypatch):
    from pkmodel.common.atomic import check_writable

    check_writable(tmp_path / "new" / "deeper" / "file.json", "--out")  # creatable: fine
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(PkmodelError, match=f"the folder {tmp_path} is not writable"):
        check_writable(tmp_path / "new" / "file.json", "--out")


def test_os_error_sentences():
    import errno

    from pkmodel.cli.common import os_error_sentence

    ro = OSError(errno.EROFS, "Read-only file system", "/data/.best.pt.x1y2.tmp")
    assert os_error_sentence(ro) == "cannot write into the folder /data: Read-only file system"
    rename = OSError(errno.EISDIR, "Is a directory", "/d/.c.toml.ab.tmp", None, "/d/c.toml")
    assert os_error_sentence(rename) == "cannot write /d/c.toml: Is a directory"
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "in.json")
    assert os_error_sentence(missing) == "cannot open or create in.json: No such file or directory"
    exists = FileExistsError(17, "File exists", "runs/eval")
    assert os_error_sentence(exists) == "cannot write into runs/eval: it is a file, not a folder"
    inside = NotADirectoryError(20, "Not a directory", "a.txt/m.mlpackage")
    assert (
        os_error_sentence(inside)
        == "cannot write a.txt/m.mlpackage: a folder on that path is a file"
    )
    assert os_error_sentence(OSError("disk on fire")) == "disk on fire"


def test_a_folder_given_as_a_file_is_named_as_such(tmp_path):
    from pkmodel.common.errors import not_there

    (tmp_path / "f.txt").write_text("x")
    assert not_there(tmp_path / "nope") == "does not exist"
    assert not_there(tmp_path) == "is a folder, not a file"
    assert not_there(tmp_path / "f.txt", "folder") == "is a file, not a folder"
    result = runner.invoke(app, ["config", "show", "--config", str(tmp_path)])
    assert result.exit_code == 2
    assert (
        result.output.strip()
        == f"error: config file {tmp_path} (from --config) is a folder, not a file"
    )


def test_a_section_written_as_a_value_is_named(tmp_path):
    (tmp_path / "c.toml").write_text("train = 3\n")
    result = runner.invoke(app, ["config", "show", "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 2
    assert result.output.strip().endswith("c.toml: 'train = 3' must be a [train] table of keys")
