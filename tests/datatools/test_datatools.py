"""`pkmodel data ...`: split, merge, stats, render, extract-frames, pseudo-label (oracle runner
and a random checkpoint), and pseudo-labels merged and trained on; fetch is in test_fetch.py."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import NUM_JOINTS
from tests.conftest import run_cli, shared_data, tiny_train_config

# --------------------------------------------------------------------------------------------
# Fixtures: coco_mini prepared once (96-pixel crops, every person with >= 3 joints)


@pytest.fixture(scope="module")
def coco_mini() -> Path:
    return shared_data("coco_mini")


@pytest.fixture(scope="module")
def coco_prepared(coco_mini, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coco_prepared")
    run_cli(
        [
            "prepare-coco",
            "--split",
            "all",
            "--images",
            coco_mini / "train2017",
            "--annotations",
            coco_mini / "annotations/person_keypoints_train2017.json",
            "--out",
            out,
            "--workers",
            1,
            "--set",
            "prepare.crop_size=96",
            "--set",
            "prepare.min_keypoints=3",
        ]
    )  # fmt: skip  (the 80 people the figures below count)
    return out


def _labels(path: Path) -> dict:
    return json.loads(path.read_text())


def _image_keys(path: Path) -> set[int]:
    return {s["image_id"] for s in _labels(path)["samples"]}


# --------------------------------------------------------------------------------------------
# split


def test_choose_val_groups_takes_the_count_closest_to_the_ratio():
    from pkmodel.datatools.split import choose_val_groups

    sizes = np.array([5, 1, 1, 1, 1, 1, 1, 1, 1, 1])  # 14 samples
    for seed in range(20):
        val = choose_val_groups(sizes, 0.3, seed)
        # the greedy prefix of the shuffled groups: within half the next group of 4.2
        assert 1 <= val.sum() <= 9 and abs(sizes[val].sum() - 4.2) <= 3.0
    assert np.array_equal(choose_val_groups(sizes, 0.3, 7), choose_val_groups(sizes, 0.3, 7))
    assert choose_val_groups(np.array([3, 3]), 0.99, 0).sum() == 1  # both sides keep a group


def test_split_keeps_every_source_image_on_one_side(coco_prepared, tmp_path):
    from pkmodel.datatools.split import split_labels

    src = coco_prepared / "all.json"
    s = split_labels(src, 0.25, 0, "s_train", "s_val")
    train, val = coco_prepared / "s_train.json", coco_prepared / "s_val.json"
    assert (s.train_samples, s.val_samples) == (len(_labels(train)["samples"]), len(_labels(val)["samples"]))  # fmt: skip
    assert s.train_samples + s.val_samples == 80
    assert not _image_keys(train) & _image_keys(val)
    assert len(_image_keys(train)) + len(_image_keys(val)) == 26
    # coco_mini's images hold up to 13 people: within one image of the 20 asked for
    sizes = np.bincount([x["image_id"] for x in _labels(src)["samples"]])
    assert abs(s.val_samples - 20) <= sizes.max()
    for name in ("s_train", "s_val"):
        data = _labels(coco_prepared / f"{name}.json")
        assert data["split"] == name and data["split_of"]["seed"] == 0
        assert all((coco_prepared / x["image"]).is_file() for x in data["samples"])
    # same seed, same split; another seed, another split
    again = split_labels(src, 0.25, 0, "s2_train", "s2_val")
    assert _image_keys(coco_prepared / "s2_val.json") == _image_keys(val)
    assert again.val_samples == s.val_samples
    other = split_labels(src, 0.25, 1, "s3_train", "s3_val")
    assert _image_keys(coco_prepared / "s3_val.json") != _image_keys(val)
    assert other.train_samples + other.val_samples == 80

    # another folder: paths rewritten to the same crops
    moved = split_labels(src, 0.25, 0, "train", "val", tmp_path / "elsewhere")
    data = _labels(tmp_path / "elsewhere/val.json")
    assert moved.val_samples == s.val_samples
    assert data["samples"][0]["image"].startswith("../")
    assert all(
        os.path.samefile(tmp_path / "elsewhere" / x["image"], coco_prepared / y["image"])
        for x, y in zip(data["samples"], _labels(val)["samples"], strict=True)
    )


def test_split_refuses_bad_input(coco_prepared, tmp_path):
    from pkmodel.datatools.split import split_labels

    src = coco_prepared / "all.json"
    with pytest.raises(PkmodelError, match="--val-ratio must be between 0 and 1"):
        split_labels(src, 1.0, 0, "a", "b")
    with pytest.raises(PkmodelError, match="would overwrite its input"):
        split_labels(src, 0.5, 0, "all", "b")
    one = _labels(src)
    one["samples"] = [x for x in one["samples"] if x["image_id"] == one["samples"][0]["image_id"]]
    (tmp_path / "one.json").write_text(json.dumps(one))
    with pytest.raises(PkmodelError, match="from 1 source image"):
        split_labels(tmp_path / "one.json", 0.5, 0, "a", "b")
    (tmp_path / "bad.json").write_text('{"schema": "other"}')
    with pytest.raises(PkmodelError, match="is not a pkmodel prepared-labels file"):
        split_labels(tmp_path / "bad.json", 0.5, 0, "a", "b")


def test_choose_val_groups_of_equal_groups_takes_the_closest_count_in_seeded_order():
    """Guards the count (the prefix closest to the ratio, not one group short) and the shuffle
    (the seed picks which groups, not the first ones)."""
    from pkmodel.datatools.split import choose_val_groups

    ones = np.ones(10, np.int64)
    picks = set()
    for seed in range(6):
        val = choose_val_groups(ones, 0.3, seed)
        assert val.sum() == 3  # 3 of 10 samples is 0.3 exactly
        picks.add(tuple(np.flatnonzero(val)))
        assert choose_val_groups(ones, 0.71, seed).sum() == 7
    assert len(picks) > 1


def _tiny_labels(folder: Path, name: str, image_ids: list[int], **header) -> Path:
    """A prepared-labels file ``folder/name.json``: one sample per entry of ``image_ids`` (crops
    ``imgs/train/<i>.jpg`` of a few bytes each, ann ids 0, 1, ...)."""
    (folder / "imgs/train").mkdir(parents=True, exist_ok=True)
    samples = []
    for i, image_id in enumerate(image_ids):
        (folder / f"imgs/train/{i}.jpg").write_bytes(b"crop %d" % i)
        kp = np.zeros((NUM_JOINTS, 3))
        kp[:, :2], kp[:, 2] = 10.0 + i, 2
        samples.append({
            "image": f"imgs/train/{i}.jpg", "image_id": image_id, "ann_id": i,
            "file_name": f"{image_id}.jpg", "keypoints": kp.tolist(), "center": [16.0, 16.0],
            "crop_box": [0.0, 0.0, 32.0], "bbox": [1.0, 1.0, 20.0, 20.0], "width": 64,
            "height": 64,
        })  # fmt: skip
    data = {"schema": "pkmodel.prepared", "version": 1, "crop_size": 32, **header}
    path = folder / f"{name}.json"
    path.write_text(json.dumps({**data, "samples": samples}))
    return path


def test_split_summary_counts_images_per_side_and_the_header_drops_the_whole_files_summary(
    tmp_path,
):
    """Guards what split reports and writes: images per side (not all of them), the val share
    of all samples, split_of counting the input's samples, no prepare summary of the whole file
    in a side; and the ratio 0, a hidden file name and a negative seed refused."""
    from pkmodel.datatools.split import split_labels

    ids = [1, 1, 1, 2, 3, 3, 4, 5, 6, 7]  # 10 samples of 7 images
    src = _tiny_labels(tmp_path, "all", ids, summary={"kept": 10})
    s = split_labels(src, 0.3, 0, "tr", "va")
    train, val = _labels(tmp_path / "tr.json"), _labels(tmp_path / "va.json")
    assert s.train_samples + s.val_samples == 10 and s.val_samples == len(val["samples"])
    assert s.train_images == len({x["image_id"] for x in train["samples"]})
    assert s.val_images == len({x["image_id"] for x in val["samples"]})
    assert s.train_images + s.val_images == 7
    share = s.val_samples / 10
    assert s.format().endswith(f"({share:.1%} of the samples)")
    assert f"val:   {s.val_samples} samples from {s.val_images} images" in s.format()
    for side in (train, val):
        assert "summary" not in side and side["split_of"]["samples"] == 10
    for bad, message in (
        (dict(val_ratio=0.0), "--val-ratio must be between 0 and 1"),
        (dict(train_name=".tr"), "split name '.tr' must be a plain file name"),
        (dict(seed=-1), "--seed -1 must be a whole number >= 0"),
    ):
        args = {"val_ratio": 0.3, "seed": 0, "train_name": "a", "val_name": "b", **bad}
        with pytest.raises(PkmodelError, match=message):
            split_labels(src, **args)


# --------------------------------------------------------------------------------------------
# merge


def test_merge_tags_sources_links_crops_and_resumes(coco_prepared, tmp_path):
    from pkmodel.datatools.merge import merge_labels
    from pkmodel.datatools.split import split_labels

    split_labels(coco_prepared / "all.json", 0.3, 4, "m_train", "m_val")
    inputs = [coco_prepared / "m_train.json", coco_prepared / "m_val.json"]
    n_train, n_val = (len(_labels(p)["samples"]) for p in inputs)
    out = tmp_path / "ds"
    s = merge_labels(inputs, out, "merged", progress=False)
    assert (s.samples, s.linked, s.copied, s.reused) == (80, 80, 0, 0)
    assert s.per_source == {"m_train": n_train, "m_val": n_val}
    data = _labels(out / "merged.json")
    assert data["crop_size"] == 96 and data["annotations"] is None
    assert [m["tag"] for m in data["merged_from"]] == ["m_train", "m_val"]
    sources = [x["source"] for x in data["samples"]]
    assert sources.count("m_train") == n_train and sources.count("m_val") == n_val
    files = [out / x["image"] for x in data["samples"]]
    assert len(set(files)) == 80 and all(f.is_file() for f in files)
    originals = [coco_prepared / x["image"] for p in inputs for x in _labels(p)["samples"]]
    assert all(os.path.samefile(a, b) for a, b in zip(files, originals, strict=True))  # hard links
    # labels other than image and source are untouched
    first = _labels(inputs[0])["samples"][0]
    assert {k: v for k, v in data["samples"][0].items() if k not in ("image", "source")} == {
        k: v for k, v in first.items() if k not in ("image", "source")
    }
    # resumable: a rerun finds every crop in place; a lost crop is put back
    files[3].unlink()
    again = merge_labels(inputs, out, "merged", progress=False)
    assert (again.linked, again.reused) == (1, 79)
    # copies, own tags, and the merged file loads as a dataset
    copied = merge_labels(inputs, tmp_path / "ds2", "both", tags=["a", "b"], link="copy", progress=False)  # fmt: skip
    assert copied.copied == 80 and copied.per_source == {"a": n_train, "b": n_val}
    f = tmp_path / "ds2" / _labels(tmp_path / "ds2/both.json")["samples"][0]["image"]
    assert f.read_bytes() == originals[0].read_bytes() and not os.path.samefile(f, originals[0])
    from pkmodel.config import Config
    from pkmodel.data.dataset import PoseDataset

    cfg = Config()
    cfg.model.input_size = 64
    ds = PoseDataset(tmp_path / "ds2/both.json", cfg, train=False)
    assert len(ds) == 80 and tuple(ds[79]["image"].shape) == (3, 64, 64)


def test_merge_refuses_mismatches_with_one_sentence(coco_prepared, tmp_path):
    from pkmodel.datatools.merge import merge_labels

    src = coco_prepared / "all.json"
    data = _labels(src)
    same = coco_prepared / "same.json"  # a third input like the first: the odd one in the middle
    same.write_text(src.read_text())
    for key, value, message in (
        ("crop_size", 128, "crop_size 128 differs from 96"),
        ("version", 0, "schema version 0 differs from 1"),
        ("joint_names", data["joint_names"][:13], "joint names 13 joints differs from 17"),
        (
            "joint_names",
            [data["joint_names"][0], *data["joint_names"][1:3][::-1], *data["joint_names"][3:]],
            "joint names \\(joint 1 'right_eye'\\) differs from 'left_eye'",
        ),
    ):
        bad = coco_prepared / f"bad_{key}.json"
        bad.write_text(json.dumps({**data, key: value}))
        with pytest.raises(PkmodelError, match=message) as e:
            merge_labels([src, bad, same], tmp_path / "out", "m", progress=False)
        assert "\n" not in str(e.value)
        bad.unlink()
    same.unlink()
    (coco_prepared / "notes.json").write_text('{"samples": []}')
    with pytest.raises(PkmodelError, match="is not a pkmodel prepared-labels file"):
        merge_labels([src, coco_prepared / "notes.json"], tmp_path / "out", "m", progress=False)
    with pytest.raises(PkmodelError, match="1 --tag value"):
        merge_labels([src, src.with_name("s_val.json")], tmp_path / "out", "m", ["x"], progress=False)  # fmt: skip
    with pytest.raises(PkmodelError, match="would overwrite its input"):
        merge_labels([src], coco_prepared, "all", progress=False)
    assert not (tmp_path / "out").exists()  # nothing written before the checks pass


def test_default_tags_of_inputs():
    """Guards the default source tags: the one source all samples share (unless another input
    has it too, it holds '/', or the input is itself a merge), else the stem, '<folder>_<stem>'
    where stems repeat, and a counter from 2 for tags that still repeat."""
    from pkmodel.datatools.merge import default_tags

    def data(*sources, merged=False):
        d = {"samples": [{"source": x} for x in sources]}
        return {**d, "merged_from": []} if merged else d

    paths = [Path("/d/a/train.json"), Path("/d/b/train.json"), Path("/d/c/val.json")]
    assert default_tags(paths, [data("coco")] * 2 + [data("coco", "x")]) == [
        "a_train", "b_train", "val"
    ]  # fmt: skip
    assert default_tags(paths, [data("p"), data("q/r"), data("s", merged=True)]) == [
        "p", "b_train", "val"
    ]  # fmt: skip
    two = [Path("/d/train.json"), Path("/d/coco.json"), Path("/e/coco.json")]
    assert default_tags(two, [data("coco"), data("a", "b"), data("a", "b")]) == [
        "coco", "d_coco", "e_coco"
    ]  # fmt: skip
    assert default_tags(two[:2], [data("coco"), data("a", "b")]) == ["coco", "coco_2"]


def test_merge_paths_nesting_header_and_refusals(tmp_path):
    """Guards merge's bookkeeping: crops go to imgs/<name>/<tag>/<path under imgs/>, a crop
    of another size in place is replaced (not reused), a merge of a merge keeps the inner tags
    (outer/inner), merged_from counts pseudo-labels, settings that differ are None with a note;
    and refusals: a tag starting with '.', tags or inputs given twice, '..' inside a path, two
    crops that would share one name."""
    from pkmodel.datatools.merge import merge_labels

    a = _tiny_labels(tmp_path / "a", "one", [1, 2], expand_ratio=1.25, jpeg_quality=90)
    b = _tiny_labels(tmp_path / "b", "two", [1, 3], expand_ratio=1.5, jpeg_quality=90)
    data = _labels(b)
    data["samples"][1]["pseudo"] = True
    b.write_text(json.dumps(data))
    out = tmp_path / "out"
    (out / "imgs/m/one/train").mkdir(parents=True)
    (out / "imgs/m/one/train/1.jpg").write_bytes(b"an older, longer crop")
    s = merge_labels([a, b], out, "m", progress=False)
    assert (s.samples, s.linked + s.copied, s.reused) == (4, 4, 0)
    assert "note: the inputs were cropped with different expand ratios" in s.format()
    merged = _labels(out / "m.json")
    assert [x["image"] for x in merged["samples"]] == [
        "imgs/m/one/train/0.jpg", "imgs/m/one/train/1.jpg",
        "imgs/m/two/train/0.jpg", "imgs/m/two/train/1.jpg",
    ]  # fmt: skip
    assert (out / "imgs/m/one/train/1.jpg").read_bytes() == b"crop 1"
    assert merged["expand_ratio"] is None and merged["jpeg_quality"] == 90
    assert [m["pseudo"] for m in merged["merged_from"]] == [0, 1]
    c = _tiny_labels(tmp_path / "c", "three", [9], expand_ratio=1.25, jpeg_quality=80)
    assert _labels(c)["samples"][0]["image"] == "imgs/train/0.jpg"
    s = merge_labels([out / "m.json", c], tmp_path / "out2", "n", progress=False)
    nested = _labels(tmp_path / "out2/n.json")
    assert [x["source"] for x in nested["samples"]] == ["m/one", "m/one", "m/two", "m/two", "three"]  # fmt: skip
    assert nested["samples"][0]["image"] == "imgs/n/m/m/one/train/0.jpg"
    assert nested["jpeg_quality"] is None and nested["expand_ratio"] is None
    for inputs, tags, message in (
        ([a], [".a"], "source tag '.a' must be a plain name"),
        ([a, b], ["x", "x"], "repeat: every input needs its own tag"),
        ([a, tmp_path / "a/../a/one.json"], None, "the same label file is given twice"),
    ):
        with pytest.raises(PkmodelError, match=message):
            merge_labels(inputs, tmp_path / "out3", "m", tags, progress=False)
    (tmp_path / "a/other/imgs/train").mkdir(parents=True)
    (tmp_path / "a/other/imgs/train/0.jpg").write_bytes(b"another crop")
    for image, message in (
        ("imgs/train/../../../b/imgs/train/0.jpg", "goes up with '..'"),
        ("other/imgs/train/0.jpg", "would both become imgs/m/x/train/0.jpg"),  # as sample 0's
    ):
        data = _labels(a)
        data["samples"][1]["image"] = image
        (tmp_path / "a/bad.json").write_text(json.dumps(data))
        with pytest.raises(PkmodelError, match=message):
            merge_labels([tmp_path / "a/bad.json"], tmp_path / "out3", "m", ["x"], progress=False)
    assert not (tmp_path / "out3").exists()


# --------------------------------------------------------------------------------------------
# stats and render


def test_stats_count_what_the_labels_hold(coco_prepared, tmp_path):
    from pkmodel.datatools.stats import write_stats

    stats = write_stats(coco_prepared / "all.json", tmp_path / "s.png", tmp_path / "s.json")
    samples = _labels(coco_prepared / "all.json")["samples"]
    kp = np.array([x["keypoints"] for x in samples])
    assert stats["counts"]["samples"] == 80 and stats["counts"]["source_images"] == 26
    assert stats["counts"]["per_source"] == {"coco": 80}
    assert stats["counts"]["others"] == sum(len(x["others"]) for x in samples)
    assert [j["labelled"] for j in stats["joints"].values()] == (kp[..., 2] > 0).sum(0).tolist()
    assert [j["occluded"] for j in stats["joints"].values()] == (kp[..., 2] == 1).sum(0).tolist()
    per_person = stats["labelled_per_person"]["counts"]
    assert sum(per_person) == 80 and sum(per_person[:3]) == 0  # prepare.min_keypoints = 3
    for key in ("person_size_px", "person_height_share"):
        assert sum(stats[key]["counts"]) == 80
    assert np.sum(stats["person_position"]["counts_xy"]) == 80
    # sizes: the longer bbox side in original pixels, from the crop labels
    box = np.array([x["bbox"] for x in samples]) * np.array([x["crop_box"][2] / 96 for x in samples])[:, None]  # fmt: skip
    assert stats["person_size_px_median"] == pytest.approx(np.median(box[:, 2:].max(1)), abs=0.01)
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "s.png").stat().st_size > 20_000
    assert json.loads((tmp_path / "s.json").read_text())["counts"]["labelled_joints"] == int((kp[..., 2] > 0).sum())  # fmt: skip


def test_stats_numbers_of_two_hand_made_samples(tmp_path):
    """Concrete figures of every statistic. Faults guarded: bbox not moved by the crop's
    corner, height share over the width, center without the half size, width and height or
    x and y swapped, values past the last edge dropped, occluded joints counted visible,
    samples without others counted, a "pseudo": false sample counted, joints in the crop not
    divided by the crop size, the share as a count, the most labelled joints listed as the
    least, and an empty label file written out."""
    from pkmodel.common.skeleton import JOINT_NAMES
    from pkmodel.datatools.stats import format_stats, label_stats, write_stats

    a = np.zeros((NUM_JOINTS, 3))
    a[0], a[1] = [25, 75, 2], [50, 50, 1]
    b = np.tile([90.0, 10.0, 2.0], (NUM_JOINTS, 1))
    other = {"keypoints": np.zeros((NUM_JOINTS, 3)).tolist(), "center": [5.0, 5.0]}
    samples = [
        {"image": "a.jpg", "image_id": 1, "keypoints": a.tolist(), "center": [25.0, 47.5],
         "crop_box": [100.0, 20.0, 200.0], "bbox": [10.0, 20.0, 30.0, 55.0], "width": 400,
         "height": 200, "source": "pl", "pseudo": True, "others": [other]},
        {"image": "b.jpg", "image_id": 2, "keypoints": b.tolist(), "center": [30.0, 22.5],
         "crop_box": [0.0, 0.0, 100.0], "bbox": [0.0, 0.0, 60.0, 45.0], "width": 100,
         "height": 40, "source": "coco", "pseudo": False, "others": []},
    ]  # fmt: skip
    path = tmp_path / "l.json"
    path.write_text(json.dumps({"schema": "pkmodel.prepared", "version": 1, "crop_size": 100, "samples": samples}))  # fmt: skip
    stats = label_stats(path)
    # original boxes: a (120, 60, 60, 110) in 400 x 200, b (0, 0, 60, 45) in 100 x 40
    assert stats["counts"] == {"samples": 2, "source_images": 2, "per_source": {"coco": 1, "pl": 1},
                               "pseudo": 1, "others": 1, "samples_with_others": 1,
                               "labelled_joints": 19}  # fmt: skip
    j0, j1, j2 = (stats["joints"][JOINT_NAMES[j]] for j in range(3))
    assert j0 == {"labelled": 2, "visible": 2, "occluded": 0, "share": 1.0}
    assert j1 == {"labelled": 2, "visible": 1, "occluded": 1, "share": 1.0}
    assert j2 == {"labelled": 1, "visible": 1, "occluded": 0, "share": 0.5}
    assert stats["person_size_px"]["counts"][:4] == [0, 1, 0, 1]  # 60 and 110 px
    assert stats["person_size_px_median"] == 85.0
    assert stats["person_height_share"]["counts"] == [0, 0, 0, 0, 0, 1, 0, 0, 0, 1]  # 0.55, 1.125
    assert stats["person_position"]["mean"] == [0.3375, 0.5688]
    cells = np.argwhere(np.array(stats["person_position"]["counts_xy"])).tolist()
    assert cells == [[2, 4], [3, 4]]  # [x bin, y bin]: (0.3, 0.5625) and (0.375, 0.575)
    crop = np.array(stats["joints_in_crop"]["counts_xy"])
    assert (crop[2, 6], crop[4, 4], crop[7, 0], crop.sum()) == (1, 1, 17, 19)
    assert f"least labelled: {JOINT_NAMES[2]} 1, {JOINT_NAMES[3]} 1, {JOINT_NAMES[4]} 1" in format_stats(stats)  # fmt: skip
    empty = tmp_path / "e.json"
    empty.write_text(json.dumps({"schema": "pkmodel.prepared", "version": 1, "crop_size": 100, "samples": []}))  # fmt: skip
    with pytest.raises(PkmodelError, match="hold no samples"):
        write_stats(empty, tmp_path / "e.png", tmp_path / "e.json.out")
    assert not (tmp_path / "e.png").exists()


def test_render_draws_the_labels_on_the_crops(coco_prepared, tmp_path):
    from pkmodel.common.draw import LEFT_COLOR
    from pkmodel.common.images import read_rgb
    from pkmodel.common.skeleton import JOINT_INDEX
    from pkmodel.datatools.render import render_labels

    labels = coco_prepared / "all.json"
    s = render_labels(labels, tmp_path / "sheet.png", count=6, cols=3, progress=False)
    sheet = read_rgb(tmp_path / "sheet.png")
    assert s.pictures == 6 and sheet.shape == (2 * 96 + 4, 3 * 96 + 2 * 4, 3)
    # folder mode: the sample with the largest person, its left hip drawn in the left colour
    samples = _labels(labels)["samples"]
    hip = JOINT_INDEX["left_hip"]
    ok = [i for i, x in enumerate(samples) if x["keypoints"][hip][2] > 0 and x["keypoints"][hip][1] > 30]  # fmt: skip
    i = max(ok, key=lambda i: samples[i]["bbox"][3])
    render_labels(labels, tmp_path / "one.png", count=1, source=None, progress=False)
    picked = render_labels(labels, tmp_path / "pics", count=0, progress=False)
    assert picked.pictures == 80 and len(list((tmp_path / "pics").glob("*.jpg"))) == 80
    from pkmodel.datatools.render import draw_sample

    crop = read_rgb(coco_prepared / samples[i]["image"])
    drawn = draw_sample(crop, samples[i], "x")
    x, y = (int(v) for v in samples[i]["keypoints"][hip][:2])
    assert np.abs(drawn[y, x].astype(int) - LEFT_COLOR).max() <= 2
    assert np.abs(drawn.astype(int) - crop).max() > 100  # drawn over the crop
    with pytest.raises(PkmodelError, match="no samples with source 'nope'"):
        render_labels(labels, tmp_path / "x.png", source="nope", progress=False)


# --------------------------------------------------------------------------------------------
# extract-frames


def _write_video(path: Path, frames: int, fps: float, size=(64, 48)) -> None:
    """Frame i is uniform grey 10 x i: the extracted frames say which frame they are."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 10 * i, np.uint8))
    writer.release()


def _grey_levels(folder: Path) -> list[int]:
    from pkmodel.common.images import read_rgb

    return [round(read_rgb(p).mean() / 10) for p in sorted(folder.glob("*.jpg"))]


def test_extract_frames_stores_a_video_stored_on_its_side_upright(tmp_path):
    """--rotate 90: a video whose frames lie on their side (no display matrix) gives upright
    frames, named with the turn; a rerun with another turn keeps none of them."""
    import cv2

    from pkmodel.common.images import read_rgb
    from pkmodel.datatools.frames import extract_frames

    upright = np.zeros((64, 48, 3), np.uint8)
    upright[:16] = 255  # the top quarter white
    stored = np.ascontiguousarray(np.rot90(upright))  # on its side: the white at the left
    writer = cv2.VideoWriter(str(tmp_path / "side.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))  # fmt: skip
    for _ in range(5):
        writer.write(stored)
    writer.release()
    s = extract_frames(tmp_path / "side.avi", tmp_path / "f", count=2, progress=False, rotate=90)
    assert s.frames_written == 2
    names = sorted(p.name for p in (tmp_path / "f/side").glob("*.jpg"))
    assert names == ["side_000001_r90.jpg", "side_000003_r90.jpg"]
    frame = read_rgb(tmp_path / "f/side" / names[0])
    assert frame.shape == (64, 48, 3)
    assert frame[:14].mean() > 240 and frame[18:].mean() < 15  # upright: the white on top
    assert json.loads((tmp_path / "f/side/frames.json").read_text())["rotate_deg"] == 90
    again = extract_frames(tmp_path / "side.avi", tmp_path / "f", count=2, progress=False)
    assert (again.skipped_videos, again.frames_written, again.frames_kept) == (0, 2, 0)
    assert read_rgb(tmp_path / "f/side/side_000001.jpg").shape == (48, 64, 3)
    with pytest.raises(PkmodelError, match=r"--rotate must be 0, 90, 180 or 270 \(degrees clockwise\), not 45"):  # fmt: skip
        extract_frames(tmp_path / "side.avi", tmp_path / "g", count=2, progress=False, rotate=45)


def test_extract_frames_every_n_seconds_and_evenly_and_resume(tmp_path):
    from pkmodel.datatools.frames import extract_frames, frames_evenly, frames_every

    assert frames_every(10.0, 25, 1.0).tolist() == [0, 10, 20]
    assert frames_every(29.97, 100, 1.0).tolist() == [0, 30, 60, 90]
    assert frames_evenly(25, 4).tolist() == [3, 9, 15, 21]
    assert frames_evenly(3, 10).tolist() == [0, 1, 2]
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    _write_video(videos / "clip.avi", 25, 10.0)
    _write_video(videos / "sub/other.avi", 12, 4.0)
    (videos / "broken.mp4").write_text("not a video")
    s = extract_frames(videos, tmp_path / "a", every_s=1.0, progress=False)
    assert (s.videos, s.frames_written, len(s.failed)) == (3, 6, 1)
    assert "broken.mp4" in s.failed[0]["video"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["clip", "other"]  # no 'broken'
    assert _grey_levels(tmp_path / "a/clip") == [0, 10, 20]
    assert _grey_levels(tmp_path / "a/other") == [0, 4, 8]
    manifest = json.loads((tmp_path / "a/clip/frames.json").read_text())
    assert [f["time_s"] for f in manifest["frames"]] == [0.0, 1.0, 2.0]
    assert manifest["frames"][1]["file"] == "clip_000010.jpg"

    e = extract_frames(videos / "clip.avi", tmp_path / "b", count=4, progress=False)
    assert e.frames_written == 4 and _grey_levels(tmp_path / "b/clip") == [3, 9, 15, 21]
    # resume: a finished video is skipped; an interrupted one keeps the frames it has
    again = extract_frames(videos / "clip.avi", tmp_path / "b", count=4, progress=False)
    assert (again.skipped_videos, again.frames_written) == (1, 0)
    (tmp_path / "b/clip/frames.json").unlink()
    (tmp_path / "b/clip/clip_000015.jpg").unlink()
    resumed = extract_frames(videos / "clip.avi", tmp_path / "b", count=4, progress=False)
    assert (resumed.frames_written, resumed.frames_kept) == (1, 3)
    # other settings: the video is extracted again
    assert extract_frames(videos / "clip.avi", tmp_path / "b", count=2, progress=False).skipped_videos == 0  # fmt: skip
    with pytest.raises(PkmodelError, match="exactly one of --every"):
        extract_frames(videos, tmp_path / "c", every_s=1.0, count=3, progress=False)
    with pytest.raises(PkmodelError, match="holds no video"):
        extract_frames(tmp_path / "a/clip", tmp_path / "c", count=3, progress=False)
    assert not s.short and "short" not in s.format()
    # a video cut short: its header still claims 25 frames, the frames wanted past the cut
    # are missing, and the summary says so
    whole = (videos / "clip.avi").read_bytes()
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut/clip.avi").write_bytes(whole[: len(whole) * 8 // 10])
    cut = extract_frames(tmp_path / "cut", tmp_path / "d", count=5, progress=False)
    manifest = json.loads((tmp_path / "d/clip/frames.json").read_text())
    missing = manifest["frames_missing"]
    assert manifest["frame_count"] == 25 and 0 < missing < 5
    assert cut.frames_written == 5 - missing
    assert cut.short == [
        f"{tmp_path / 'cut/clip.avi'}: {missing} of the 5 frames wanted lie past the last frame "
        "that decodes (its container gives 25; the file may be cut short)"
    ]
    assert f"  short {cut.short[0]}" in cut.format().splitlines()
    # an output that cannot be written is the command's fault, not every video's
    (tmp_path / "afile").write_text("x")
    with pytest.raises(PkmodelError) as err:
        extract_frames(videos, tmp_path / "afile", count=3, progress=False)
    assert str(err.value) == f"cannot write --out {tmp_path / 'afile'}: it is a file, not a folder"


def test_extract_frames_rerun_with_other_settings_leaves_only_its_own_frames(tmp_path):
    """--count 3, then --count 5 into the same folder left 7 frames beside a manifest of 5 (and
    pseudo-label read all 7): the earlier run's frames that the new manifest does not list go,
    once it is written; files the earlier manifest does not list are never touched."""
    from pkmodel.datatools.frames import extract_frames

    _write_video(tmp_path / "clip.avi", 25, 10.0)
    first = extract_frames(tmp_path / "clip.avi", tmp_path / "f", count=3, progress=False)
    assert first.frames_written == 3  # frames 4, 12, 20
    folder = tmp_path / "f/clip"
    (folder / "clip_999999.jpg").write_bytes(b"mine")  # the user's, not in any manifest
    (tmp_path / "f/outside.jpg").write_bytes(b"mine")
    manifest = json.loads((folder / "frames.json").read_text())
    manifest["frames"].append({"file": "../outside.jpg", "frame": 0, "time_s": 0.0})
    (folder / "frames.json").write_text(json.dumps(manifest))
    again = extract_frames(tmp_path / "clip.avi", tmp_path / "f", count=5, progress=False)
    assert (again.frames_written, again.frames_kept) == (4, 1)  # frame 12 was there
    listed = [f["file"] for f in json.loads((folder / "frames.json").read_text())["frames"]]
    assert listed == [f"clip_{i:06d}.jpg" for i in (2, 7, 12, 17, 22)]
    assert sorted(p.name for p in folder.glob("*.jpg")) == [*listed, "clip_999999.jpg"]
    assert (tmp_path / "f/outside.jpg").read_bytes() == b"mine"
    (folder / "clip_999999.jpg").unlink()
    assert _grey_levels(folder) == [2, 7, 12, 17, 22]


def test_extract_frames_removes_the_frames_of_a_run_interrupted_before_its_manifest(
    tmp_path, monkeypatch
):
    """A rerun with other settings interrupted before its manifest left its frames in no
    manifest, and no later run removed them. Each run now lists what it writes first: the next
    run that finishes, or that finds the video complete, removes what it does not list."""
    import pkmodel.datatools.frames as frames_module
    from pkmodel.datatools.frames import PENDING, extract_frames

    _write_video(tmp_path / "clip.avi", 25, 10.0)
    folder = tmp_path / "f/clip"
    real = frames_module.atomic_write_json

    def stop_at_the_manifest(path, data):
        if Path(path).name == "frames.json":
            raise KeyboardInterrupt
        real(path, data)

    def interrupted(count: int) -> None:
        with monkeypatch.context() as m:
            m.setattr(frames_module, "atomic_write_json", stop_at_the_manifest)
            with pytest.raises(KeyboardInterrupt):
                extract_frames(tmp_path / "clip.avi", tmp_path / "f", count=count, progress=False)

    extract_frames(tmp_path / "clip.avi", tmp_path / "f", count=3, progress=False)  # 4, 12, 20
    (folder / "clip_999999.jpg").write_bytes(b"mine")  # the user's, in no list
    interrupted(5)  # 2, 7, 12, 17, 22: four written, 12 kept
    assert sorted(int(p.stem[5:]) for p in folder.glob("*.jpg")) == [
        2,
        4,
        7,
        12,
        17,
        20,
        22,
        999999,
    ]
    again = extract_frames(tmp_path / "clip.avi", tmp_path / "f", count=3, progress=False)
    assert again.skipped_videos == 1  # complete: only the interrupted run's extra frames go
    assert sorted(p.name for p in folder.glob("*.jpg")) == [
        "clip_000004.jpg", "clip_000012.jpg", "clip_000020.jpg", "clip_999999.jpg",
    ]  # fmt: skip
    assert not (folder / PENDING).exists()
    interrupted(5)
    interrupted(2)  # 6, 18: both lists add up
    other = extract_frames(tmp_path / "clip.avi", tmp_path / "f", count=4, progress=False)
    assert (other.frames_written, other.frames_kept) == (4, 0)  # 3, 9, 15, 21
    assert sorted(p.name for p in folder.glob("*.jpg")) == [
        "clip_000003.jpg", "clip_000009.jpg", "clip_000015.jpg", "clip_000021.jpg",
        "clip_999999.jpg",
    ]  # fmt: skip
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".jpg") == ["frames.json"]


# --------------------------------------------------------------------------------------------
# pseudo-label


def test_images_to_label_skip_hidden_files_and_the_output_folder(tmp_path):
    from pkmodel.datatools.pseudo import list_images

    for name in ("b.jpg", "a/c.PNG", ".hidden/d.jpg", "out/imgs/pseudo/1_1.jpg", "e.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_images(tmp_path, exclude=tmp_path / "out") == ["a/c.PNG", "b.jpg"]
    with pytest.raises(PkmodelError, match="holds no image"):
        list_images(tmp_path / "out/imgs", exclude=tmp_path / "out")


def test_select_confident_thresholds():
    from pkmodel.datatools.pseudo import joint_boxes, select_confident

    scores = np.full((4, NUM_JOINTS), 0.9)
    scores[1, :10] = 0.1  # 7 joints left: below min_joints 8
    scores[2, :] = 0.35  # all kept joints, mean 0.35 < 0.5
    scores[3, :9] = 0.2  # 8 joints of 0.9: kept
    keep, ok, person = select_confident(scores, 0.3, 0.5, 8)
    assert keep.tolist() == [True, False, False, True]
    assert ok.sum(1).tolist() == [17, 7, 17, 8]
    assert person == pytest.approx([0.9, 0.9, 0.35, 0.9])
    kp = np.zeros((1, NUM_JOINTS, 2))
    kp[0, :, 0], kp[0, :, 1] = np.linspace(10, 50, NUM_JOINTS), np.linspace(100, 20, NUM_JOINTS)
    box = joint_boxes(kp, np.ones((1, NUM_JOINTS), bool), 0.1)
    assert box[0] == pytest.approx([10 - 8, 20 - 8, 40 + 16, 80 + 16])


def test_pseudo_thresholds_are_reached_boxes_and_hidden_folders(tmp_path):
    """Faults guarded: a score equal to joint_threshold or person_threshold refused ("reaches"
    is >=), a joint on the image's right or bottom edge line kept (it is in the padding), the
    COCO annotation's num_keypoints / area not those of the kept joints' box, and the hidden
    check applied to the folder's own path (images under ~/.cache were never found)."""
    from pkmodel.datatools.pseudo import (
        ImagePredictions,
        inside_image,
        list_images,
        pseudo_coco,
        select_confident,
    )

    keep, ok, person = select_confident(np.full((1, NUM_JOINTS), 0.5), 0.5, 0.5, NUM_JOINTS)
    assert keep.tolist() == [True] and ok.all() and person.tolist() == [0.5]
    kp = np.array([[[80.0, 5.0], [79.99, 39.99], [5.0, 40.0], [-0.01, 5.0]]])
    assert inside_image(kp, np.array([[80, 40]])).tolist() == [[False, True, False, False]]

    joints = np.full((1, NUM_JOINTS, 2), 500.0)  # dropped joints do not grow the box
    joints[0, :5] = [[20, 10], [10, 50], [15, 50], [25, 50], [30, 50]]  # kept: x 10-30, y 10-50
    joint_ok = np.ones((1, NUM_JOINTS), bool)
    joint_ok[0, 5:] = False
    preds = ImagePredictions(["a.jpg"], np.array([[640, 480]]), joints,
                             np.full((1, NUM_JOINTS), 0.9), np.ones(1))  # fmt: skip
    coco = pseudo_coco(preds, np.array([7]), np.array([True]), joint_ok, np.array([0.9]), 0.25)
    (ann,) = coco["annotations"]
    assert ann["num_keypoints"] == 5 and ann["id"] == ann["image_id"] == 7
    # x 10..30 (w 20), y 10..50 (h 40), grown by 0.25 x 40 on every side
    assert ann["bbox"] == [0.0, 0.0, 40.0, 60.0] and ann["area"] == 2400.0
    assert ann["keypoints"][5 * 3 : 6 * 3] == [0.0, 0.0, 0.0]  # not kept: v = 0

    hidden = tmp_path / ".cache/imgs"
    (hidden / "sub").mkdir(parents=True)
    for name in ("a.jpg", "sub/b.png", ".c.jpg"):
        (hidden / name).write_bytes(b"x")
    assert list_images(hidden) == ["a.jpg", "sub/b.png"]


def test_pseudo_scores_ignore_crowds_and_images_without_ground_truth():
    """Faults guarded: label OKS taken against a crowd region (a pose on a crowd scored 1) and
    kept poses of images without ground truth counted in kept_scored."""
    from pycocotools.coco import COCO

    from pkmodel.datatools.pseudo import ImagePredictions, score_pseudo_labels

    pose = np.stack([50 + 5.0 * np.arange(NUM_JOINTS), 50 + 8.0 * np.arange(NUM_JOINTS)], -1)

    def ann(i, image, shift, crowd=0):
        kp = np.concatenate([pose + shift, np.full((NUM_JOINTS, 1), 2.0)], -1)
        return {"id": i, "image_id": image, "category_id": 1, "iscrowd": crowd, "area": 20000.0,
                "bbox": [50.0, 50.0, 100.0, 200.0], "num_keypoints": NUM_JOINTS,
                "keypoints": kp.reshape(-1).tolist()}  # fmt: skip

    gt = COCO()
    gt.dataset = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 400, "height": 400} for i in (1, 2)],
        "annotations": [ann(1, 1, 100.0), ann(2, 1, 0.0, crowd=1), ann(3, 2, 0.0)],
        "categories": [{"id": 1, "name": "person"}],
    }  # fmt: skip
    gt.createIndex()
    preds = ImagePredictions(["1.jpg", "2.jpg", "3.jpg"], np.full((3, 2), 400),
                             np.stack([pose] * 3), np.full((3, NUM_JOINTS), 0.9), np.ones(3))  # fmt: skip
    ok = np.ones((3, NUM_JOINTS), bool)
    s = score_pseudo_labels(gt, preds, np.array([1, 2, 3]), np.ones(3, bool), ok)
    assert (s["images_scored"], s["images_without_ground_truth"], s["kept_scored"]) == (2, 1, 2)
    lo = s["label_oks"]
    assert lo["count"] == 2 and lo["share_0.75"] == 0.5  # 1 on image 2, ~0 on image 1
    assert lo["mean"] == pytest.approx(0.5, abs=1e-3)


class OracleRunner:
    """Stands in for a checkpoint: returns each image's ground-truth person in input pixels.

    ``truth``: per image in the order the images are read, (K, 3) keypoints (COCO v) and the
    image size, or None for an image without a person; ``low`` images get scores of 0.4."""

    input_size = 64

    def __init__(self, truth, low=()):
        self.truth, self.low, self.calls = list(truth), set(low), 0

    def __call__(self, batch):
        from pkmodel.common.geometry import letterbox_params

        n = len(batch)
        kp, scores = np.zeros((n, NUM_JOINTS, 2)), np.full((n, NUM_JOINTS), 0.1)
        for i in range(n):
            name, gt, size = self.truth[self.calls + i]
            if gt is None:
                continue
            kp[i] = letterbox_params(*size, self.input_size).to_input(gt[:, :2])
            scores[i] = np.where(gt[:, 2] > 0, 0.4 if name in self.low else 0.9, 0.05)
        self.calls += n
        return {"keypoints": kp, "scores": scores, "found": scores > 0.2,
                "center_scores": np.ones(n), "centers": np.full((n, 2), 32.0)}  # fmt: skip


def test_pseudo_label_never_labels_a_joint_the_network_placed_in_the_padding(tmp_path):
    """A wide photo is letterboxed with bands above and below: a joint the network puts there,
    however confident, is off the image and no label (it was labelled at a y below 0)."""
    import cv2

    from pkmodel.config import PrepareConfig, PseudoLabelConfig
    from pkmodel.datatools.pseudo import pseudo_label

    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "wide.jpg"), np.full((100, 200, 3), 120, np.uint8))
    gt = np.zeros((NUM_JOINTS, 3))
    gt[:, 0] = np.linspace(60.0, 140.0, NUM_JOINTS)
    gt[:, 1] = np.linspace(20.0, 90.0, NUM_JOINTS)
    gt[:, 2] = 2
    gt[[0, 1], 1] = -12.0  # nose and left eye in the band above the photo (input y 10)
    runner = OracleRunner([("wide.jpg", gt, (200, 100))])
    params = PseudoLabelConfig(joint_threshold=0.3, person_threshold=0.5, min_joints=8,
                               refine_passes=0, source="oracle")  # fmt: skip
    s = pseudo_label(folder, runner, tmp_path / "ds", "pl", params, PrepareConfig(crop_size=96, workers=1),
                     {"weights": "oracle"}, batch_size=4, progress=False)  # fmt: skip
    assert s.kept == 1
    coco = json.loads((tmp_path / "ds/pseudo/pl.coco.json").read_text())
    (ann,) = coco["annotations"]
    kp = np.reshape(ann["keypoints"], (NUM_JOINTS, 3))
    assert kp[:2].tolist() == [[0, 0, 0], [0, 0, 0]] and ann["num_keypoints"] == NUM_JOINTS - 2
    np.testing.assert_allclose(kp[2:, :2], gt[2:, :2], atol=1e-6)


def test_pseudo_label_with_an_oracle_recovers_the_ground_truth(coco_mini, tmp_path):
    """Perfect predictions must give OKS AP 1 and labels that map back onto COCO's joints."""
    from pkmodel.common.geometry import crop_to_image
    from pkmodel.config import PrepareConfig, PseudoLabelConfig
    from pkmodel.datatools.pseudo import pseudo_label

    coco = json.loads((coco_mini / "annotations/person_keypoints_train2017.json").read_text())
    best: dict[int, dict] = {}  # per image, its person with the most labelled joints (>= 8)
    for a in coco["annotations"]:
        n = sum(v > 0 for v in a["keypoints"][2::3])
        if not a["iscrowd"] and n >= 8 and n > best.get(a["image_id"], {}).get("num_keypoints", -1):  # fmt: skip
            best[a["image_id"]] = {**a, "num_keypoints": n}
    images = {i["id"]: i for i in coco["images"]}
    folder = tmp_path / "images"
    folder.mkdir()
    truth, kept_ids = [], []
    for image_id in best:
        src = coco_mini / "train2017" / images[image_id]["file_name"]
        (folder / src.name).symlink_to(src)
        kept_ids.append(image_id)
    (folder / "zz_broken.jpg").write_bytes(b"not a JPEG")  # listed as unreadable, not fatal
    empty = next(i for i in coco["images"] if i["id"] not in {a["image_id"] for a in coco["annotations"]})  # fmt: skip
    (folder / empty["file_name"]).symlink_to(coco_mini / "train2017" / empty["file_name"])
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps({**coco, "images": [images[i] for i in kept_ids],
                                   "annotations": [best[i] for i in kept_ids]}))  # fmt: skip
    by_name = {images[i]["file_name"]: best[i] for i in kept_ids}
    for name in sorted(p.name for p in folder.iterdir() if p.name != "zz_broken.jpg"):
        ann = by_name.get(name)
        size = (images[ann["image_id"]]["width"], images[ann["image_id"]]["height"]) if ann else (empty["width"], empty["height"])  # fmt: skip
        gt = np.reshape(ann["keypoints"], (NUM_JOINTS, 3)).astype(float) if ann else None
        truth.append((name, gt, size))
    low = sorted(by_name)[0]  # its scores stay below the person threshold
    runner = OracleRunner(truth, low={low})
    # The oracle knows whole images only: no second look at a crop (tested in test_predict.py).
    params = PseudoLabelConfig(joint_threshold=0.3, person_threshold=0.5, min_joints=8, refine_passes=0, source="oracle")  # fmt: skip
    prep = PrepareConfig(crop_size=96, workers=1)
    s = pseudo_label(folder, runner, tmp_path / "ds", "pl", params, prep, {"weights": "oracle"},
                     annotations=gt_file, batch_size=4, progress=False)  # fmt: skip
    n = len(kept_ids)
    assert (s.images, s.predicted, s.inferred, s.kept) == (n + 2, n + 1, n + 1, n - 1)
    assert (
        list(s.unreadable) == ["zz_broken.jpg"] and "cannot decode" in s.unreadable["zz_broken.jpg"]
    )
    assert s.scores["images_scored"] == n and s.scores["images_without_ground_truth"] == 1
    assert s.scores["all"]["AP"] == pytest.approx(1.0) and s.scores["kept"]["AP"] == pytest.approx(1.0)  # fmt: skip
    assert s.scores["label_oks"]["count"] == n - 1
    assert s.scores["label_oks"]["mean"] == pytest.approx(1.0, abs=1e-6)

    data = _labels(tmp_path / "ds/pl.json")
    assert data["schema"] == "pkmodel.prepared" and data["crop_size"] == 96
    assert data["pseudo_label"]["kept"] == n - 1
    assert len(data["samples"]) == n - 1
    for x in data["samples"]:
        assert x["pseudo"] is True and x["source"] == "oracle"
        assert (tmp_path / "ds" / x["image"]).stat().st_size == x["crop_bytes"]
        gt = np.reshape(best[x["image_id"]]["keypoints"], (NUM_JOINTS, 3))
        kp = np.array(x["keypoints"])
        assert ((kp[:, 2] > 0) == (gt[:, 2] > 0)).all()  # unlabelled joints stay unlabelled
        back = crop_to_image(kp[:, :2], x["crop_box"], 96)
        assert np.abs(back - gt[:, :2])[gt[:, 2] > 0].max() < 0.02
        assert len(x["extra"]["scores"]) == NUM_JOINTS and x["extra"]["score"] == pytest.approx(0.9)
    assert low not in {x["file_name"] for x in data["samples"]}

    # rerun with looser thresholds: nothing is inferred again, the low-score image joins
    loose = PseudoLabelConfig(joint_threshold=0.3, person_threshold=0.3, min_joints=8, refine_passes=0, source="oracle")  # fmt: skip
    r = pseudo_label(folder, OracleRunner([]), tmp_path / "ds", "pl", loose, prep,
                     {"weights": "oracle"}, batch_size=4, progress=False)  # fmt: skip
    assert (r.inferred, r.kept) == (0, n)
    # never over another label file of that name
    shutil.copy(tmp_path / "ds/pl.json", tmp_path / "ds/train.json")
    plain = _labels(tmp_path / "ds/train.json")
    del plain["pseudo_label"]
    (tmp_path / "ds/train.json").write_text(json.dumps(plain))
    with pytest.raises(PkmodelError, match="train.json exists and is not a pseudo-label file"):
        pseudo_label(folder, OracleRunner([]), tmp_path / "ds", "train", loose, prep, {}, progress=False)  # fmt: skip


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine, two spinning threads make a tiny step
    100x slower (0.05 s -> 5-12 s measured)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_pseudo_label_cli_with_a_random_checkpoint_merges_and_trains(coco_mini, coco_prepared, tmp_path, one_torch_thread):  # fmt: skip
    """Mechanics with a real (untrained) network: thresholds, schema, cache, merge, training."""
    from pkmodel.engine.train import train
    from pkmodel.model.checkpoint import save_checkpoint
    from pkmodel.model.network import build_model

    ds = tmp_path / "ds"
    cfg = tiny_train_config(ds, tmp_path / "run", epochs=1)
    save_checkpoint(tmp_path / "random.pt", {"model": build_model(cfg.model, pretrained=False).state_dict(), "ema": None, "config": cfg.to_dict()})  # fmt: skip
    images = tmp_path / "unlabelled"  # 24 of coco_mini's images keep the test short
    images.mkdir()
    for src in sorted((coco_mini / "train2017").glob("*.jpg"))[:24]:
        (images / src.name).symlink_to(src)
    base = ["data", "pseudo-label", images, "--weights", tmp_path / "random.pt",
            "--out", ds, "--device", "cpu", "--batch-size", 16, "--quiet",
            "--set", "prepare.crop_size=96", "--set", "prepare.workers=1"]  # fmt: skip
    out = run_cli([*base, "--joint-threshold", 0, "--person-threshold", 0, "--min-joints", 1,
                   "--annotations", coco_mini / "annotations/person_keypoints_train2017.json"])  # fmt: skip
    assert "24 images: 24 predicted (24 run now, 0 from the cache), 0 unreadable" in out
    assert "OKS AP" in out
    data = _labels(ds / "pseudo.json")
    n = len(data["samples"])
    assert n >= 20 and f"{n} confident poses kept" in out  # joints in the padding are no labels
    assert all(x["pseudo"] and x["source"] == "pseudo" for x in data["samples"])
    assert all(any(v > 0 for _, _, v in x["keypoints"]) for x in data["samples"])
    report = json.loads((ds / "pseudo/pseudo.report.json").read_text())
    assert report["kept"] == n and report["scores"]["images_scored"] == 24
    # stricter thresholds from the cache: nothing kept, nothing run again
    strict = run_cli([*base, "--name", "pseudo", "--joint-threshold", 0.99, "--min-joints", 17,
                      "--annotations", coco_mini / "annotations/person_keypoints_train2017.json"])  # fmt: skip
    assert "(0 run now, 24 from the cache)" in strict and "0 confident poses kept" in strict
    assert "(kept poses)" in strict
    assert json.loads((ds / "pseudo/pseudo.report.json").read_text())["scores"]["kept"]["AP"] == 0.0
    assert _labels(ds / "pseudo.json")["samples"] == []
    # Another number of second looks gives other poses: the cache does not serve them.
    whole = run_cli([*base, "--refine-passes", 0, "--joint-threshold", 0, "--person-threshold", 0, "--min-joints", 1])  # fmt: skip
    assert "(24 run now, 0 from the cache)" in whole
    assert json.loads((ds / "pseudo/pseudo.report.json").read_text())["refine_passes"] == 0
    run_cli([*base, "--name", "pseudo", "--joint-threshold", 0, "--person-threshold", 0,
             "--min-joints", 1, "--source", "random_net"])  # fmt: skip

    # split the real labels into ds, merge the pseudo-labels in, train a few steps on them
    run_cli(["data", "split", coco_prepared / "all.json", "--out", ds, "--val-ratio", 0.3,
             "--train-name", "coco_train", "--val-name", "coco_val"])  # fmt: skip
    merged = run_cli(["data", "merge", ds / "coco_train.json", ds / "pseudo.json", "--out", ds,
                      "--name", "merged", "--quiet"])  # fmt: skip
    assert "(coco " in merged and "random_net " in merged
    data = _labels(ds / "merged.json")
    assert sum(x.get("pseudo", False) for x in data["samples"]) == n
    assert {x["source"] for x in data["samples"]} == {"coco", "random_net"}  # their own tags
    cfg.data.train_split, cfg.data.val_split = "merged", "coco_val"
    result = train(cfg, progress=False, max_steps=3)
    assert result.last_metrics["step"] == 3 and np.isfinite(result.last_metrics["train/loss"])
    assert 0.0 <= result.last_metrics["val/AP"] <= 1.0
    shutil.rmtree(ds / "imgs")  # a merged set without its crops is refused clearly
    with pytest.raises(AssertionError, match="does not exist"):
        run_cli(["data", "merge", ds / "coco_val.json", ds / "pseudo.json", "--out", tmp_path / "x"])  # fmt: skip


@pytest.mark.slow
def test_pseudo_label_with_the_app_core_ml_model(tmp_path):
    """`data pseudo-label --weights pkmodel.mlmodelc`: the app's network (pkmodel's Core ML
    runner) labels mmpose's four COCO photos, scored against their annotations."""
    ann = shared_data("mmpose_coco", "test_coco.json")
    app_model = shared_data("posekit_app", "pkmodel.mlmodelc")
    images = tmp_path / "photos"
    images.mkdir()
    for src in sorted(ann.parent.glob("*.jpg")):
        (images / src.name).symlink_to(src)
    out = run_cli(["data", "pseudo-label", images, "--weights", app_model, "--out", tmp_path / "ds",
                   "--quiet", "--joint-threshold", 0.1, "--person-threshold", 0.1, "--min-joints", 5,
                   "--annotations", ann, "--set", "prepare.workers=1"])  # fmt: skip
    assert "4 images: 4 predicted (4 run now, 0 from the cache), 0 unreadable" in out
    data = _labels(tmp_path / "ds" / "pseudo.json")
    assert Path(data["pseudo_label"]["weights"]).resolve() == app_model.resolve()
    assert 2 <= len(data["samples"]) == data["pseudo_label"]["kept"] <= 4  # 3 measured
    report = json.loads((tmp_path / "ds" / "pseudo" / "pseudo.report.json").read_text())
    # One pose per photo against every annotated person (14): AP 0.062 measured.
    assert report["scores"]["images_scored"] == 4 and 0.03 < report["scores"]["all"]["AP"] < 0.2


def test_split_and_merge_replace_their_own_outputs_and_nothing_else(tiny_prepared, tmp_path):
    """`data split all.json` beside prepare-coco's train.json / val.json replaced them (the old
    val split and its crops' labels lost); now only an earlier split of the same input, or an
    earlier merge, is replaced without --force."""
    ds = tmp_path / "ds"
    shutil.copytree(tiny_prepared, ds)
    shutil.copy(ds / "train.json", ds / "all.json")
    before = {n: (ds / n).read_bytes() for n in ("train.json", "val.json")}
    args = ["data", "split", str(ds / "all.json"), "--val-ratio", "0.25"]
    from typer.testing import CliRunner

    from pkmodel.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output == (
        f"error: {ds / 'train.json'} exists and is not a split of {ds / 'all.json'}: pass "
        "--force to replace it, or write elsewhere\n"
    )
    assert {n: (ds / n).read_bytes() for n in before} == before
    run_cli([*args, "--force"])
    first = _labels(ds / "val.json")
    assert first["split_of"]["labels"] == str((ds / "all.json").resolve())
    run_cli([*args, "--seed", "3"])  # an earlier split of the same labels: replaced
    assert _labels(ds / "val.json")["split_of"]["seed"] == 3

    merge = ["data", "merge", str(ds / "all.json"), "--out", str(ds), "--name", "val"]
    result = CliRunner().invoke(app, merge)
    assert result.exit_code == 2 and "val.json exists and is not an earlier merge" in result.output
    assert not (ds / "imgs" / "val" / "all").exists()  # refused before any crop was placed
    run_cli([*merge, "--force"])
    assert "merged_from" in _labels(ds / "val.json")
    run_cli(merge)  # an earlier merge: replaced


def test_render_refuses_a_picture_name_it_cannot_write_as_a_sheet(tiny_prepared, tmp_path):
    """`data render --out r.gif` made a folder named r.gif: only .png and .jpg are sheets."""
    from pkmodel.datatools.render import render_labels

    for name in ("r.gif", "r.webp"):
        with pytest.raises(PkmodelError) as e:
            render_labels(tiny_prepared / "val.json", tmp_path / name, count=2)
        assert str(e.value).startswith(f"--out {tmp_path / name}: a contact sheet is written as")
        assert not (tmp_path / name).exists()
    (tmp_path / "shots.v1.png").mkdir()  # an existing folder is a folder, whatever its name
    render_labels(tiny_prepared / "val.json", tmp_path / "sheet.png", count=2)
    assert (tmp_path / "sheet.png").is_file()


class MarkerRunner:
    """Stands in for a network: every joint at the red marker in what it is shown, and whether
    the picture it was shown (inside the letterbox's black bars) was taller than wide."""

    input_size = 64

    def __init__(self):
        self.tall = []

    def __call__(self, batch):
        x = np.asarray(batch)
        x = x.transpose(0, 2, 3, 1) if x.shape[1] == 3 else x
        n = len(x)
        kp = np.zeros((n, NUM_JOINTS, 2))
        for i in range(n):
            red = (x[i, ..., 0] > 0.5) & (x[i, ..., 1] < -0.5) & (x[i, ..., 2] < -0.5)
            rows, cols = np.nonzero(red)
            kp[i] = [cols.mean() + 0.5, rows.mean() + 0.5]
            rows, cols = np.nonzero((x[i] > -0.9).any(-1))  # the picture, not the black bars
            self.tall.append(bool(np.ptp(rows) > np.ptp(cols)))
        scores = np.full((n, NUM_JOINTS), 0.9)
        return {"keypoints": kp, "scores": scores, "found": scores > 0.2,
                "center_scores": np.ones(n), "centers": kp[:, 0]}  # fmt: skip


def test_pseudo_label_shows_the_network_a_phone_photo_upright_and_labels_its_stored_pixels(tmp_path):  # fmt: skip
    """A phone's upright photo is stored on its side and tagged 'rotate 90' (EXIF 6): the
    network is shown it as a viewer shows it, and the labels are in the stored pixels, where
    prepare-coco reads them. An untagged copy is shown as stored."""
    import io

    from PIL import Image

    from pkmodel.config import PrepareConfig, PseudoLabelConfig
    from pkmodel.datatools.pseudo import pseudo_label

    stored = np.full((40, 80, 3), 128, np.uint8)
    stored[10:16, 60:66] = (255, 0, 0)  # the marker, centred at (63, 13) in the stored pixels
    folder = tmp_path / "images"
    folder.mkdir()
    for name, orientation in (("photo.jpg", 6), ("plain.jpg", None)):
        exif = Image.Exif()
        if orientation:
            exif[0x0112] = orientation
        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, "JPEG", quality=100, exif=exif.tobytes())
        (folder / name).write_bytes(buffer.getvalue())
    runner = MarkerRunner()
    params = PseudoLabelConfig(joint_threshold=0.3, person_threshold=0.5, min_joints=8,
                               refine_passes=0, source="marker")  # fmt: skip
    pseudo_label(folder, runner, tmp_path / "ds", "pl", params, PrepareConfig(crop_size=32, workers=1),
                 {"weights": "marker"}, batch_size=4, progress=False)  # fmt: skip
    assert runner.tall == [True, False]  # photo.jpg turned upright, plain.jpg as stored
    cache = json.loads((tmp_path / "ds/pseudo/pl.predictions.json").read_text())
    for name in ("photo.jpg", "plain.jpg"):
        done = cache["images"][name]
        assert done["size"] == [80, 40]
        np.testing.assert_allclose(done["keypoints"], [[63, 13]] * NUM_JOINTS, atol=1.5)
    assert cache["identity"]["photos_as_shown"] is True  # caches made before are not used


def test_pseudo_label_of_unreadable_images_only_keeps_the_earlier_labels(tmp_path):
    """A folder none of whose images can be read (a 0-byte .jpg, a text file named .png) is an
    error, as for `pkmodel predict`: it replaced an earlier run's labels with an empty file and
    deleted its crops. The earlier labels, crops and cache stay as they were."""
    from PIL import Image

    from pkmodel.config import PrepareConfig, PseudoLabelConfig
    from pkmodel.datatools.pseudo import pseudo_label

    good, bad, ds = tmp_path / "good", tmp_path / "allbad", tmp_path / "ds"
    good.mkdir()
    bad.mkdir()
    picture = np.full((40, 80, 3), 128, np.uint8)
    picture[10:16, 60:66] = (255, 0, 0)  # MarkerRunner's joints
    for i in range(3):
        Image.fromarray(picture).save(good / f"{i}.png")
    (bad / "a.jpg").write_bytes(b"")
    (bad / "b.png").write_text("not a picture")
    params = PseudoLabelConfig(joint_threshold=0.3, person_threshold=0.5, min_joints=8,
                               refine_passes=0, source="marker")  # fmt: skip
    prep = PrepareConfig(crop_size=32, workers=1)

    def run(folder: Path, out: Path):
        return pseudo_label(folder, MarkerRunner(), out, "pl", params, prep, {"weights": "marker"}, progress=False)  # fmt: skip

    assert run(good, ds).kept == 3
    before = {p: p.read_bytes() for p in sorted(ds.rglob("*")) if p.is_file()}
    assert len([p for p in before if p.parent == ds / "imgs/pl"]) == 3
    with pytest.raises(PkmodelError) as err:
        run(bad, ds)
    assert str(err.value) == (
        f"none of the 2 image(s) in {bad} could be loaded (e.g. {bad / 'a.jpg'}: cannot decode "
        f"(not an image format Pillow reads)); {ds / 'pl.json'} was not written"
    )
    assert {p: p.read_bytes() for p in sorted(ds.rglob("*")) if p.is_file()} == before
    with pytest.raises(PkmodelError, match="none of the 2 image"):
        run(bad, tmp_path / "new" / "ds")
    assert not (tmp_path / "new" / "ds").exists()  # a run that wrote nothing leaves no folder
    # through the CLI: one line, exit 2
    from typer.testing import CliRunner

    from pkmodel.cli import app

    weights = Path(__file__).resolve().parents[1] / "assets" / "trained_96.pt"
    result = CliRunner().invoke(app, ["data", "pseudo-label", str(bad), "--weights", str(weights),
                                      "--out", str(ds), "--name", "pl", "--device", "cpu", "--quiet"])  # fmt: skip
    assert result.exit_code == 2 and result.output.startswith("error: none of the 2 image(s) in ")
    assert "Traceback" not in result.output and len(result.output.splitlines()) == 1
    assert {p: p.read_bytes() for p in sorted(ds.rglob("*")) if p.is_file()} == before
