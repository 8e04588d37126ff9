import numpy as np
import pytest

from pkmodel.common.draw import (
    LEFT_COLOR,
    MIDDLE_COLOR,
    OTHER_COLOR,
    RIGHT_COLOR,
    draw_center,
    draw_skeleton,
    image_grid,
    joint_sides,
    limb_sides,
    put_label,
    save_image,
)
from pkmodel.common.skeleton import JOINT_INDEX, LIMBS, NUM_JOINTS

J = JOINT_INDEX


def standing_pose(scale: float = 1.0) -> np.ndarray:
    """A person facing the camera in a 200 x 200 frame: their left is the image's right."""
    xy = {
        "nose": (100, 30), "left_eye": (106, 25), "right_eye": (94, 25), "left_ear": (112, 28),
        "right_ear": (88, 28), "left_shoulder": (130, 60), "right_shoulder": (70, 60),
        "left_elbow": (150, 95), "right_elbow": (50, 95), "left_wrist": (160, 130),
        "right_wrist": (40, 130), "left_hip": (120, 120), "right_hip": (80, 120),
        "left_knee": (125, 155), "right_knee": (75, 155), "left_ankle": (128, 190),
        "right_ankle": (72, 190),
    }  # fmt: skip
    kp = np.zeros((NUM_JOINTS, 3))
    for name, (x, y) in xy.items():
        kp[J[name]] = (x * scale, y * scale, 2)
    return kp


def midpoint(kp: np.ndarray, a: str, b: str) -> tuple[int, int]:
    x, y = (kp[J[a], :2] + kp[J[b], :2]) / 2
    return int(y), int(x)


def test_sides_from_the_joint_names():
    sides = joint_sides()
    assert sides[J["nose"]] == 0 and sides[J["left_wrist"]] == 1 and sides[J["right_knee"]] == 2
    limbs = dict(zip(LIMBS, limb_sides(), strict=True))
    assert limbs[(5, 6)] == 0 and limbs[(11, 12)] == 0  # shoulder and hip lines: middle
    assert limbs[(7, 9)] == 1 and limbs[(8, 10)] == 2 and limbs[(5, 11)] == 1


def test_left_right_and_middle_limbs_get_their_colours():
    kp = standing_pose()
    img = draw_skeleton(np.zeros((200, 200, 3), np.uint8), kp, thickness=3)
    assert tuple(img[midpoint(kp, "left_elbow", "left_wrist")]) == LEFT_COLOR
    assert tuple(img[midpoint(kp, "right_elbow", "right_wrist")]) == RIGHT_COLOR
    assert tuple(img[midpoint(kp, "left_hip", "right_hip")]) == MIDDLE_COLOR
    assert tuple(img[midpoint(kp, "right_knee", "right_ankle")]) == RIGHT_COLOR
    assert img[5, 5].max() == 0  # nothing drawn far from the person


def test_one_colour_for_other_people():
    kp = standing_pose()
    img = draw_skeleton(np.zeros((200, 200, 3), np.uint8), kp, color=OTHER_COLOR)
    drawn = img.reshape(-1, 3)[img.reshape(-1, 3).max(axis=1) > 0]
    # Anti-aliased edges are darker shades of the same colour: the hue never changes.
    full = drawn[drawn.max(axis=1) == 255]
    assert len(full) > 100 and np.all(full == OTHER_COLOR)


@pytest.mark.parametrize("hidden", ["nan", "invisible", "not_found"])
def test_missing_joints_and_their_limbs_are_skipped(hidden):
    kp = standing_pose()
    visible = None
    if hidden == "nan":
        kp[J["left_wrist"], :2] = np.nan
    elif hidden == "invisible":
        kp[J["left_wrist"], 2] = 0
    else:
        visible = kp[:, 2] > 0
        visible[J["left_wrist"]] = False
    img = draw_skeleton(np.zeros((200, 200, 3), np.uint8), kp, visible=visible, thickness=3)
    assert img[midpoint(standing_pose(), "left_elbow", "left_wrist")].max() == 0  # no forearm
    x, y = standing_pose()[J["left_wrist"], :2].astype(int)
    assert img[y, x].max() == 0  # no wrist dot
    assert tuple(img[midpoint(kp, "left_shoulder", "left_elbow")]) == LEFT_COLOR  # the rest is


@pytest.mark.parametrize(("h", "w"), [(16, 16), (97, 233), (1080, 720)])
def test_any_image_size(h, w):
    kp = standing_pose(min(h, w) / 200)
    img = draw_skeleton(np.zeros((h, w, 3), np.uint8), kp)
    assert img.shape == (h, w, 3) and img.max() > 0
    # Line width follows the image size.
    small = (draw_skeleton(np.zeros((200, 200, 3), np.uint8), standing_pose()) > 0).sum()
    if min(h, w) >= 720:
        assert (img > 0).sum() > 3 * small


def test_keypoints_land_at_subpixel_positions():
    img = np.zeros((40, 40, 3), np.uint8)
    kp = np.zeros((NUM_JOINTS, 3))
    kp[J["nose"]] = (20.5, 10.5, 2)  # the center of pixel (20, 10)
    draw_skeleton(img, kp, thickness=1)
    ys, xs = np.nonzero(img[..., 0])
    weights = img[ys, xs, 0].astype(float)
    assert np.average(xs, weights=weights) == pytest.approx(20, abs=0.05)
    assert np.average(ys, weights=weights) == pytest.approx(10, abs=0.05)


def test_far_away_points_do_not_break_drawing():
    kp = standing_pose()
    kp[J["left_wrist"], :2] = (1e9, -1e9)
    img = draw_skeleton(np.zeros((200, 200, 3), np.uint8), kp)
    assert img.max() > 0


def test_center_label_grid_and_save(tmp_path):
    import cv2

    img = draw_center(np.zeros((50, 50, 3), np.uint8), [25.5, 25.5])
    assert img[25, 25].max() > 0 and img[0, 0].max() == 0
    assert draw_center(np.zeros((8, 8, 3), np.uint8), [np.nan, 1]).max() == 0
    put_label(img, "#3 flip")
    assert img[2, 2].max() == 0 and img[:15, :40].max() > 0  # dark band, white text
    grid = image_grid([np.full((10, 20, 3), i * 40, np.uint8) for i in range(5)], cols=2, gap=3)
    assert grid.shape == (3 * 10 + 2 * 3, 2 * 20 + 3, 3)
    assert grid[0, 0, 0] == 0 and grid[0, 23, 0] == 40 and grid[26, 0, 0] == 160
    assert grid[26, 23:].max() == 0  # the sixth cell is empty
    save_image(tmp_path / "g.png", grid)
    back = cv2.imread(str(tmp_path / "g.png"))[:, :, ::-1]
    assert np.array_equal(back, grid)
