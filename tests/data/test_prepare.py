import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pkmodel.common.errors import PkmodelError
from pkmodel.common.geometry import crop_to_image, pixel_crop_box
from pkmodel.common.skeleton import NUM_JOINTS
from pkmodel.config import PrepareConfig
from pkmodel.data.labels import read_labels
from pkmodel.data.prepare import (
    DROP_REASONS,
    bad_coordinates,
    filter_reasons,
    load_coco_people,
    person_box,
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
    """The filters re-implemented from the raw JSON with plain loops (first reason wins; the
    sample files have no bad coordinates). Crowding: other non-crowd people with a labelled
    joint inside the person's crop box (the box as prepare computes it)."""
    data = json.loads(ann_file.read_text())
    kept, dropped = set(), dict.fromkeys(DROP_REASONS, 0)
    for a in data["annotations"]:
        joints = [a["keypoints"][i : i + 3] for i in range(0, 51, 3)]
        labelled = sum(1 for _, _, v in joints if v > 0)
        if a.get("iscrowd", 0) and p.skip_crowd:
            dropped["crowd"] += 1
        elif labelled < p.min_keypoints:
            dropped["few_keypoints"] += 1
        elif a["area"] < p.min_area:
            dropped["small_area"] += 1
        elif p.max_people and crowding(data, a, p) > p.max_people:
            dropped["too_many_people"] += 1
        else:
            kept.add((a["image_id"], a["id"]))
    return kept, dropped


def crowding(data: dict, a: dict, p: PrepareConfig) -> int:
    kp = np.array(a["keypoints"], float).reshape(17, 3)
    x0, y0, side = pixel_crop_box(person_box(a["bbox"], kp, p.cover_keypoints), p.expand_ratio)
    count = 0
    for o in data["annotations"]:
        if o["image_id"] != a["image_id"] or o["id"] == a["id"] or o.get("iscrowd", 0):
            continue
        joints = [o["keypoints"][i : i + 3] for i in range(0, 51, 3)]
        count += any(v > 0 and x0 <= x < x0 + side and y0 <= y < y0 + side for x, y, v in joints)
    return count


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
    summary = prepare_split("s", images, ann, tmp_path, params(), progress=False)
    assert summary.dropped["crowd"] == 5
    assert summary.kept + summary.dropped["few_keypoints"] == 172 - 5
    assert summary.kept == 86  # every person with keypoints
    three = prepare_split("t", images, ann, tmp_path, params(min_keypoints=3), progress=False)
    assert three.kept == 80  # 6 of them have fewer than 3 labelled joints


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
    assert again.images_decoded == 0
    assert _mtimes(crops) == before
    assert (tmp_path / "s.json").read_text() == labels
    # A deleted crop, a damaged one (other size than recorded) and one overwritten with as
    # many other bytes are made again, only them.
    names = sorted(before)
    (crops / names[0]).unlink()
    (crops / names[1]).write_bytes(b"\xff\xd8 half a jpeg")
    size = (crops / names[2]).stat().st_size
    (crops / names[2]).write_bytes(b"\xff" * size)
    third = prepare_split("s", images, ann, tmp_path, params(), progress=False)
    assert (third.crops_written, third.crops_reused) == (3, 9)
    after = _mtimes(crops)
    assert {n for n in names if after[n] != before[n]} == set(names[:3])
    assert (tmp_path / "s.json").read_text() == labels
    assert not [p for p in crops.iterdir() if p.name.startswith(".")]  # no temp files left


def test_labels_without_crop_and_source_records_reuse_nothing(tmp_path):
    images, ann = source("mmpose_coco")
    prepare_split("s", images, ann, tmp_path, params(), progress=False)
    data = json.loads((tmp_path / "s.json").read_text())
    for s in data["samples"]:
        del s["crop_sha1"], s["source_image"]
    (tmp_path / "s.json").write_text(json.dumps(data))
    again = prepare_split("s", images, ann, tmp_path, params(), progress=False)
    assert (again.crops_written, again.crops_reused) == (12, 0)


@pytest.fixture
def mmpose_files(tmp_path):
    """Copies of the 4 mmpose images, which a test may replace, and the annotation file."""
    images, ann = source("mmpose_coco")
    folder = tmp_path / "images"
    folder.mkdir()
    for p in images.glob("*.jpg"):
        shutil.copy2(p, folder / p.name)
    return folder, ann


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_labels_record_each_crop_and_its_source_image(tmp_path, mmpose_files):
    folder, ann = mmpose_files
    prepare_split("s", folder, ann, tmp_path / "out", params(), progress=False)
    samples = read_labels(tmp_path / "out" / "s.json")["samples"]
    assert len(samples) == 12
    for s in samples:
        image, crop = folder / s["file_name"], tmp_path / "out" / s["image"]
        assert s["source_image"] == {"bytes": image.stat().st_size,
                                     "mtime_ns": image.stat().st_mtime_ns, "sha1": _sha1(image)}  # fmt: skip
        assert (s["crop_bytes"], s["crop_sha1"]) == (crop.stat().st_size, _sha1(crop))


SOLO = "000000000785.jpg"  # the mmpose image with one kept person (ann 442619)


def _change(path: Path, how: str) -> None:
    from PIL import Image, ImageOps

    st = path.stat()
    if how == "replaced":  # another picture of the same size
        with Image.open(path) as im:
            ImageOps.mirror(im).save(path, quality=90)
    elif how == "same_size_and_time":  # other bytes, same length, modification time put back
        blob = bytearray(path.read_bytes())
        assert blob[6:11] == b"JFIF\0"
        blob[15] ^= 1  # the JFIF header's horizontal density: the pixels stay the same
        path.write_bytes(bytes(blob))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    elif how == "touched":  # same bytes, new modification time
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    elif how == "resized":
        with Image.open(path) as im:
            im.resize((im.width // 2, im.height // 2)).save(path, quality=90)
    elif how == "deleted":
        path.unlink()


@pytest.mark.parametrize(
    ("how", "written", "reused", "reason"),
    [
        ("replaced", 1, 11, None),
        ("same_size_and_time", 1, 11, None),
        ("touched", 0, 12, None),
        ("resized", 0, 11, "unreadable_image"),
        ("deleted", 0, 11, "missing_image"),
    ],
)
def test_a_rerun_never_reuses_crops_of_a_changed_image(tmp_path, mmpose_files, how, written, reused, reason):  # fmt: skip
    folder, ann = mmpose_files
    out = tmp_path / "out"
    prepare_split("s", folder, ann, out, params(), progress=False)
    solo = next(s for s in read_labels(out / "s.json")["samples"] if s["file_name"] == SOLO)
    assert solo["ann_id"] == 442619
    _change(folder / SOLO, how)
    again = prepare_split("s", folder, ann, out, params(), progress=False)
    assert (again.crops_written, again.crops_reused) == (written, reused)
    crops = "crop" if written == 1 else "crops"
    assert f"({written} {crops} written, {reused} reused" in again.format()
    assert again.images_decoded == written
    if reason:
        assert again.dropped[reason] == 1 and again.kept == 11
        assert [u["file"] for u in again.unreadable] == [SOLO]
    # Whatever happened, the result is exactly that of a fresh run on the images as they are.
    fresh = prepare_split("s", folder, ann, tmp_path / "fresh", params(), progress=False)
    assert fresh.crops_written == again.kept
    labels, fresh_labels = read_labels(out / "s.json"), read_labels(tmp_path / "fresh" / "s.json")

    # but for the crop's name: a crop with new pixels never overwrites the one the earlier
    # labels list (.b.jpg beside it), and the earlier crop goes once the new labels exist
    def unnamed(samples: list[dict]) -> list[dict]:
        return [{k: v for k, v in s.items() if k != "image"} for s in samples]

    assert unnamed(labels["samples"]) == unnamed(fresh_labels["samples"])
    for s, f in zip(labels["samples"], fresh_labels["samples"], strict=True):
        assert (out / s["image"]).read_bytes() == (tmp_path / "fresh" / f["image"]).read_bytes()
        renamed = s["file_name"] == SOLO and written == 1
        assert s["image"] == (f["image"][: -len(".jpg")] + ".b.jpg" if renamed else f["image"])
    listed = {s["image"].rsplit("/", 1)[1] for s in labels["samples"]}
    assert {p.name for p in (out / "imgs/s").iterdir()} == listed


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


def test_an_interrupted_run_saves_its_finished_samples_for_the_rerun(tmp_path, monkeypatch):
    """Ctrl-C long before the first periodic save (60 s) still leaves the partial labels."""
    import pkmodel.data.prepare as prep

    images, ann = source("mmpose_coco")
    real, done = prep._process_image, []

    def interrupted_on_the_third_image(task):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(len(task.rows))
        return real(task)

    monkeypatch.setattr(prep, "_process_image", interrupted_on_the_third_image)
    with pytest.raises(KeyboardInterrupt):
        prepare_split("s", images, ann, tmp_path, params(), progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "s.json").exists()
    partial = read_labels(tmp_path / ".s.partial.json")
    assert partial["complete"] is False and len(partial["samples"]) == sum(done) > 0
    resumed = prepare_split("s", images, ann, tmp_path, params(), progress=False)
    assert (resumed.crops_written, resumed.crops_reused) == (12 - sum(done), sum(done))
    assert not (tmp_path / ".s.partial.json").exists()


def test_ctrl_c_with_workers_is_one_line_and_the_rerun_reuses_the_finished_crops(
    tiny_synthetic, tmp_path
):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it, during a pooled run."""
    data = json.loads((tiny_synthetic / "annotations/person_keypoints_train.json").read_text())
    # The set repeated 80 times under new ids (the same image files): a run of several seconds.
    step_i = max(i["id"] for i in data["images"]) + 1
    step_a = max(a["id"] for a in data["annotations"]) + 1
    images = [{**i, "id": i["id"] + r * step_i} for r in range(80) for i in data["images"]]
    anns = [{**a, "id": a["id"] + r * step_a, "image_id": a["image_id"] + r * step_i}
            for r in range(80) for a in data["annotations"]]  # fmt: skip
    ann = tmp_path / "many.json"
    ann.write_text(json.dumps({**data, "images": images, "annotations": anns}))
    out, crops = tmp_path / "out", tmp_path / "out" / "imgs" / "train"
    command = [sys.executable, "-m", "pkmodel", "prepare-coco", "--split", "train",
               "--images", str(tiny_synthetic / "train"), "--annotations", str(ann),
               "--out", str(out), "--workers", "2", "--set", "prepare.min_area=0"]  # fmt: skip

    # Ctrl-C from a terminal reaches a process whose SIGINT has its default disposition. A shell
    # starts background jobs (a CI runner's, say) with SIGINT ignored, which the child would
    # inherit (Python then installs no KeyboardInterrupt handler): restore the default.
    def default_sigint() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True, preexec_fn=default_sigint)  # fmt: skip
    deadline = time.monotonic() + 120
    while run.poll() is None and time.monotonic() < deadline:
        if crops.is_dir() and len(list(crops.glob("*.jpg"))) >= 100:
            break
        time.sleep(0.05)
    # The workers write crops before the command has their results (chunks of up to 32
    # images): on a loaded machine 100 crops on disk could still mean none received, and an
    # interrupted run with nothing finished writes no partial labels. A second to take some.
    time.sleep(1.0)
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stderr.rstrip().endswith("\ninterrupted")
    finished = read_labels(out / ".train.partial.json")["samples"]
    assert len(finished) > 0
    # A rerun over the images the run finished (a quick stand-in for the whole set).
    done = {s["image_id"] for s in finished}
    part = tmp_path / "done.json"
    part.write_text(json.dumps({**data, "images": [i for i in images if i["id"] in done],
                                "annotations": [a for a in anns if a["image_id"] in done]}))  # fmt: skip
    again = prepare_split("train", tiny_synthetic / "train", part, out,
                          PrepareConfig(min_area=0.0, workers=1), progress=False)  # fmt: skip
    assert (again.crops_written, again.crops_reused) == (0, len(finished))


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
        ("garbage", "unreadable_image", "cannot decode (not an image format Pillow reads)"),
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
    elif how == "duplicate_image":
        i["id"] = d["images"][0]["id"]
    elif how == "bbox_negative_height":
        a["bbox"][3] = -1.0
    elif how == "num_keypoints_negative":
        a["num_keypoints"] = -1
    elif how == "no_file_name":
        del i["file_name"]
    elif how == "no_width":
        del i["width"]
    elif how == "ann_not_object":
        d["annotations"][3] = [1, 2]
    elif how == "file_name_up":
        i["file_name"] = "../../../../etc/passwd"
    elif how == "file_name_absolute":
        i["file_name"] = "/etc/passwd"
    elif how == "visibility_7":
        a["keypoints"][3 * 4 + 2] = 7
    elif how == "iscrowd_text":
        a["iscrowd"] = "no"
    elif how == "num_keypoints_null":
        a["num_keypoints"] = None
    elif how == "num_keypoints_text":
        a["num_keypoints"] = "12"
    elif how == "text_visibility":
        a["keypoints"][5] = "2"
    elif how == "text_bbox":
        a["bbox"][2] = "40"
    elif how == "image_id_list":
        a["image_id"] = [a["image_id"]]
    elif how == "image_id_float":
        a["image_id"] = float(a["image_id"])
    elif how == "category_id_object":
        a["category_id"] = {"id": 1}
    elif how == "ann_id_huge":
        a["id"] = 2**70
    elif how == "image_id_huge":
        a["image_id"] = i["id"] = 2**70
    return d


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("no_images", "has no 'images' list"),
        ("no_annotations", "has no 'annotations' list"),
        ("images_not_list", "'images' is not a list (not a COCO file)"),
        ("top_level_list", "its top level is a list"),
        ("no_keypoints", "annotations[3] (id 1202706) has no 'keypoints'"),
        ("no_bbox", "annotations[3] (id 1202706) has no 'bbox'"),
        ("no_image_id", "annotations[3] (id 1202706) has no 'image_id'"),
        ("no_id", "annotations[3] has no 'id'"),
        ("short_keypoints", "'keypoints' has 48 values, expected 51"),
        ("text_keypoints", "(id 1202706) 'keypoints' entry 4 is '7', not a number"),
        ("text_visibility", "(id 1202706) 'keypoints' entry 5 is '2', not a number"),
        ("bad_bbox", "'bbox' must be 4 numbers, got 3 values"),
        ("text_bbox", "(id 1202706) 'bbox' entry 2 is '40', not a number"),
        ("image_id_list", "(id 1202706) 'image_id' must be an integer, got [40083]"),
        ("image_id_float", "(id 1202706) 'image_id' must be an integer, got 40083.0"),
        ("category_id_object", "(id 1202706) 'category_id' must be an integer, got {'id': 1}"),
        (
            "ann_id_huge",
            "annotations[3] 'id' must be an integer from -2**63 to 2**63 - 1 (64 bits), "
            "got 1180591620717411303424",
        ),
        (
            "image_id_huge",
            "images[1] 'id' must be an integer from -2**63 to 2**63 - 1 (64 bits), "
            "got 1180591620717411303424",
        ),
        ("unknown_image", "refers to image_id 123456789, which is not in 'images'"),
        ("duplicate_ann", "repeats annotation id"),
        ("duplicate_image", "images[1] repeats image id"),
        ("bbox_negative_height", "(id 1202706) 'bbox' has a negative width or height"),
        ("num_keypoints_negative", "'num_keypoints' must be a whole number from 0, got -1"),
        ("no_file_name", "images[1] has no 'file_name'"),
        ("no_width", "images[1] has no 'width'"),
        ("ann_not_object", "annotations[3] is not a JSON object"),
        ("file_name_up", "images[1] 'file_name' '../../../../etc/passwd' must be a path inside"),
        ("file_name_absolute", "images[1] 'file_name' '/etc/passwd' must be a path inside"),
        ("visibility_7", "(id 1202706) 'keypoints' gives joint 4 the visibility 7; COCO's are"),
        ("iscrowd_text", "(id 1202706) 'iscrowd' must be 0 or 1, got 'no'"),
        (
            "num_keypoints_null",
            "(id 1202706) 'num_keypoints' must be a whole number from 0, got None",
        ),
        (
            "num_keypoints_text",
            "(id 1202706) 'num_keypoints' must be a whole number from 0, got '12'",
        ),
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


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("short_keypoints", "'keypoints' has 48 values, expected 51"),
        ("text_keypoints", "'keypoints' entry 4 is '7', not a number"),
        ("image_id_list", "(id 1202706) 'image_id' must be an integer, got [40083]"),
        ("ann_id_huge", "annotations[3] 'id' must be an integer from -2**63 to 2**63 - 1"),
        ("num_keypoints_null", "'num_keypoints' must be a whole number from 0, got None"),
        ("duplicate_ann", "repeats annotation id"),
        ("no_images", "has no 'images' list"),
    ],
)
def test_scoring_reads_an_annotation_file_as_strictly_as_prepare(tmp_path, how, message):
    """evaluate (--annotations, or the file prepared labels name), pseudo-label --annotations
    and the error budget read COCO through pycocotools, which took these files and failed
    later with a traceback (a reshape, a comparison with None): the same checks first."""
    from pkmodel.engine.metrics import load_coco

    _, ann = source("mmpose_coco")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_broken(json.loads(ann.read_text()), how)))
    with pytest.raises(PkmodelError) as info:
        load_coco(path)
    assert message in str(info.value) and str(path) in str(info.value)


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


def _first_labelled(ann: dict) -> int:
    return next(j for j in range(17) if ann["keypoints"][3 * j + 2] > 0)


@pytest.mark.parametrize(
    ("field", "slot", "value"),
    [
        ("keypoints", 0, float("nan")),  # x of a labelled joint
        ("keypoints", 1, float("inf")),  # y
        ("keypoints", 2, float("nan")),  # its visibility
        ("bbox", 0, float("nan")),
        ("bbox", 3, float("inf")),
        ("area", None, float("-inf")),
        ("keypoints", 0, -1e9),
        ("keypoints", 1, 1e7),
        ("bbox", 0, 1e7),
        ("bbox", 2, 1e9),
    ],
)
def test_bad_coordinates_drop_the_person_under_their_reason(tmp_path, field, slot, value):
    _, ann = source("mmpose_coco")
    data = json.loads(ann.read_text())
    a = data["annotations"][1]  # id 198196, 14 labelled joints: kept when sound
    if field == "keypoints":
        a["keypoints"][3 * _first_labelled(a) + slot] = value
    elif field == "bbox":
        a["bbox"][slot] = value
    else:
        a["area"] = value
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes them
    summary = prepare_split("s", ann.parent, path, tmp_path / "out", params(), progress=False)
    assert summary.dropped["bad_coordinates"] == 1 and summary.kept == 11
    assert "bad_coordinates 1" in summary.format()
    samples = read_labels(tmp_path / "out" / "s.json")["samples"]
    assert 198196 not in {s["ann_id"] for s in samples} and len(samples) == 11


def test_bad_coordinates_bound_is_one_image_size_off_the_image(tmp_path):
    _, ann = source("mmpose_coco")
    data = json.loads(ann.read_text())
    width, height = 500, 333  # image 40083, the one of annotations 1 and 2
    a, b = data["annotations"][1], data["annotations"][2]
    assert a["image_id"] == b["image_id"] == 40083
    a["keypoints"][3 * _first_labelled(a)] = -0.99 * width  # far off, but within the bound
    a["keypoints"][3 * _first_labelled(a) + 1] = 1.99 * height  # within it on the other side
    b["keypoints"][3 * _first_labelled(b) + 1] = 2.01 * height  # past it
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    bad = bad_coordinates(load_coco_people(path))
    assert np.flatnonzero(bad).tolist() == [2]
    # Unlabelled joints carry no position: any finite value there is harmless.
    a["keypoints"][3 * 16 : 3 * 17] = [1e12, -1e12, 0]
    path.write_text(json.dumps(data))
    assert np.flatnonzero(bad_coordinates(load_coco_people(path))).tolist() == [2]


def test_cli_counts_bad_coordinates_instead_of_a_traceback(tmp_path):
    _, ann = source("mmpose_coco")
    data = json.loads(ann.read_text())
    nan, huge = data["annotations"][1], data["annotations"][4]
    nan["keypoints"][3 * _first_labelled(nan)] = float("nan")
    huge["keypoints"][3 * _first_labelled(huge)] = -1e9
    data["annotations"][7]["bbox"][2] = float("inf")
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    out = run_cli(["prepare-coco", "--split", "val", "--images", ann.parent, "--annotations", path,
                   "--out", tmp_path / "ds", "--workers", 1, "--set", "prepare.crop_size=48"])  # fmt: skip
    assert "14 annotations -> 9 samples" in out and "bad_coordinates 3" in out
    assert "Traceback" not in out
    assert read_labels(tmp_path / "ds" / "val.json")["summary"]["dropped"]["bad_coordinates"] == 3


# --- crowding ----------------------------------------------------------------------------------


def _person(x: float, y: float, joints: int = 17) -> dict:
    """A 100 x 200 person at (x, y) with its first ``joints`` joints labelled."""
    kp = []
    for j in range(17):
        kp += [x + 5 * j, y + 10 * j, 2] if j < joints else [0, 0, 0]
    return {"keypoints": kp, "bbox": [x, y, 100, 200], "area": 20000.0}


def _image_of(people: list[dict], path: Path) -> Path:
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, **p}
            for i, p in enumerate(people)]  # fmt: skip
    images = [{"id": 1, "file_name": "a.jpg", "width": 3000, "height": 400}]
    categories = [{"id": 1, "name": "person"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return path


def test_crowding_counts_the_people_inside_the_crop(tmp_path):
    """prepare.max_people: the most other people with a labelled joint inside the crop."""
    p = params(max_people=6)
    crowded = DROP_REASONS.index("too_many_people")
    # One person, 7 more far to the right, 10 people without keypoints next to it: kept.
    far = [_person(1000 + 200 * i, 100) for i in range(7)]
    unlabelled = [_person(60, 100, joints=0) for _ in range(10)]
    people = load_coco_people(_image_of([_person(50, 100), *far, *unlabelled], tmp_path / "a.json"))
    assert filter_reasons(people, p)[0] == -1
    # 7 people with one labelled joint inside its crop: too many; 6: kept.
    near = [_person(100, 150, joints=1) for _ in range(7)]
    people = load_coco_people(_image_of([_person(50, 100), *near], tmp_path / "b.json"))
    assert filter_reasons(people, p)[0] == crowded
    assert filter_reasons(people, params(max_people=7))[0] == -1
    assert filter_reasons(people, params(max_people=0))[0] == -1
    people = load_coco_people(_image_of([_person(50, 100), *near[:6]], tmp_path / "c.json"))
    assert filter_reasons(people, p)[0] == -1


def test_crowding_edges_crowds_and_the_area_bound(tmp_path):
    """Guards the crop as [x0, x0 + side) (a joint on the far edge is outside it), crowd
    regions never counted as other people, and min_area as a lower bound that keeps its value."""
    from pkmodel.data.prepare import others_in_crops

    kp = np.zeros((3, NUM_JOINTS, 3))
    kp[:, 0] = [[10.0, 5.0, 2], [0.0, 0.0, 1], [9.99, 9.99, 2]]  # only joint 0 labelled
    assert others_in_crops([[0, 0, 10]], [7], [1, 2, 3], kp).tolist() == [2]
    assert others_in_crops([[0, 0, 10]], [2], [1, 2, 3], kp).tolist() == [1]  # never itself
    crowd = {**_person(100, 150, joints=1), "iscrowd": 1}
    people = load_coco_people(_image_of([_person(50, 100), crowd, crowd], tmp_path / "a.json"))
    assert filter_reasons(people, params(max_people=1, skip_crowd=False)).tolist() == [-1] * 3
    people = load_coco_people(_image_of([_person(50, 100)], tmp_path / "b.json"))
    assert filter_reasons(people, params(min_area=20000.0)).tolist() == [-1]
    assert filter_reasons(people, params(min_area=20000.5)).tolist() == [
        DROP_REASONS.index("small_area")
    ]


def _two_people(folder: Path, a_x: float = 50.0) -> Path:
    """A 200 x 200 image: person 1 (box [a_x, 40, 60, 100], every joint inside it) and
    person 2, whose box center (80, 80) lies in person 1's crop but whose five labelled
    joints lie beyond it, near (180, 180)."""
    import cv2

    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "a.jpg"), rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    one = [v for j in range(17) for v in (a_x + 3 * j, 40 + 5 * j, 2)]
    two = [v for j in range(17) for v in ((170 + 5 * j, 170 + 5 * j, 2) if j < 5 else (0, 0, 0))]
    anns = [
        {"id": 1, "keypoints": one, "bbox": [a_x, 40, 60, 100], "area": 5000.0},
        {"id": 2, "keypoints": two, "bbox": [60, 50, 40, 60], "area": 2400.0},
    ]
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
        "annotations": [{**a, "image_id": 1, "category_id": 1, "iscrowd": 0} for a in anns],
        "categories": [{"id": 1, "name": "person"}],
    }
    (folder / "ann.json").write_text(json.dumps(data))
    return folder / "ann.json"


def test_labels_box_and_others_by_center_in_crop_pixels_and_a_moved_box_is_recropped(tmp_path):
    """Guards the sample's bbox in crop pixels (x, y, w, h each scaled by crop_size / side),
    another person listed by its box center alone (no joint in the crop), and a rerun whose
    crop box moved cutting that crop again instead of reusing the old pixels."""
    ann = _two_people(tmp_path / "in")
    first = prepare_split("s", ann.parent, ann, tmp_path / "out", params(), progress=False)
    one = read_labels(tmp_path / "out/s.json")["samples"][0]
    # center (80, 90), side 1.25 x 100 = 125: x0 = floor(80 - 62.5 + 0.5) = 18, y0 = 28
    assert one["crop_box"] == [18, 28, 125]
    sc = 64 / 125
    assert one["bbox"] == pytest.approx([32 * sc, 12 * sc, 60 * sc, 100 * sc], abs=1e-3)
    assert one["center"] == pytest.approx([62 * sc, 62 * sc], abs=1e-3)
    assert len(one["others"]) == 1
    assert one["others"][0]["center"] == pytest.approx([62 * sc, 52 * sc], abs=1e-3)
    assert np.array_equal(one["others"][0]["keypoints"], np.zeros((NUM_JOINTS, 3)))
    assert (first.crops_written, first.crops_reused) == (2, 0)
    _two_people(tmp_path / "in", a_x=52.0)  # person 1's box moves 2 px right; same image bytes
    again = prepare_split("s", ann.parent, ann, tmp_path / "out", params(), progress=False)
    assert (again.crops_written, again.crops_reused) == (1, 1)
    assert read_labels(tmp_path / "out/s.json")["samples"][0]["crop_box"] == [20, 28, 125]


@pytest.mark.parametrize(
    ("name", "eligible", "kept", "dropped", "misses", "ap"),
    [
        ("coco_mini", 80, 86, {"crowd": 5, "few_keypoints": 81}, 0, 1.0),
        ("mmpose_coco", 12, 12, {"few_keypoints": 2}, 0, 1.0),
    ],
)
def test_default_filters_keep_most_people_and_their_labels_are_exact(
    tmp_path, name, eligible, kept, dropped, misses, ap
):
    """At the default settings every non-crowd person with a labelled joint is kept (at least
    90 % of those with >= 3 are), and the oracle (the labels fed back through targets and
    decoder) scores AP >= 0.99 on the whole annotation file: nobody on the evaluated images is
    missed. Stricter filters drop people that COCOeval still counts (the last check)."""
    from pkmodel.engine.evaluate import evaluate_split
    from tests.engine.coco_files import eval_config

    images, ann = source(name)
    data = json.loads(ann.read_text())
    people = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
    assert sum(sum(v > 0 for v in a["keypoints"][2::3]) >= 3 for a in people) == eligible
    cfg = eval_config(**{"train.workers": 0})
    p = dataclasses.replace(cfg.prepare, workers=1)
    assert p == dataclasses.replace(PrepareConfig(), workers=1)  # the defaults
    summary = prepare_split("val", images, ann, tmp_path, p, progress=False)
    assert summary.kept == kept and min(summary.kept, eligible) / eligible >= 0.9
    assert {k: v for k, v in summary.dropped.items() if v} == dropped
    m = evaluate_split(summary.labels, cfg).metrics
    assert m["gt_people_without_prediction"] == misses
    assert m["AP"] >= 0.99 and m["AP"] == pytest.approx(ap, abs=1e-4)
    # Scored against the kept people alone, the labels reproduce the annotations exactly.
    ids = {s["ann_id"] for s in read_labels(summary.labels)["samples"]}
    only_kept = tmp_path / "kept.json"
    only_kept.write_text(json.dumps({**data, "annotations": [a for a in data["annotations"] if a["id"] in ids]}))  # fmt: skip
    m = evaluate_split(summary.labels, cfg, annotations=only_kept).metrics
    assert m["samples"] == kept and m["gt_people_without_prediction"] == 0
    assert m["AP"] >= 0.99 and m["mean_error_px"] < 0.01
    if name == "coco_mini":  # the earlier defaults: 6 people on the evaluated images dropped
        strict = dataclasses.replace(p, min_keypoints=3, max_people=6)
        summary = prepare_split("strict", images, ann, tmp_path, strict, progress=False)
        m = evaluate_split(summary.labels, cfg).metrics
        assert summary.kept == 78 and m["gt_people_without_prediction"] == 6
        assert m["AP"] == pytest.approx(0.9208, abs=1e-4)


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
    with pytest.raises(PkmodelError, match=r"^split 'val': (\d+) of the \1 images with people"):
        prepare_split("val", tmp_path / "empty", ann, tmp_path, params(), progress=False)
    with pytest.raises(PkmodelError) as err:
        prepare_split("val", tmp_path / "empty", ann, tmp_path, params(), False, allow_missing=True)
    message = str(err.value)
    assert message.startswith(f"split 'val': no person was kept from {ann} (")
    assert "missing_image" in message and "was not written" in message
    assert (tmp_path / "val.json").read_bytes() == before
    # Callers that handle an empty result themselves get the empty labels.
    empty = prepare_split("e", tmp_path / "empty", ann, tmp_path, params(), False,
                          allow_empty=True, allow_missing=True)  # fmt: skip
    assert empty.kept == 0 and read_labels(empty.labels)["samples"] == []


def test_a_full_disk_names_the_crop_being_written(tmp_path, monkeypatch):
    import errno

    import numpy as np

    from pkmodel.cli.common import os_error_sentence
    from pkmodel.common import atomic
    from pkmodel.data import prepare

    real_fdopen = os.fdopen

    class FullDisk:  # the temporary file opens, its write fails as on a full disk
        def __init__(self, fd, mode):
            self.file = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fdopen", FullDisk)
    target = tmp_path / "1_2.jpg"
    with pytest.raises(OSError) as err:
        prepare._write_crop(target, np.zeros((8, 8, 3), np.uint8), 90)
    assert os_error_sentence(err.value) == f"cannot write {target}: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_missing_most_images_is_refused_before_anything_is_cropped(tmp_path, mmpose_copy):
    """A wrong --images folder that happens to hold a few of the images would replace good
    labels with those few people: refused when more than half are missing, unless told."""
    folder, data = mmpose_copy
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    out = tmp_path / "out"
    first = prepare_split("s", folder, ann, out, params(), progress=False)
    assert first.kept == 12
    before = (out / "s.json").read_bytes()
    names = sorted(p.name for p in folder.glob("*.jpg"))
    assert len(names) == 4
    for name in names[:2]:  # half missing: prepared, the missing ones listed
        (folder / name).unlink()
    half = prepare_split("s", folder, ann, tmp_path / "half", params(), progress=False)
    assert half.kept == 12 - sum(_kept_on(data, n) for n in names[:2])
    assert sorted(u["file"] for u in half.unreadable) == names[:2]
    (folder / names[2]).unlink()  # three of four missing
    crops = sorted(p.name for p in (out / "imgs" / "s").iterdir())
    left = _kept_on(data, names[3])
    with pytest.raises(PkmodelError) as err:
        prepare_split("s", folder, ann, out, params(), progress=False)
    assert str(err.value) == (
        f"split 's': 3 of the 4 images with people to crop that {ann} names are missing from "
        f"{folder} (e.g. {names[0]}); {out / 's.json'} was not written: check --images, or pass "
        f"--allow-missing-images to prepare the {left} {'person' if left == 1 else 'people'} "
        "of the images that are there"
    )
    assert (out / "s.json").read_bytes() == before
    assert sorted(p.name for p in (out / "imgs" / "s").iterdir()) == crops
    with pytest.raises(PkmodelError, match="3 of the 4 images"):
        prepare_split("s", folder, ann, tmp_path / "new", params(), progress=False)
    assert not (tmp_path / "new").exists()  # no folder made either
    from typer.testing import CliRunner

    from pkmodel.cli import app

    result = CliRunner().invoke(app, ["prepare-coco", "--split", "s", "--images", str(folder),
                                      "--annotations", str(ann), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 2 and result.output.startswith("error: split 's': 3 of the 4")
    assert (out / "s.json").read_bytes() == before
    run_cli(["prepare-coco", "--split", "s", "--images", folder, "--annotations", ann, "--out",
             out, "--allow-missing-images", "--workers", 1, "--set", "prepare.crop_size=64"])  # fmt: skip
    assert len(read_labels(out / "s.json")["samples"]) == left


def test_people_of_says_person_for_one():
    from pkmodel.data.prepare import people_of

    assert (people_of(1), people_of(0), people_of(5)) == (
        "the 1 person",
        "the 0 people",
        "the 5 people",
    )


def test_an_interrupted_rerun_with_other_settings_keeps_the_labels_and_their_crops(tmp_path, monkeypatch):  # fmt: skip
    """A rerun with another expand ratio, stopped after a few images (Ctrl-C): the earlier
    labels and every crop they list are as they were (the new crops went beside them), so a
    training that reads them sees what they say. Finished, the rerun's labels list only its
    own crops and the earlier ones are gone."""
    import pkmodel.data.prepare as prepare

    images, ann = source("mmpose_coco")
    prepare_split("s", images, ann, tmp_path, params(workers=1), progress=False)
    labels = (tmp_path / "s.json").read_bytes()

    def crops_as_listed(path: Path) -> int:
        samples = read_labels(path)["samples"]
        for s in samples:
            data = (tmp_path / s["image"]).read_bytes()
            assert (len(data), hashlib.sha1(data).hexdigest()) == (s["crop_bytes"], s["crop_sha1"])  # fmt: skip
        return len(samples)

    run_tasks = prepare._run_tasks

    def stopped(tasks, workers):
        for i, result in enumerate(run_tasks(tasks, workers)):
            if i == 2:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(prepare, "_run_tasks", stopped)
    wider = params(workers=1, expand_ratio=1.6)
    with pytest.raises(KeyboardInterrupt):
        prepare_split("s", images, ann, tmp_path, wider, progress=False)
    assert (tmp_path / "s.json").read_bytes() == labels
    assert crops_as_listed(tmp_path / "s.json") == 12
    names = {p.name for p in (tmp_path / "imgs/s").iterdir()}
    assert sum(n.endswith(".b.jpg") for n in names) >= 2  # written beside the listed ones

    monkeypatch.setattr(prepare, "_run_tasks", run_tasks)
    done = prepare_split("s", images, ann, tmp_path, wider, progress=False)
    assert done.crops_reused >= 2 and done.crops_written + done.crops_reused == 12
    assert crops_as_listed(tmp_path / "s.json") == 12
    listed = {s["image"].rsplit("/", 1)[1] for s in read_labels(tmp_path / "s.json")["samples"]}
    assert {p.name for p in (tmp_path / "imgs/s").iterdir()} == listed
    assert read_labels(tmp_path / "s.json")["expand_ratio"] == 1.6


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.pop("categories"),
            "has no 'categories' list (a COCO keypoint file names its person category",
        ),  # fmt: skip
        (lambda d: d.update(categories=[]), "has no categories (a COCO keypoint file"),
        (lambda d: d.update(categories={"id": 1}), "has a 'categories' that is not a list"),
        (
            lambda d: d["categories"][0].update(id="1"),
            "categories[0] 'id' must be an integer, got '1'",
        ),  # fmt: skip
        (
            lambda d: d["categories"][0].update(id=2**63),
            "categories[0] 'id' must be an integer from -2**63 to 2**63 - 1 (64 bits), got 9223372036854775808",
        ),  # fmt: skip
        (
            lambda d: d["annotations"][3].update(category_id=[1]),
            "annotations[3] (id {id}) 'category_id' must be an integer, got [1]",
        ),  # fmt: skip
        (
            lambda d: d["annotations"][3].update(category_id=5),
            "annotations[3] (id {id}) has category_id 5, which 'categories' does not list (its ids: [1]); COCO scoring would leave it out",
        ),  # fmt: skip
        (
            lambda d: d["annotations"][0].pop("category_id"),
            "annotations[0] (id {id}) has no 'category_id'",
        ),  # fmt: skip
    ],
)
def test_a_coco_file_must_name_its_categories(tmp_path, change, message):
    """pycocotools scores people by category: a file without 'categories' made evaluate and
    train's validation stop with a KeyError, and a person of an unlisted category was left
    out of AP silently. prepare-coco and evaluate refuse such a file in one sentence."""
    from pkmodel.engine.metrics import load_coco

    _, ann = source("mmpose_coco")
    data = json.loads(ann.read_text())
    assert data["categories"][0]["id"] == 1
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    ids = {i: a["id"] for i, a in enumerate(data["annotations"])}
    want = message.format(id=ids[3] if "annotations[3]" in message else ids[0])
    for load in (load_coco_people, load_coco):
        with pytest.raises(PkmodelError) as e:
            load(path)
        assert want in str(e.value) and str(path) in str(e.value)
