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
