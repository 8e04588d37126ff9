import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.common.geometry import crop_to_image
from pkmodel.config import PrepareConfig
from pkmodel.data.labels import read_labels
from pkmodel.data.prepare import (
    DROP_REASONS,
    load_coco_people,
    prepare_split,
)
from tests.conftest import run_cli, shared_data

SETS = {
    "coco_mini": ("coco_mini/train2017", "coco_mini/annotations/person_keypoints_train2017.json"),
    "mmpose_coco": ("mmpose_coco", "mmpose_coco/test_coco.json"),
}


def source(name: str) -> tuple[Path, Path]:
    images, ann = SETS[name]
    return shared_data(images), shared_data(ann)


def params(**kw) -> PrepareConfig:
    base = {"crop_size": 64, "workers": 1}
    return PrepareConfig(**{**base, **kw})


def expected_counts(ann_file: Path, p: PrepareConfig) -> tuple[set, dict[str, int]]:
    """The filters re-implemented from the raw JSON with plain loops (first reason wins)."""
    data = json.loads(ann_file.read_text())
    people: dict[int, int] = {}
    for a in data["annotations"]:
        if not a.get("iscrowd", 0):
            people[a["image_id"]] = people.get(a["image_id"], 0) + 1
    kept, dropped = set(), dict.fromkeys(DROP_REASONS, 0)
    for a in data["annotations"]:
        labelled = sum(1 for v in a["keypoints"][2::3] if v > 0)
        if a.get("iscrowd", 0) and p.skip_crowd:
            dropped["crowd"] += 1
        elif p.max_people and people.get(a["image_id"], 0) > p.max_people:
            dropped["too_many_people"] += 1
        elif labelled < p.min_keypoints:
            dropped["few_keypoints"] += 1
        elif a["area"] < p.min_area:
            dropped["small_area"] += 1
        else:
            kept.add((a["image_id"], a["id"]))
    return kept, dropped


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """coco_mini (no people limit, so most people are kept) and mmpose_coco, 64-pixel crops."""
    out = tmp_path_factory.mktemp("prepared")
    for name in SETS:
        images, ann = source(name)
        prepare_split(name, images, ann, out, params(max_people=0), progress=False)
    return out


@pytest.mark.parametrize("name", list(SETS))
@pytest.mark.parametrize(
    "filters",
    [{}, {"max_people": 0}, {"min_keypoints": 10, "min_area": 5000.0, "max_people": 3},
     {"skip_crowd": False, "min_keypoints": 0, "min_area": 0.0, "max_people": 0}],
)  # fmt: skip
def test_counts_match_the_filters_exactly(tmp_path, name, filters):
    images, ann = source(name)
    p = params(**filters)
    summary = prepare_split("s", images, ann, tmp_path, p, progress=False)
    kept, dropped = expected_counts(ann, p)
    assert summary.kept == len(kept)
    assert summary.dropped == dropped
    assert summary.annotations == sum(dropped.values()) + len(kept)
    labels = read_labels(tmp_path / "s.json")
    assert {(s["image_id"], s["ann_id"]) for s in labels["samples"]} == kept
    assert labels["summary"]["dropped"] == dropped and labels["summary"]["kept"] == len(kept)
    assert len(list((tmp_path / "imgs" / "s").iterdir())) == len(kept)


def test_coco_mini_default_filter_figures(tmp_path):
    # The README of the sample data: 172 people, 86 with keypoints, 5 crowd.
    images, ann = source("coco_mini")
    summary = prepare_split("s", images, ann, tmp_path, params(max_people=0), progress=False)
    assert summary.dropped["crowd"] == 5
    assert summary.kept + summary.dropped["few_keypoints"] == 172 - 5
    assert summary.kept == 80  # 86 with keypoints, 6 of them with fewer than 3 labelled joints


@pytest.mark.parametrize("name", list(SETS))
def test_every_kept_sample_maps_back_to_the_annotation(prepared, name):
    _, ann = source(name)
    raw = {a["id"]: a for a in json.loads(ann.read_text())["annotations"]}
    labels = read_labels(prepared / f"{name}.json")
    assert labels["schema"] == "pkmodel.prepared" and labels["version"] == 1
    cs = labels["crop_size"]
    worst = 0.0
    for s in labels["samples"]:
        a = raw[s["ann_id"]]
        orig = np.array(a["keypoints"], float).reshape(17, 3)
        kp = np.array(s["keypoints"])
        assert np.array_equal(kp[:, 2], orig[:, 2])
        vis = orig[:, 2] > 0
        back = crop_to_image(kp[:, :2], s["crop_box"], cs)
        worst = max(worst, np.abs(back[vis] - orig[vis, :2]).max())
        assert np.all(kp[~vis] == 0)
        x, y, w, h = a["bbox"]
        center = crop_to_image(np.array(s["center"]), s["crop_box"], cs)
        assert np.allclose(center, [x + w / 2, y + h / 2], atol=0.5)
        bbox = crop_to_image(np.array(s["bbox"][:2]), s["crop_box"], cs)
        assert np.allclose(bbox, [x, y], atol=0.5)
        # The crop is square, centred on the bbox, expand_ratio x the longer side of the bbox
        # grown (about its center) to hold every labelled joint, so no joint is cut off.
        x0, y0, side = s["crop_box"]
        half = np.maximum(
            [w / 2, h / 2], np.abs(orig[vis, :2] - [x + w / 2, y + h / 2]).max(0, initial=0)
        )
        assert side >= 2 * half.max() * labels["expand_ratio"] - 1e-6
        assert side < 2 * half.max() * labels["expand_ratio"] + 1
        assert ((back[vis] >= [x0, y0]) & (back[vis] < [x0 + side, y0 + side])).all()
        assert abs(x0 + side / 2 - (x + w / 2)) <= 0.5 and abs(y0 + side / 2 - (y + h / 2)) <= 0.5
        assert (prepared / s["image"]).is_file()
        assert s["file_name"] and s["area"] == a["area"]
    assert worst < 0.5
    assert worst < 0.02  # in fact only the 1e-3 crop-pixel rounding of the labels remains


def test_others_map_back_and_stay_inside_the_crop(prepared):
    _, ann = source("mmpose_coco")
    raw = json.loads(ann.read_text())["annotations"]
    labels = read_labels(prepared / "mmpose_coco.json")
    cs = labels["crop_size"]
    with_others = [s for s in labels["samples"] if s["others"]]
    assert len(with_others) >= 4  # the skiers and the baseball players overlap
    for s in with_others:
        same_image = [a for a in raw if a["image_id"] == s["image_id"] and a["id"] != s["ann_id"]]
        for o in s["others"]:
            kp = np.array(o["keypoints"])
            vis = kp[:, 2] > 0
            assert np.all((kp[vis, :2] >= 0) & (kp[vis, :2] < cs))
            back = crop_to_image(kp[:, :2], s["crop_box"], cs)
            # It is one of the other annotations of the image, joint for joint.
            errs = []
            for a in same_image:
                orig = np.array(a["keypoints"], float).reshape(17, 3)
                ok = np.array_equal(orig[vis, 2], kp[vis, 2]) and vis.any()
                errs.append(np.abs(back[vis] - orig[vis, :2]).max() if ok else np.inf)
            assert min(errs) < 0.5


def test_crop_pixels_are_the_original_pixels_the_box_says(tmp_path):
    """The crop content agrees with crop_to_image: an independent warp fits best unshifted."""
    import cv2

    images, ann = source("mmpose_coco")
    prepare_split("s", images, ann, tmp_path, params(crop_size=96), progress=False)
    labels = read_labels(tmp_path / "s.json")
    for s in labels["samples"][:6]:
        orig = cv2.imread(str(images / s["file_name"])).astype(np.float32)
        x0, y0, side = s["crop_box"]
        crop = cv2.imread(str(tmp_path / s["image"])).astype(np.float32)
        k = side / 96
        blur = cv2.GaussianBlur(orig, (0, 0), 0.5 * k)  # roughly what INTER_AREA averages

        def error(du, dv, blur=blur, crop=crop, k=k, x0=x0, y0=y0):
            # Crop pixel center u + 0.5 is original x0 + (u + 0.5) k; cv2 centers are integers.
            m = np.array([[k, 0, x0 + (0.5 + du) * k - 0.5], [0, k, y0 + (0.5 + dv) * k - 0.5]])
            ref = cv2.warpAffine(blur, m, (96, 96), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR)
            return np.abs(crop - ref).mean()

        shifts = [-0.5, -0.25, 0.0, 0.25, 0.5]  # in crop pixels
        assert shifts[int(np.argmin([error(d, 0) for d in shifts]))] == 0.0, s["image"]
        assert shifts[int(np.argmin([error(0, d) for d in shifts]))] == 0.0, s["image"]
        assert error(0, 0) < 8 < error(2, 0)


def test_pool_and_inline_give_the_same_labels(tmp_path):
    images, ann = source("mmpose_coco")
    prepare_split("s", images, ann, tmp_path / "a", params(workers=1), progress=False)
    prepare_split("s", images, ann, tmp_path / "b", params(workers=2), progress=False)
    a, b = (read_labels(tmp_path / d / "s.json") for d in "ab")
    assert a["samples"] == b["samples"] and len(a["samples"]) == 12
    for s in a["samples"]:
        assert (tmp_path / "a" / s["image"]).read_bytes() == (
            tmp_path / "b" / s["image"]
        ).read_bytes()


def test_extra_image_fields_are_copied(tmp_path):
    images, ann = source("mmpose_coco")
    data = json.loads(ann.read_text())
    data["images"][0]["intrinsics"] = [500.0, 500.0, 320.0, 212.5]
    data["images"][0]["depth_file"] = "depth/785.png"
    ann = next(a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"])
    ann["keypoints_3d"] = [[0.0, 0.0, 1.0]] * 17
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    prepare_split("s", images, path, tmp_path, params(), progress=False)
    samples = read_labels(tmp_path / "s.json")["samples"]
    first = [s for s in samples if s["image_id"] == data["images"][0]["id"]]
    assert first and first[0]["extra"] == {"intrinsics": [500.0, 500.0, 320.0, 212.5],
                                           "depth_file": "depth/785.png",
                                           "keypoints_3d": [[0.0, 0.0, 1.0]] * 17}  # fmt: skip
    assert all("extra" not in s for s in samples if s["image_id"] != data["images"][0]["id"])


# --- resuming ----------------------------------------------------------------------------------


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_rerun_reuses_finished_crops(tmp_path):
    images, ann = source("mmpose_coco")
    first = prepare_split("s", images, ann, tmp_path, params(), progress=False)
    crops = tmp_path / "imgs" / "s"
    before = _mtimes(crops)
    labels = (tmp_path / "s.json").read_text()
    again = prepare_split("s", images, ann, tmp_path, params(), progress=False)
    assert (again.crops_written, again.crops_reused) == (0, first.kept) == (0, 12)
    assert again.images_read == 0
    assert _mtimes(crops) == before
    assert (tmp_path / "s.json").read_text() == labels
    # A deleted crop and a damaged one (other size than recorded) are made again, only them.
    names = sorted(before)
    (crops / names[0]).unlink()
    (crops / names[1]).write_bytes(b"\xff\xd8 half a jpeg")
    third = prepare_split("s", images, ann, tmp_path, params(), progress=False)
    assert (third.crops_written, third.crops_reused) == (2, 10)
    after = _mtimes(crops)
    assert {n for n in names if after[n] != before[n]} == set(names[:2])
    assert (tmp_path / "s.json").read_text() == labels
    assert not [p for p in crops.iterdir() if p.name.startswith(".")]  # no temp files left


def test_other_settings_do_not_reuse_crops(tmp_path):
    images, ann = source("mmpose_coco")
    prepare_split("s", images, ann, tmp_path, params(), progress=False)
    bigger = prepare_split("s", images, ann, tmp_path, params(crop_size=72), progress=False)
    assert (bigger.crops_written, bigger.crops_reused) == (12, 0)
    wider = prepare_split("s", images, ann, tmp_path, params(crop_size=72, expand_ratio=1.5), progress=False)  # fmt: skip
    assert (wider.crops_written, wider.crops_reused) == (12, 0)


def test_interrupted_run_resumes_from_its_partial_labels(tmp_path):
    images, ann = source("mmpose_coco")
    prepare_split("s", images, ann, tmp_path, params(), progress=False)
    data = json.loads((tmp_path / "s.json").read_text())
    # What a run killed half-way leaves: the periodic partial labels and no final labels.
    data["samples"] = data["samples"][:5]
    (tmp_path / ".s.partial.json").write_text(json.dumps(data))
    (tmp_path / "s.json").unlink()
    resumed = prepare_split("s", images, ann, tmp_path, params(), progress=False)
    assert (resumed.crops_written, resumed.crops_reused) == (7, 5)
    assert not (tmp_path / ".s.partial.json").exists()
    assert len(read_labels(tmp_path / "s.json")["samples"]) == 12


def test_partial_labels_are_written_during_a_long_run(tmp_path, monkeypatch):
    import pkmodel.data.prepare as prep

    images, ann = source("mmpose_coco")
    seen = []
    original = prep.write_labels

    def spy(path, header, samples):
        samples = list(samples)
        seen.append((Path(path).name, header.get("complete"), len(samples)))
        original(path, header, samples)

    monkeypatch.setattr(prep, "write_labels", spy)
    prepare_split("s", images, ann, tmp_path, params(), progress=False, checkpoint_every_s=0)
    assert [s for s in seen if s[0] == ".s.partial.json"]
    assert all(c is False for name, c, _ in seen if name == ".s.partial.json")
    assert seen[-1] == ("s.json", None, 12)


# --- bad input ---------------------------------------------------------------------------------


@pytest.fixture
def mmpose_copy(tmp_path):
    """Links to the 4 mmpose images in a folder the test may damage, and the JSON."""
    images, ann = source("mmpose_coco")
    folder = tmp_path / "images"
    folder.mkdir()
    for p in images.glob("*.jpg"):
        os.symlink(p, folder / p.name)
    return folder, json.loads(ann.read_text())


def _kept_on(data: dict, file_name: str) -> int:
    image_id = next(i["id"] for i in data["images"] if i["file_name"] == file_name)
    return sum(1 for a in data["annotations"] if a["image_id"] == image_id
               and sum(v > 0 for v in a["keypoints"][2::3]) >= 3)  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "reason", "message"),
    [
        ("delete", "missing_image", "file does not exist"),
        ("truncate", "unreadable_image", "cannot decode"),
        ("garbage", "unreadable_image", "cannot decode"),
        ("resize", "unreadable_image", "the annotations say"),
    ],
)
def test_bad_images_are_skipped_counted_and_listed(tmp_path, mmpose_copy, damage, reason, message):
    folder, data = mmpose_copy
    victim = "000000196141.jpg"
    real = (folder / victim).resolve()
    (folder / victim).unlink()
    if damage == "truncate":
        blob = real.read_bytes()
        (folder / victim).write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        (folder / victim).write_bytes(b"this is not an image" * 100)
    elif damage == "resize":
        shutil.copy(real, folder / victim)
        next(i for i in data["images"] if i["file_name"] == victim)["width"] += 10
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    summary = prepare_split("s", folder, ann, tmp_path / "out", params(), progress=False)
    lost = _kept_on(data, victim)
    assert lost >= 3
    assert summary.dropped[reason] == lost
    assert summary.kept == 12 - lost
    assert len(summary.unreadable) == 1 and summary.unreadable[0]["file"] == victim
    assert message in summary.unreadable[0]["reason"]
    labels = read_labels(tmp_path / "out" / "s.json")
    assert labels["summary"]["unreadable_images"] == summary.unreadable
    assert len(labels["samples"]) == 12 - lost
    assert victim in summary.format()


def _broken(data: dict, how: str) -> object:
    d = json.loads(json.dumps(data))
    a, i = d["annotations"][3], d["images"][1]
    if how == "no_images":
        del d["images"]
    elif how == "no_annotations":
        del d["annotations"]
    elif how == "images_not_list":
        d["images"] = {"a": 1}
    elif how == "top_level_list":
        return [d]
    elif how == "no_keypoints":
        del a["keypoints"]
    elif how == "no_bbox":
        del a["bbox"]
    elif how == "no_image_id":
        del a["image_id"]
    elif how == "no_id":
        del a["id"]
    elif how == "short_keypoints":
        a["keypoints"] = a["keypoints"][:-3]
    elif how == "text_keypoints":
        a["keypoints"][4] = "7"
    elif how == "bad_bbox":
        a["bbox"] = [1, 2, 3]
    elif how == "unknown_image":
        a["image_id"] = 123456789
    elif how == "duplicate_ann":
        a["id"] = d["annotations"][2]["id"]
    elif how == "no_file_name":
        del i["file_name"]
    elif how == "no_width":
        del i["width"]
    elif how == "ann_not_object":
        d["annotations"][3] = [1, 2]
    return d


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no_images", "has no 'images' list"),
        ("no_annotations", "has no 'annotations' list"),
        ("images_not_list", "has a non-list 'images' list"),
        ("top_level_list", "its top level is a list"),
        ("no_keypoints", "annotations[3] (id 1202706) has no 'keypoints'"),
        ("no_bbox", "annotations[3] (id 1202706) has no 'bbox'"),
        ("no_image_id", "annotations[3] (id 1202706) has no 'image_id'"),
        ("no_id", "annotations[3] has no 'id'"),
        ("short_keypoints", "'keypoints' has 48 values, expected 51"),
        ("text_keypoints", "'keypoints' must be a list of numbers"),
        ("bad_bbox", "'bbox' must be 4 numbers, got 3 values"),
        ("unknown_image", "refers to image_id 123456789, which is not in 'images'"),
        ("duplicate_ann", "repeats annotation id"),
        ("no_file_name", "images[1] has no 'file_name'"),
        ("no_width", "images[1] has no 'width'"),
        ("ann_not_object", "annotations[3] is not a JSON object"),
    ],
)
def test_malformed_annotation_file_is_one_error_naming_file_and_key(tmp_path, how, message):
    _, ann = source("mmpose_coco")
    data = json.loads(ann.read_text())
    assert data["annotations"][3]["id"] == 1202706  # the id the messages name
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_broken(data, how)))
    with pytest.raises(PkmodelError) as info:
        prepare_split("s", ann.parent, path, tmp_path / "out", params(), progress=False)
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text
    assert not (tmp_path / "out" / "s.json").exists()


@pytest.mark.parametrize("content", [b"{not json", b"", b"\x89PNG\r\n\x1a\n binary"])
def test_not_json_is_one_error(tmp_path, content):
    path = tmp_path / "a.json"
    path.write_bytes(content)
    with pytest.raises(PkmodelError, match=r"a\.json is not valid JSON|a\.json cannot be read"):
        load_coco_people(path)


def test_missing_files_and_folders(tmp_path):
    images, ann = source("mmpose_coco")
    with pytest.raises(PkmodelError, match="annotation file .*nope.json does not exist"):
        prepare_split("s", images, tmp_path / "nope.json", tmp_path, params(), progress=False)
    with pytest.raises(PkmodelError, match="image folder .*nowhere does not exist"):
        prepare_split("s", tmp_path / "nowhere", ann, tmp_path, params(), progress=False)
    with pytest.raises(PkmodelError, match="split name"):
        prepare_split("../x", images, ann, tmp_path, params(), progress=False)
    with pytest.raises(PkmodelError, match="prepare.crop_size"):
        prepare_split("s", images, ann, tmp_path, params(crop_size=0), progress=False)


# --- the command -------------------------------------------------------------------------------


def test_cli_prepare_coco_and_its_errors(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pkmodel.cli import app

    monkeypatch.chdir(tmp_path)
    images, ann = source("mmpose_coco")
    out = run_cli(["prepare-coco", "--split", "val", "--images", images, "--annotations", ann,
                   "--out", tmp_path / "ds", "--workers", 1, "--set", "prepare.crop_size=48"])  # fmt: skip
    assert "14 annotations -> 12 samples" in out and "few_keypoints 2" in out
    labels = read_labels(tmp_path / "ds" / "val.json")
    assert labels["crop_size"] == 48 and labels["split"] == "val"
    result = CliRunner().invoke(app, ["prepare-coco", "--split", "extra", "--out", "ds"])
    assert result.exit_code == 2 and "pass --images and --annotations" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    result = CliRunner().invoke(
        app, ["prepare-coco", "--images", str(images), "--annotations", str(bad), "--out", "ds"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith("error: ") and "bad.json is not valid JSON" in result.output


def test_a_split_that_keeps_nobody_is_an_error_and_the_old_labels_stay(tiny_synthetic, tmp_path):
    ann = tiny_synthetic / "annotations/person_keypoints_val.json"
    first = prepare_split("val", tiny_synthetic / "val", ann, tmp_path, params(), progress=False)
    assert first.kept > 0
    before = (tmp_path / "val.json").read_bytes()
    (tmp_path / "empty").mkdir()
    with pytest.raises(PkmodelError) as err:
        prepare_split("val", tmp_path / "empty", ann, tmp_path, params(), progress=False)
    message = str(err.value)
    assert message.startswith(f"split 'val': no person was kept from {ann} (")
    assert "missing_image" in message and "was not written" in message
    assert (tmp_path / "val.json").read_bytes() == before
    # Callers that handle an empty result themselves get the empty labels.
    empty = prepare_split("e", tmp_path / "empty", ann, tmp_path, params(), False, allow_empty=True)
    assert empty.kept == 0 and read_labels(empty.labels)["samples"] == []
