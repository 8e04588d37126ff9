"""What both exports share: refusing bad weights and bad settings before any work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.errors import PkmodelError
from pkmodel.export import coreml, onnx
from tests.export.conftest import small_config

runner = CliRunner()


@pytest.mark.parametrize("command", ["export-coreml", "export-onnx"])
def test_bad_weights_file_is_one_clear_error(command, tmp_path):
    bad, text = tmp_path / "bad.pt", tmp_path / "text.pt"
    bad.write_bytes(b"not a checkpoint")
    text.write_text("junk\n")  # torch.load raises KeyError on this one
    suffix = ".mlpackage" if command == "export-coreml" else ".onnx"
    cases = [(bad, "is not a pkmodel checkpoint"), (text, "is not a pkmodel checkpoint"),
             (tmp_path / "no.pt", "does not exist")]  # fmt: skip
    for weights, message in cases:
        result = runner.invoke(
            app, [command, "-w", str(weights), "-o", str(tmp_path / f"m{suffix}")]
        )
        assert result.exit_code == 2
        assert result.output.startswith("error: ") and message in result.output
        assert "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt", "text.pt"]


@pytest.mark.parametrize(
    ("keys", "out", "message"),
    [
        ({"minimum_ios": 14}, "m.mlpackage", "export.minimum_ios = 14 is not supported"),
        ({"compress": "palette", "palette_bits": 5}, "m.mlpackage", "export.palette_bits = 5"),
        ({"compress": "int8", "minimum_ios": 15}, "m.mlpackage", "needs export.minimum_ios >= 16"),
        ({}, "m.mlmodel", "must end with .mlpackage"),
        ({"onnx_opset": 11}, "m.onnx", "export.onnx_opset = 11 is not supported"),
        ({}, "m.onx", "must end with .onnx"),
    ],
)
def test_bad_export_settings_are_refused_before_any_work(checkpoint, tmp_path, keys, out, message):
    run = onnx.export_onnx if out.endswith(("onnx", ".onx")) else coreml.export_coreml
    with pytest.raises(PkmodelError, match=message.replace(".", r"\.")):
        run(checkpoint, tmp_path / out, small_config(**keys))
    assert list(tmp_path.iterdir()) == []


def test_force_replaces_a_model_never_a_folder_that_only_ends_in_mlpackage(tmp_path):
    """--force let export-coreml delete any folder named *.mlpackage, with whatever it held."""
    from pkmodel.export.common import check_target

    folder = tmp_path / "notes.mlpackage"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    with pytest.raises(PkmodelError) as e:
        check_target(folder, ".mlpackage", force=True)
    assert str(e.value) == (
        f"{folder} exists and is not a .mlpackage bundle folder (it has no Manifest.json); "
        "remove it first"
    )
    assert (folder / "mine.txt").read_text() == "keep"
    (folder / "Manifest.json").write_text("{}")  # a bundle: replaced with --force only
    assert check_target(folder, ".mlpackage", force=True) == folder
    with pytest.raises(PkmodelError, match="already exists; pass --force to overwrite it"):
        check_target(folder, ".mlpackage", force=False)
