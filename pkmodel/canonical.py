"""The canonical body frame: pelvis origin and a right-handed rotation (determinant +1).

Axes, as rows of the rotation R (camera frame -> canonical frame: p_c = R @ (p - pelvis)):

- x "right": toward the subject's LEFT hip, i.e. to the right as seen by someone facing the
  subject. (The subject's own right, up and forward form a LEFT-handed triad: using it gives a
  reflection, determinant -1, the fault this module exists to avoid.) From the hips; from the
  shoulders when a hip is missing.
- y "up": from the hips toward the shoulders (mean of the known ones), made orthogonal to x;
  the camera's up (-y) when no hip or no shoulder is known.
- z "forward": x cross y, the direction the chest faces.

A subject facing the camera upright has x ~ camera x, y ~ -camera y, z ~ -camera z.
Everything is vectorised over any leading dimensions; frames where no frame can be built (no
left/right pair, or a degenerate one) get NaN.
"""

from __future__ import annotations

import numpy as np

from pkmodel.skeleton import JOINT_INDEX, NUM_JOINTS

_LH, _RH = JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]
_LS, _RS = JOINT_INDEX["left_shoulder"], JOINT_INDEX["right_shoulder"]
_CAMERA_UP = np.array([0.0, -1.0, 0.0])
_EPS = 1e-9


def _known(p: np.ndarray) -> np.ndarray:
    return np.isfinite(p).all(axis=-1)


def _nanmean2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean of the known ones of two points (..., 3); NaN when neither is known."""
    ka, kb = _known(a)[..., None], _known(b)[..., None]
    total = np.where(ka, a, 0.0) + np.where(kb, b, 0.0)
    n = ka.astype(np.float64) + kb
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > _EPS, v / n, np.nan)


def canonical_frame(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame joints (..., K>=17, 3) in COCO order -> (origin (..., 3), R (..., 3, 3)).

    The origin is the pelvis (mean of both hips; NaN unless both are known). R's rows are the
    right, up and forward axes in camera coordinates; NaN when they cannot be built.
    """
    p = np.asarray(joints, dtype=np.float64)
    if p.shape[-2] < NUM_JOINTS or p.shape[-1] != 3:
        raise ValueError(f"expected (..., >={NUM_JOINTS}, 3) joints, got {p.shape}")
    lh, rh, ls, rs = p[..., _LH, :], p[..., _RH, :], p[..., _LS, :], p[..., _RS, :]
    hips, shoulders = _known(lh) & _known(rh), _known(ls) & _known(rs)

    right = np.where(hips[..., None], lh - rh, np.where(shoulders[..., None], ls - rs, np.nan))
    right = _unit(right)
    torso_up = _nanmean2(ls, rs) - _nanmean2(lh, rh)
    up_hint = np.where(_known(torso_up)[..., None], torso_up, _CAMERA_UP)
    up = _unit(up_hint - (up_hint * right).sum(axis=-1, keepdims=True) * right)
    forward = np.cross(right, up)
    rotation = np.stack([right, up, forward], axis=-2)
    origin = np.where(hips[..., None], (lh + rh) / 2.0, np.nan)
    return origin, rotation


def to_canonical(joints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-frame joints (..., K, 3) -> (canonical joints (..., K, 3), origin, rotation).

    Canonical joints are NaN where the joint, the origin or the rotation is unknown.
    """
    p = np.asarray(joints, dtype=np.float64)
    origin, rotation = canonical_frame(p)
    local = np.einsum("...ij,...kj->...ki", rotation, p - origin[..., None, :])
    return local, origin, rotation
