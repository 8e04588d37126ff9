"""The prepared labels file: what its reader refuses."""

from __future__ import annotations

import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.data.labels import read_labels


def test_read_labels_refuses_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"schema": "something"}')
    with pytest.raises(PkmodelError, match="not a pkmodel prepared-labels file"):
        read_labels(tmp_path / "x.json")
    (tmp_path / "y.json").write_text('{"schema": "pkmodel.prepared", "version": 9}')
    with pytest.raises(PkmodelError, match="version 9"):
        read_labels(tmp_path / "y.json")
    with pytest.raises(PkmodelError, match="run `pkmodel prepare-coco`"):
        read_labels(tmp_path / "z.json")


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ({"crop_size": "x", "samples": []}, "'crop_size' is 'x', not a positive whole number of pixels"),
        ({"crop_size": 0, "samples": []}, "'crop_size' is 0, not a positive whole number of pixels"),
        ({"crop_size": 96.5, "samples": []}, "'crop_size' is 96.5, not a positive whole number"),
        ({"crop_size": True, "samples": []}, "'crop_size' is True, not a positive whole number"),
        ({"crop_size": 96, "samples": {}}, "'samples' is a dict, not a list"),
    ],
)  # fmt: skip
def test_a_bad_header_field_is_one_sentence_naming_file_key_and_value(tmp_path, header, says):
    import json

    path = tmp_path / "val.json"
    path.write_text(json.dumps({"schema": "pkmodel.prepared", "version": 1, **header}))
    with pytest.raises(PkmodelError) as info:
        read_labels(path)
    assert str(info.value).startswith(f"prepared labels {path}: {says}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_a_labels_file_is_refused_by_every_reader(tiny_prepared, tmp_path, token):
    """Python's JSON reader takes NaN: train, stats and render went on with it, and split and
    merge failed writing it back (after merge had linked crops). Now every command that reads
    the file says the same sentence first."""
    import json

    from typer.testing import CliRunner

    from pkmodel.cli import app

    data = json.loads((tiny_prepared / "val.json").read_text())
    data["samples"][1]["keypoints"][0][0] = "@"
    path = tiny_prepared / f"nan_{token.strip('-')}.json"
    path.write_text(json.dumps(data).replace('"@"', token))
    try:
        says = (
            f"error: prepared labels {path} hold {token}, which pkmodel never writes (JSON has "
            "no such number): the file was edited or damaged\n"
        )
        for args in (
            ["data", "split", str(path), "--out", str(tmp_path / "split")],
            ["data", "merge", str(path), "--out", str(tmp_path / "merged")],
            ["data", "stats", str(path), "--out", str(tmp_path / "stats.png")],
        ):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 2 and result.output == says, (args, result.output)
        assert list(tmp_path.iterdir()) == []  # nothing linked, nothing written
    finally:
        path.unlink()
