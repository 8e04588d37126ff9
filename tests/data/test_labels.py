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
