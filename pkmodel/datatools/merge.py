"""`pkmodel data merge`: several prepared label files and their crops -> one dataset folder.

Each input gets a source tag (``--tag``; by default the one source all its samples share, e.g.
a pseudo-label run's, else its file name); its samples are tagged with it
and its crops go to ``OUT/imgs/<name>/<tag>/<path under the input's imgs/>``, so names never
collide between inputs (nor within one: two crops that would share a name stop the merge). Crops are hard-linked where the file system allows it (else copied, or symlinked on
request), through a temporary name and a rename: a crop in the output is always complete.
A rerun skips crops already in place with the right size, so an interrupted merge resumes.
Inputs must agree on schema version, crop size and joint names (one sentence says which not).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pkmodel.common.errors import PkmodelError
from pkmodel.data.labels import checked_relative, load_labels, refuse_foreign_labels, write_labels

LINK_MODES = ("hardlink", "copy", "symlink")
# Header values that must be equal in every input for the samples to mean the same thing.
_MUST_MATCH = (
    ("version", "schema version", "prepare them with the same pkmodel version"),
    ("crop_size", "crop_size", "prepare them with the same prepare.crop_size"),
    ("joint_names", "joint names", "they use different skeletons"),
)


@dataclass
class MergeSummary:
    """What `data merge` did."""

    labels: Path
    samples: int
    per_source: dict[str, int]
    linked: int = 0
    copied: int = 0
    reused: int = 0
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        sources = ", ".join(f"{t} {n}" for t, n in self.per_source.items())
        lines = [
            f"{self.samples} samples ({sources}) -> {self.labels}",
            f"crops: {self.linked} linked, {self.copied} copied, {self.reused} already in place",
        ]
        return "\n".join(lines + self.notes)


def default_tags(inputs: list[Path], datas: list[dict[str, Any]]) -> list[str]:
    """Per input: the source tag all its samples share (e.g. a pseudo-label run's), when no
    other input has it; else its file stem; where stems repeat, '<folder>_<stem>'; a counter
    last."""
    stems = [p.stem for p in inputs]
    tags = [s if stems.count(s) == 1 else f"{p.resolve().parent.name}_{s}" for p, s in zip(inputs, stems, strict=True)]  # fmt: skip
    own = []
    for data in datas:
        found = {str(x.get("source") or "") for x in data["samples"]}
        one = found.pop() if len(found) == 1 and "merged_from" not in data else ""
        own.append(one if one and "/" not in one else "")
    tags = [o if o and own.count(o) == 1 else t for o, t in zip(own, tags, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for t in tags:
        seen[t] = seen.get(t, 0) + 1
        out.append(t if seen[t] == 1 else f"{t}_{seen[t]}")
    return out


def _check_tag(tag: str) -> None:
    if not tag or "/" in tag or "\\" in tag or tag.startswith(".") or tag != tag.strip():
        raise PkmodelError(f"source tag {tag!r} must be a plain name (letters, digits, _ or -)")


def _check_compatible(paths: list[Path], datas: list[dict[str, Any]]) -> None:
    first, ref = paths[0], datas[0]
    for path, data in zip(paths[1:], datas[1:], strict=True):
        for key, what, why in _MUST_MATCH:
            if data.get(key) != ref.get(key):
                mine, theirs = data.get(key), ref.get(key)
                if key == "joint_names":
                    mine, theirs = _first_other_joint(mine, theirs)
                raise PkmodelError(
                    f"cannot merge {path} with {first}: {what} {mine} differs from {theirs} ({why})"
                )


def _first_other_joint(mine: Any, theirs: Any) -> tuple[str, str]:
    """Two joint-name lists as an error sentence shows how they differ: their counts, or the
    first place where they name another joint."""
    mine, theirs = list(mine or []), list(theirs or [])
    if len(mine) != len(theirs):
        return f"{len(mine)} joints", f"{len(theirs)}"
    i = next(i for i, (a, b) in enumerate(zip(mine, theirs, strict=True)) if a != b)
    return f"(joint {i} {mine[i]!r})", f"{theirs[i]!r}"


def inner_parts(rel: PurePosixPath) -> tuple[str, ...]:
    """The part of a crop path kept under OUT/imgs/<name>/<tag>/: what follows the first
    'imgs' folder (prepare's layout), else the path without leading '..'."""
    parts = rel.parts
    if "imgs" in parts[:-1]:
        return parts[parts.index("imgs") + 1 :]
    return tuple(p for p in parts if p not in ("..", "."))


def _check_no_escape(rel: PurePosixPath, where: str) -> None:
    """Refuse '..' in a crop path, except the leading ones before an 'imgs' folder that
    `data split --out` writes (a crop of another dataset folder): a merge never links files
    from elsewhere into OUT as crops."""
    parts = rel.parts
    ups = next((n for n, p in enumerate(parts) if p != ".."), len(parts))
    rest = parts[ups:]
    if ".." in rest or (ups and "imgs" not in rest[:-1]):
        raise PkmodelError(
            f"{where}: image path '{rel}' goes up with '..' outside a prepared 'imgs' folder; "
            "crop paths must stay inside the dataset folders"
        )


def place_file(src: Path, dst: Path, mode: str) -> str:
    """Put ``src`` at ``dst`` via a temporary name: 'linked', 'copied' or 'reused'."""
    size = src.stat().st_size
    with contextlib.suppress(OSError):
        if dst.stat().st_size == size:
            return "reused"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    how = "copied"
    if mode == "symlink":
        os.symlink(src.resolve(), tmp)
        how = "linked"
    elif mode == "hardlink":
        try:
            os.link(src, tmp)
            how = "linked"
        except OSError:  # another file system, or links not allowed: copy instead
            shutil.copyfile(src, tmp)
    else:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return how


def merge_labels(
    inputs: list[str | Path],
    out_dir: str | Path,
    name: str,
    tags: list[str] | None = None,
    link: str = "hardlink",
    progress: bool = True,
    force: bool = False,
) -> MergeSummary:
    """Merge prepared label files into OUT/<name>.json with their crops under OUT/imgs/<name>/,
    replacing an earlier merge of that name, and other labels only with ``force``."""
    from tqdm import tqdm

    paths = [Path(p) for p in inputs]
    if not paths:
        raise PkmodelError("give at least one prepared label file to merge")
    if link not in LINK_MODES:
        raise PkmodelError(f"--link must be one of {', '.join(LINK_MODES)}, got {link!r}")
    if not name or "/" in name or name.startswith("."):
        raise PkmodelError(f"output name '{name}' must be a plain file name (e.g. merged)")
    if tags is not None and len(tags) != len(paths):
        raise PkmodelError(
            f"{len(tags)} --tag value(s) for {len(paths)} input file(s): give one per input"
        )
    out_dir = Path(out_dir)
    out_labels = out_dir / f"{name}.json"
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise PkmodelError("the same label file is given twice")
    if out_labels.resolve() in resolved:
        raise PkmodelError(
            f"the merge would overwrite its input {out_labels}: choose another --name"
        )
    refuse_foreign_labels(out_labels, lambda d: "merged_from" in d, "an earlier merge", force)
    datas = [load_labels(p) for p in paths]
    _check_compatible(paths, datas)
    tags = list(tags) if tags else default_tags(paths, datas)
    for t in tags:
        _check_tag(t)
    if len(set(tags)) != len(tags):
        raise PkmodelError(f"source tags {tags} repeat: every input needs its own tag")

    # Plan every sample and crop first, so a mistake stops before anything is written.
    plan: list[tuple[Path, Path]] = []
    placed: dict[str, Path] = {}
    samples: list[dict[str, Any]] = []
    sources = []
    for path, data, tag in zip(paths, datas, tags, strict=True):
        nested = "merged_from" in data  # an earlier merge: keep its tags under this one
        for i, s in enumerate(data["samples"]):
            rel = checked_relative(s["image"], f"{path} samples[{i}]")
            _check_no_escape(rel, f"{path} samples[{i}]")
            dst_rel = "/".join(("imgs", name, tag, *inner_parts(rel)))
            src = path.parent / rel
            if not src.is_file():
                raise PkmodelError(f"{path} samples[{i}]: crop {src} does not exist")
            other = placed.setdefault(dst_rel, src)
            if other != src:
                raise PkmodelError(
                    f"{path}: crops {other} and {src} would both become {dst_rel}; merge "
                    "them from separate label files"
                )
            plan.append((src, out_dir / dst_rel))
            source = f"{tag}/{s['source']}" if nested and s.get("source") else tag
            samples.append({**s, "image": dst_rel, "source": source})
        sources.append(
            {
                "tag": tag,
                "labels": str(path.resolve()),
                "annotations": data.get("annotations"),
                "images": data.get("images"),
                "samples": len(data["samples"]),
                "pseudo": sum(bool(s.get("pseudo")) for s in data["samples"]),
            }
        )

    summary = MergeSummary(out_labels, len(samples), {t: s["samples"] for t, s in zip(tags, sources, strict=True)})  # fmt: skip
    counts = {"linked": 0, "copied": 0, "reused": 0}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PkmodelError(f"cannot create the output folder {out_dir} ({e})") from None
    for src, dst in tqdm(plan, unit="crop", desc=f"merge {name}", disable=not progress):
        counts[place_file(src, dst, link)] += 1
    summary.linked, summary.copied, summary.reused = counts["linked"], counts["copied"], counts["reused"]  # fmt: skip

    def common(key: str) -> Any:
        values = [d.get(key) for d in datas]
        return values[0] if all(v == values[0] for v in values) else None

    header = {
        "schema": datas[0]["schema"],
        "version": datas[0]["version"],
        "split": name,
        "crop_size": datas[0]["crop_size"],
        "annotations": None,  # several files: each source names its own in merged_from
        "images": None,
        "expand_ratio": common("expand_ratio"),
        "jpeg_quality": common("jpeg_quality"),
        "joint_names": datas[0].get("joint_names"),
        "merged_from": sources,
    }
    if header["expand_ratio"] is None:
        summary.notes.append("note: the inputs were cropped with different expand ratios")
    write_labels(out_labels, header, samples)
    return summary
