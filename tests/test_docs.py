"""The user docs' own links: every relative link names a file that exists and, with a #part,
a heading of that file (as GitHub makes anchors of headings)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but '-' and '_' dropped,
    spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            base = github_anchor(line.lstrip("#"))
            name, n = base, 0
            while name in found:  # a repeated heading: -1, -2, ...
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def test_github_anchor_follows_githubs_rule():
    assert github_anchor(" Prepared labels (`DATASET_DIR/NAME.json`, `pkmodel.data.labels`)") == (
        "prepared-labels-dataset_dirnamejson-pkmodeldatalabels"
    )
    assert (
        github_anchor("Capture apps (Stray Scanner, Record3D)")
        == "capture-apps-stray-scanner-record3d"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_name_existing_files_and_headings(doc):
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no such heading")
    assert broken == []
