"""The one source of truth for the COCO-17 skeleton: joint names, flips, limbs, OKS sigmas.

Pelvis and neck are derived joints (midpoints of the hips / shoulders); they are not predicted.
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}
# The face's points (nose, eyes, ears): small features on the head, not joints inside a limb.
FACE_JOINTS: tuple[int, ...] = tuple(range(JOINT_INDEX["right_ear"] + 1))

# Left/right pairs, by index.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))  # fmt: skip


def _flip_index() -> np.ndarray:
    idx = np.arange(NUM_JOINTS)
    for a, b in FLIP_PAIRS:
        idx[a], idx[b] = b, a
    return idx


# After a horizontal flip, joint j of the flipped image is joint FLIP_INDEX[j] of the original.
FLIP_INDEX: np.ndarray = _flip_index()
FLIP_INDEX.setflags(write=False)

# The COCO person skeleton (the "skeleton" field of the COCO categories), 0-based.
LIMBS: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
# Limbs that are rigid bones (used by the optional bone-length loss): arms, legs, no face links.
BONES: tuple[tuple[int, int], ...] = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16))  # fmt: skip

# COCO OKS per-keypoint sigmas (pycocotools' COCOeval defaults).
OKS_SIGMAS: np.ndarray = np.array(
    [.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]
) / 10.0  # fmt: skip
OKS_SIGMAS.setflags(write=False)

# Derived joints, appended after the 17 COCO joints where an extended skeleton is used.
DERIVED_JOINTS: dict[str, tuple[int, int]] = {
    "pelvis": (JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]),
    "neck": (JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_shoulder"]),
}
EXTENDED_JOINT_NAMES: tuple[str, ...] = JOINT_NAMES + tuple(DERIVED_JOINTS)
PELVIS = EXTENDED_JOINT_NAMES.index("pelvis")
NECK = EXTENDED_JOINT_NAMES.index("neck")


def add_derived_joints(points: np.ndarray) -> np.ndarray:
    """Append pelvis and neck to ``points`` of shape (..., 17, D) -> (..., 19, D).

    A derived joint is NaN when either of its parents is NaN.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-2] != NUM_JOINTS:
        raise ValueError(f"expected {NUM_JOINTS} joints on axis -2, got shape {points.shape}")
    extra = [(points[..., a, :] + points[..., b, :]) / 2.0 for a, b in DERIVED_JOINTS.values()]
    return np.concatenate([points, np.stack(extra, axis=-2)], axis=-2)


def coco_category() -> dict:
    """The COCO 'person' category with 1-based skeleton, as written in annotation files."""
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(JOINT_NAMES),
        "skeleton": [[a + 1, b + 1] for a, b in LIMBS],
    }
