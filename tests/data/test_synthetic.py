"""The synthetic RGB-D people: COCO validity, exact 2D/3D/depth agreement, determinism, CLI."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pkmodel.cli import app
from pkmodel.common.camera import Intrinsics, project
from pkmodel.common.errors import PkmodelError
from pkmodel.common.skeleton import JOINT_INDEX, NUM_JOINTS
from pkmodel.config import SyntheticConfig
from pkmodel.data.synthetic.camera import pixel_rays
from pkmodel.data.synthetic.generate import generate, parse_size
from pkmodel.data.synthetic.humanoid import (
    ANGLE,
    ANGLE_LIMITS,
    ANGLE_NAMES,
    POSE_KINDS,
    pose_body,
    sample_body,
    sample_pose,
)
from pkmodel.data.synthetic.render import RenderScene, ray_capsule, render
from pkmodel.data.synthetic.scene import VISIBILITY_TOLERANCE_M, joint_visibility

W, H = 128, 96
SPLIT_SIZES = {"train": 24, "val": 8}
FRAMES = 10


def small_spec(**kw) -> SyntheticConfig:
    values = dict(num_train=SPLIT_SIZES["train"], num_val=SPLIT_SIZES["val"], width=W, height=H,
                  seed=3, sequences=1, frames=FRAMES, workers=1)  # fmt: skip
    values.update(kw)
    return SyntheticConfig(**values)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    generate(small_spec(), out, progress=False)
    return out


def load(dataset: Path, split: str) -> dict:
    return json.loads((dataset / "annotations" / f"person_keypoints_{split}.json").read_text())


def people(dataset: Path, split: str):
    """(image entry, annotation, keypoints (17, 3), 3D (17, 3), radius (17,), depth metres)."""
    data = load(dataset, split)
    images = {i["id"]: i for i in data["images"]}
    for ann in data["annotations"]:
        img = images[ann["image_id"]]
        depth = cv2.imread(str(dataset / img["depth_file"]), cv2.IMREAD_UNCHANGED)
        yield (
            img,
            ann,
            np.array(ann["keypoints"], dtype=np.float64).reshape(NUM_JOINTS, 3),
            np.array(ann["keypoints_3d"]),
            np.array(ann["limb_radius_m"]),
            depth.astype(np.float64) * img["depth_unit_m"],
        )


def intrinsics_of(img: dict) -> Intrinsics:
    k = img["intrinsics"]
    return Intrinsics(k["fx"], k["fy"], k["cx"], k["cy"], img["width"], img["height"])


# --- the COCO files ----------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val"])
def test_pycocotools_loads_split_and_ground_truth_gives_ap_1(dataset, split):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(dataset / "annotations" / f"person_keypoints_{split}.json"))
        dets = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                 "score": 1.0} for a in gt.dataset["annotations"]]  # fmt: skip
        ev = COCOeval(gt, gt.loadRes(dets), "keypoints")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    assert len(gt.getImgIds()) == SPLIT_SIZES[split]
    assert len(gt.getAnnIds()) >= SPLIT_SIZES[split]  # every image shows its main person
    assert ev.stats[0] == pytest.approx(1.0)  # AP over OKS 0.50:0.95
    for img in gt.dataset["images"]:
        assert (dataset / split / img["file_name"]).is_file()
        assert img["depth_unit_m"] == 0.001 and set(img["intrinsics"]) == {"fx", "fy", "cx", "cy"}
        assert img["depth_file"] == f"depth/{split}/{Path(img['file_name']).stem}.png"


def test_annotation_fields_follow_coco(dataset):
    for _img, ann, kp, p3d, radius, _depth in people(dataset, "train"):
        v = kp[:, 2]
        assert set(np.unique(v)) <= {0, 1, 2}
        assert ann["num_keypoints"] == int((v > 0).sum()) >= 3
        assert np.all(kp[v == 0] == 0)  # COCO: unlabelled joints are 0, 0, 0
        assert ann["iscrowd"] == 0 and ann["category_id"] == 1
        assert ann["area"] > 0 and ann["bbox"][2] > 0 and ann["bbox"][3] > 0
        assert p3d.shape == (NUM_JOINTS, 3) and radius.shape == (NUM_JOINTS,)
        assert np.all((radius > 0.005) & (radius < 0.2))


# --- exact geometry ------------------------------------------------------------------------------


def test_keypoints_3d_project_onto_the_2d_keypoints(dataset):
    errors = []
    for img, _ann, kp, p3d, _radius, _depth in people(dataset, "train"):
        k = img["intrinsics"]
        u = k["fx"] * p3d[:, 0] / p3d[:, 2] + k["cx"] + 0.5  # OpenCV intrinsics, COCO pixels
        v = k["fy"] * p3d[:, 1] / p3d[:, 2] + k["cy"] + 0.5
        labelled = kp[:, 2] > 0
        errors.append(np.abs(np.stack([u, v], 1)[labelled] - kp[labelled, :2]).max())
    assert max(errors) < 0.01


def test_projection_convention_matches_pixel_rays_and_the_3d_module():
    from pkmodel.common.camera import backproject

    k = Intrinsics(fx=100.0, fy=110.0, cx=31.2, cy=20.7, width=64, height=48)
    dx, dy = pixel_rays(k)
    # The ray through pixel (row 5, column 7) lands on that pixel's center (7.5, 5.5).
    ray = np.array([dx[7], dy[5], 1.0]) * 2.5
    assert np.abs(project(ray, k) - [7.5, 5.5]).max() < 1e-4
    # The 3D stage reads the same intrinsics the same way: back-projection inverts project().
    points = np.array([[0.3, -0.2, 2.0], [-0.5, 0.4, 3.5]])
    back = backproject(project(points, k), points[:, 2], k)
    assert np.abs(back - points).max() < 1e-9


def test_depth_at_visible_joints_is_within_the_limb_radius_in_front(dataset):
    gaps, radii = [], []
    for _img, _ann, kp, p3d, radius, depth in people(dataset, "train"):
        visible = kp[:, 2] == 2
        rows, cols = np.floor(kp[visible, 1]).astype(int), np.floor(kp[visible, 0]).astype(int)
        gaps.append(p3d[visible, 2] - depth[rows, cols])  # how far the surface is in front
        radii.append(radius[visible])
    gap, radius = np.concatenate(gaps), np.concatenate(radii)
    assert len(gap) > 100
    assert np.all(gap >= -VISIBILITY_TOLERANCE_M) and np.all(gap <= radius + VISIBILITY_TOLERANCE_M)
    # The surface seen is the joint's own limb, about one radius in front (more where the limb
    # points at the camera: r / sin(angle); less at silhouettes and on the face).
    assert 0.7 < np.median(gap / radius) < 1.1
    assert np.mean(gap > 0.5 * radius) > 0.75


def test_visibility_flags_agree_with_the_depth_map(dataset):
    counts = np.zeros(3, dtype=int)
    for _img, _ann, kp, p3d, radius, depth in people(dataset, "train"):
        flags = joint_visibility(kp[:, :2], p3d[:, 2], radius, depth)
        labelled = kp[:, 2] > 0
        assert np.array_equal(flags[labelled], kp[labelled, 2])
        uv = project(p3d, intrinsics_of(_img))
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        assert np.array_equal(inside, labelled)  # 0 exactly when outside the image
        # An occluded joint's pixel shows a surface clearly in front of it (or none / behind).
        hidden = kp[:, 2] == 1
        rows, cols = np.floor(kp[hidden, 1]).astype(int), np.floor(kp[hidden, 0]).astype(int)
        d = depth[rows, cols]
        z, r = p3d[hidden, 2], radius[hidden]
        assert np.all((d < z - r - VISIBILITY_TOLERANCE_M) | (d > z + VISIBILITY_TOLERANCE_M) | (d == 0))  # fmt: skip
        counts += np.bincount(kp[:, 2].astype(int), minlength=3)
    assert counts[2] > counts[1] > 0  # both kinds occur, visible ones dominate


def test_ray_capsule_matches_brute_force_marching():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform([-0.5, -0.5, 2.0], [0.5, 0.5, 4.0])
        b = a + rng.normal(0, 0.4, 3)
        r = rng.uniform(0.03, 0.2)
        sx = rng.uniform(-0.3, 0.3, (1, 40)).astype(np.float32)
        sy = rng.uniform(-0.3, 0.3, (1, 40)).astype(np.float32)
        t = ray_capsule(sx, sy, sx**2 + sy**2 + 1, a, b, r)[0]
        # March along each ray: first t whose point is within r of the segment.
        ts = np.arange(0.05, 8.0, 0.0005)
        pts = np.stack([sx[0, :, None] * ts, sy[0, :, None] * ts, np.broadcast_to(ts, (40, ts.size))], -1)  # fmt: skip
        ab = b - a
        s = np.clip(((pts - a) @ ab) / (ab @ ab), 0, 1)
        dist = np.linalg.norm(pts - a - s[..., None] * ab, axis=-1)
        inside = dist <= r
        first = np.where(inside.any(1), ts[np.argmax(inside, 1)], np.inf)
        hit = np.isfinite(first)
        # a ray the two disagree on must graze the capsule: its closest approach within 1 mm
        # of the radius (the marching steps 0.5 mm along the ray)
        closest = dist.min(1)
        phantom, missed = np.isfinite(t) & ~hit, ~np.isfinite(t) & hit
        assert (closest[phantom] <= r + 1e-3).all() and (closest[missed] >= r - 1e-3).all()
        both = hit & np.isfinite(t)
        assert np.abs(t[both] - first[both]).max(initial=0) < 2e-3


def test_renderer_depth_and_occlusion_on_a_known_scene():
    k = Intrinsics(fx=100.0, fy=100.0, cx=32.0, cy=24.0, width=64, height=48)
    cap = dict(cap_a=np.array([[-0.3, 0.0, 3.0]]), cap_b=np.array([[0.3, 0.0, 3.0]]),
               cap_r=np.array([0.1]), cap_color=np.ones((1, 3)), cap_owner=np.array([0]),
               cap_stripes=np.zeros((1, 4)))  # fmt: skip
    out = render(RenderScene(**cap), k)
    # Row 24 looks along y = 0: every ray meeting the horizontal capsule's side hits at Z = 2.9.
    row = out.depth[24]
    assert np.abs(row[22:43] - 2.9).max() < 1e-4  # |x| = |j - 32| / 100 * 2.9 <= 0.3
    # The end caps (spheres at x = +-0.3) reach 13.35 pixels from the center column.
    assert np.array_equal(np.nonzero(np.isfinite(row))[0], np.arange(19, 46))
    assert out.owner[24, 32] == 0 and out.owner[0, 0] == -1
    joint = np.array([[0.0, 0.0, 3.0]])
    uv = project(joint, k)
    assert joint_visibility(uv, joint[:, 2], np.array([0.1]), out.depth.astype(np.float64))[0] == 2
    # A ball 1 m in front hides the joint; a joint off the image is 0.
    ball = dict(ell_c=np.array([[0.0, 0.0, 2.0]]), ell_axes=np.eye(3)[None],
                ell_radii=np.array([[0.2, 0.3, 0.4]]), ell_color=np.ones((1, 3)),
                ell_owner=np.array([-1]), ell_stripes=np.zeros((1, 4)))  # fmt: skip
    hidden = render(RenderScene(**cap, **ball), k)
    assert hidden.depth[24, 32] == pytest.approx(1.6, abs=1e-4)  # front of the ellipsoid
    assert hidden.owner[24, 32] == -1
    depth = hidden.depth.astype(np.float64)
    assert joint_visibility(uv, joint[:, 2], np.array([0.1]), depth)[0] == 1
    far = np.array([[5.0, 0.0, 3.0]])
    assert joint_visibility(project(far, k), far[:, 2], np.array([0.1]), depth)[0] == 0


# --- pictures, people, poses ---------------------------------------------------------------------


def test_pictures_are_not_blank_and_people_fill_a_sane_part(dataset):
    data = load(dataset, "train")
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    heights, fractions, surfaces = [], [], []
    for img in data["images"]:
        rgb = cv2.imread(str(dataset / "train" / img["file_name"]))
        assert rgb.shape == (H, W, 3)
        assert rgb.std() > 10 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 500
        depth = cv2.imread(str(dataset / img["depth_file"]), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16
        surfaces.append((depth > 0).mean())  # 0 = sky or beyond the sensor's range
        anns = by_image[img["id"]]
        fractions.append(sum(a["area"] for a in anns) / (W * H))
        heights.append(max(a["bbox"][3] for a in anns) / H)
    assert min(surfaces) > 0.1 and np.median(surfaces) > 0.6
    # From a far, half-hidden person to a close-up.
    assert min(fractions) > 0.002 and max(fractions) < 0.9
    assert 0.02 < np.median(fractions) < 0.5
    assert 0.4 < np.median(heights) <= 1.0  # the main person is large
    labelled = [a["num_keypoints"] for a in data["annotations"]]
    assert np.mean(labelled) > 12


def test_pose_sampler_stays_within_joint_limits_and_keeps_bone_lengths():
    rng = np.random.default_rng(1)
    shape = sample_body(rng)
    j = JOINT_INDEX
    kinds = []
    for _ in range(200):
        angles, kind = sample_pose(rng)
        kinds.append(kind)
        assert angles.shape == (len(ANGLE_NAMES),)
        assert np.all(angles >= ANGLE_LIMITS[:, 0] - 1e-12) and np.all(angles <= ANGLE_LIMITS[:, 1] + 1e-12)  # fmt: skip
        body = pose_body(shape, angles)
        for side in ("left", "right"):
            arm = np.linalg.norm(
                body.joints[j[f"{side}_elbow"]] - body.joints[j[f"{side}_shoulder"]]
            )
            shin = np.linalg.norm(body.joints[j[f"{side}_ankle"]] - body.joints[j[f"{side}_knee"]])
            assert arm == pytest.approx(shape.dims["upper_arm"]) and shin == pytest.approx(shape.dims["shank"])  # fmt: skip
    assert set(kinds) == set(POSE_KINDS)
    # A symmetric pose gives a mirror-symmetric body (x is the body's left).
    rest = pose_body(shape, np.zeros(len(ANGLE_NAMES)))
    flip = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15])
    assert np.abs(rest.joints[flip] * [-1, 1, 1] - rest.joints).max() < 1e-9
    assert rest.joints[j["left_shoulder"], 0] > 0 and rest.joints[j["nose"], 2] > 0  # left, forward
    bent = np.zeros(len(ANGLE_NAMES))
    bent[ANGLE["l_elbow"]] = np.pi / 2  # elbow flexion brings the forearm forward
    wrist = pose_body(shape, bent).joints[j["left_wrist"]]
    assert wrist[2] == pytest.approx(shape.dims["forearm"], rel=1e-6)


# --- sequences -----------------------------------------------------------------------------------


def test_sequence_is_continuous_timestamped_and_in_the_same_format(dataset):
    folder = dataset / "sequences" / "seq_000"
    data = json.loads((folder / "annotations.json").read_text())
    fps = data["info"]["fps"]
    assert [i["frame_index"] for i in data["images"]] == list(range(FRAMES))
    assert np.allclose([i["timestamp"] for i in data["images"]], np.arange(FRAMES) / fps, atol=1e-6)
    for img in data["images"]:
        assert (folder / img["file_name"]).is_file() and (folder / img["depth_file"]).is_file()
    anns = sorted(data["annotations"], key=lambda a: a["image_id"])
    assert len(anns) >= FRAMES - 2 and {a["track_id"] for a in anns} == {0}
    points = np.array([a["keypoints_3d"] for a in anns])
    steps = np.linalg.norm(np.diff(points, axis=0), axis=-1)
    assert steps.max() < 0.2  # metres per frame at 30 fps: continuous motion
    assert len({json.dumps(i["intrinsics"]) for i in data["images"]}) == 1  # one fixed camera


# --- determinism and the command line ------------------------------------------------------------


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_whatever_the_number_of_workers(tmp_path):
    few = dict(num_train=5, num_val=2, frames=3)
    generate(small_spec(**few), tmp_path / "one", progress=False)
    generate(small_spec(workers=2, **few), tmp_path / "two", progress=False)
    generate(small_spec(seed=4, **few), tmp_path / "other", progress=False)
    one, two = tree_bytes(tmp_path / "one"), tree_bytes(tmp_path / "two")
    assert len(one) == 2 * (5 + 2 + 3) + 3 and one == two
    other = tree_bytes(tmp_path / "other")
    assert other.keys() == one.keys() and other["train/000000000001.jpg"] != one["train/000000000001.jpg"]  # fmt: skip


def test_rerun_with_fewer_images_removes_the_extra_files(tmp_path):
    generate(small_spec(num_train=4, num_val=1, sequences=2, frames=2), tmp_path, progress=False)
    generate(small_spec(num_train=2, num_val=1, sequences=1, frames=2), tmp_path, progress=False)
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["000000000001.jpg", "000000000002.jpg"]  # fmt: skip
    assert len(list((tmp_path / "depth" / "train").iterdir())) == 2
    assert [p.name for p in (tmp_path / "sequences").iterdir()] == ["seq_000"]
    assert len(load(tmp_path, "train")["images"]) == 2


def test_an_interrupted_rerun_leaves_the_earlier_dataset_whole(tmp_path, monkeypatch):
    """A rerun with another seed, stopped part way (Ctrl-C) or killed: the earlier dataset's
    files are all as they were, annotations included (they used to be deleted first, and the
    images overwritten one by one); the next run clears what the stopped one left."""
    import pkmodel.data.synthetic.generate as gen

    few = dict(num_train=4, num_val=2, sequences=1, frames=3)
    generate(small_spec(**few), tmp_path, progress=False)
    before = tree_bytes(tmp_path)
    assert "annotations/person_keypoints_train.json" in before
    run_task = gen._run_task

    def stopping(task):
        if task[0] == "val":  # the train images are written by then
            raise KeyboardInterrupt
        return run_task(task)

    monkeypatch.setattr(gen, "_run_task", stopping)
    with pytest.raises(KeyboardInterrupt):
        generate(small_spec(seed=9, **few), tmp_path, progress=False)
    assert tree_bytes(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations", "depth", "sequences", "train", "val"]  # fmt: skip

    # what a killed run leaves: its staging folder, or the earlier folders half swapped out
    monkeypatch.setattr(gen, "_run_task", run_task)
    (tmp_path / gen.STAGING_DIR / "train").mkdir(parents=True)
    (tmp_path / gen.REPLACED_DIR).mkdir()
    (tmp_path / "val").rename(tmp_path / gen.REPLACED_DIR / "val")
    generate(small_spec(seed=9, **few), tmp_path, progress=False)
    after = tree_bytes(tmp_path)
    assert after.keys() == before.keys()
    assert after["train/000000000001.jpg"] != before["train/000000000001.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotations", "depth", "sequences", "train", "val"]  # fmt: skip


def test_cli_make_synthetic_writes_the_dataset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["make-synthetic", "--out", "syn", "--num-train", "3", "--num-val", "1", "--size", "64x48",
         "--sequences", "1", "--frames", "2", "--seed", "7", "--workers", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "train: 3 images" in result.output
    data = load(tmp_path / "syn", "train")
    assert data["info"]["seed"] == 7 and {(i["width"], i["height"]) for i in data["images"]} == {(64, 48)}  # fmt: skip
    assert len(list((tmp_path / "syn" / "sequences" / "seq_000" / "rgb").iterdir())) == 2


@pytest.mark.parametrize("size", ["256", "256x", "ax256", "256*256", "16x16", "256x9999"])
def test_cli_bad_size_is_one_clear_error(tmp_path, monkeypatch, size):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["make-synthetic", "--out", "syn", "--size", size])
    assert result.exit_code == 2
    assert (
        result.output.startswith("error: --size") and len(result.output.strip().splitlines()) == 1
    )
    assert not (tmp_path / "syn").exists()


def test_parse_size_and_bad_values_name_the_key(tmp_path):
    assert parse_size("320x240") == (320, 240) and parse_size(" 64 X 48 ") == (64, 48)
    with pytest.raises(PkmodelError, match=r"synthetic\.frames = 0 must be >= 1"):
        small_spec(frames=0).check()
    with pytest.raises(PkmodelError, match=r"synthetic\.second_person_prob"):
        small_spec(second_person_prob=1.5).check()
    (tmp_path / "file").write_text("x")
    with pytest.raises(PkmodelError, match="is not a folder"):
        generate(small_spec(), tmp_path / "file", progress=False)


def test_nothing_to_generate_is_refused(tmp_path):
    with pytest.raises(PkmodelError, match="are all 0: nothing to generate"):
        generate(small_spec(num_train=0, num_val=0, sequences=0), tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


# --- the LiDAR-like depth sensor (synthetic.depth_sensor = "lidar") ----------------------------


def test_lidar_depth_resolution_noise_holes_and_confidence():
    from pkmodel.data.synthetic.sensor import DROPOUT, lidar_depth

    # A wall at 2 m, a box at 1 m in front of its middle, sky (no surface) in the top rows, and
    # a far wall (5 m) on the right: colour resolution 200 x 160, depth at a quarter.
    exact = np.full((160, 200), 2000, np.uint16)
    exact[60:100, 60:120] = 1000
    exact[:20] = 0
    exact[20:, 160:] = 5000
    depth, conf = lidar_depth(exact, 0.25, 0.01, np.random.default_rng(0))
    assert depth.shape == conf.shape == (40, 50) and depth.dtype == np.uint16
    assert conf.dtype == np.uint8 and set(np.unique(conf)) <= {0, 1, 2}
    z = depth.astype(np.float64) / 1000
    inner_box, inner_wall = z[17:23, 17:28], z[8:13, 2:12]  # whole footprints, no edges
    for patch in (np.s_[17:23, 17:28], np.s_[8:13, 2:12]):  # high except the dropouts
        assert ((conf[patch] == 2) | (depth[patch] == 0)).all() and (conf[patch] == 2).mean() > 0.9
    # noise sd = 0.01 m x Z^2 at high confidence (dropouts excluded)
    for patch, truth in ((inner_box, 1.0), (inner_wall, 2.0)):
        err = patch[patch > 0] - truth
        assert abs(err.mean()) < 0.6 * 0.01 * truth**2
        assert 0.7 < err.std() / (0.01 * truth**2) < 1.3
    assert (conf[:4] == 0).all() and (depth[:4] == 0).all()  # no surface, no depth
    # The box's outline mixes 1 m and 2 m: low confidence; the far wall: at most medium.
    assert (conf[15, 17:28] == 0).all() and (conf[25, 17:28] == 0).all()
    assert (conf[8:38, 42:50] <= 1).all() and (conf[8:38, 42:50] == 1).mean() > 0.9
    holes = (depth[6:] == 0).mean()  # below the sky: dropouts only
    assert 0.2 * DROPOUT < holes < 3 * DROPOUT
    assert (conf[depth == 0] == 0).all()
    # The same generator state gives the same map; the scale sets the resolution.
    again = lidar_depth(exact, 0.25, 0.01, np.random.default_rng(0))
    assert (again[0] == depth).all() and (again[1] == conf).all()
    assert lidar_depth(exact, 1.0, 0.0, np.random.default_rng(1))[0].shape == (160, 200)


def test_lidar_sensor_writes_confidence_maps_and_switches_back(tmp_path):
    spec = small_spec(num_train=3, num_val=1, frames=2, depth_sensor="lidar", depth_scale=0.5)
    generate(spec, tmp_path, progress=False)
    data = load(tmp_path, "train")
    assert data["info"]["depth_sensor"] == "lidar" and data["info"]["depth_scale"] == 0.5
    for img in data["images"]:
        depth = cv2.imread(str(tmp_path / img["depth_file"]), cv2.IMREAD_UNCHANGED)
        conf = cv2.imread(str(tmp_path / img["confidence_file"]), cv2.IMREAD_UNCHANGED)
        assert depth.shape == conf.shape == (H // 2, W // 2)
        assert set(np.unique(conf)) <= {0, 1, 2} and (conf == 2).any()
    seq = json.loads((tmp_path / "sequences/seq_000/annotations.json").read_text())
    assert all((tmp_path / "sequences/seq_000" / im["confidence_file"]).is_file()
               for im in seq["images"])  # fmt: skip
    # Colour, labels and the rest of the files are those of the exact sensor.
    exact = tmp_path / "exact"
    generate(small_spec(num_train=3, num_val=1, frames=2), exact, progress=False)
    assert (exact / "train/000000000002.jpg").read_bytes() == (tmp_path / "train/000000000002.jpg").read_bytes()  # fmt: skip
    assert load(exact, "train")["annotations"] == data["annotations"]
    # Back to the exact sensor in the same folder: confidence maps go, depth is full size.
    generate(small_spec(num_train=3, num_val=1, frames=2), tmp_path, progress=False)
    assert not list(tmp_path.rglob("confidence/*.png")) and not list(tmp_path.rglob("confidence/*/*.png"))  # fmt: skip
    assert "confidence_file" not in load(tmp_path, "train")["images"][0]
    depth = cv2.imread(str(tmp_path / "depth/train/000000000001.png"), cv2.IMREAD_UNCHANGED)
    assert depth.shape == (H, W)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("depth_sensor", "kinect", "synthetic.depth_sensor = 'kinect' must be one of exact, lidar"),
        ("depth_scale", 0.0, "synthetic.depth_scale = 0.0 must be in [0.05, 1]"),
        ("depth_noise_m", -0.1, "synthetic.depth_noise_m = -0.1 must be in [0, 0.5] metres"),
    ],
)
def test_depth_sensor_values_are_checked(tmp_path, key, value, message):
    with pytest.raises(PkmodelError) as err:
        small_spec(**{key: value}).check()
    assert str(err.value) == message


def test_cli_depth_sensor_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["make-synthetic", "--out", "syn", "--num-train", "1", "--num-val", "0", "--size",
            "64x48", "--sequences", "0", "--workers", "1", "--depth-sensor"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "lidar"])
    assert result.exit_code == 0, result.output
    conf = cv2.imread("syn/confidence/train/000000000001.png", cv2.IMREAD_UNCHANGED)
    assert conf.shape == (24, 32)
    result = CliRunner().invoke(app, [*args, "kinect"])
    assert result.exit_code == 2 and "synthetic.depth_sensor" in result.output
    assert "'kinect'" in result.output and len(result.output.strip().splitlines()) == 1
