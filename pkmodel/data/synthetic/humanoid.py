"""A procedural articulated humanoid in its body frame (x left, y up, z forward, metres).

A body shape (proportions, limb thickness, hair) and a pose (joint angles within limits) give
the posed body: the COCO-17 joints, the surface radius around each joint, and the capsules and
ellipsoids the body is made of. Right-side rotations mirror the left ones (x -> -x), so a
symmetric pose gives a symmetric body.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np

from pkmodel.common.skeleton import JOINT_INDEX, NUM_JOINTS


class Part(IntEnum):
    """What a primitive is, so a scene can dress it (skin, shirt, trousers...)."""

    SKIN = 0  # head, neck, nose, ears
    HAIR = 1
    EYE = 2
    SHIRT = 3  # chest, abdomen, shoulder girdle
    UPPER_ARM = 4
    FOREARM = 5
    HAND = 6
    PELVIS = 7
    THIGH = 8
    SHANK = 9
    FOOT = 10
    PROP = 11  # a seat under a sitting person: rendered, but not part of the person


NUM_PARTS = len(Part)

ANGLE_NAMES: tuple[str, ...] = (
    "root_pitch", "root_roll",
    "spine_flex", "spine_side", "spine_twist",
    "neck_flex", "neck_side", "neck_twist",
    "l_shoulder_flex", "l_shoulder_abd", "l_shoulder_twist", "l_elbow", "l_wrist",
    "r_shoulder_flex", "r_shoulder_abd", "r_shoulder_twist", "r_elbow", "r_wrist",
    "l_hip_flex", "l_hip_abd", "l_hip_twist", "l_knee", "l_ankle",
    "r_hip_flex", "r_hip_abd", "r_hip_twist", "r_knee", "r_ankle",
)  # fmt: skip
ANGLE = {name: i for i, name in enumerate(ANGLE_NAMES)}

# Joint limits in degrees, shared by both sides. Positive: pitch / flexion forward (knee and
# ankle: bending back / toes down), abduction away from the body, twist of the limb's bend.
_LIMITS_DEG = {
    "root_pitch": (-20, 75), "root_roll": (-15, 15),
    "spine_flex": (-25, 60), "spine_side": (-30, 30), "spine_twist": (-40, 40),
    "neck_flex": (-40, 50), "neck_side": (-30, 30), "neck_twist": (-75, 75),
    "shoulder_flex": (-60, 180), "shoulder_abd": (-15, 180), "shoulder_twist": (-70, 70),
    "elbow": (0, 150), "wrist": (-60, 60),
    "hip_flex": (-30, 130), "hip_abd": (-15, 70), "hip_twist": (-40, 40),
    "knee": (0, 150), "ankle": (-45, 50),
}  # fmt: skip
ANGLE_LIMITS: np.ndarray = np.radians(
    [_LIMITS_DEG[n[2:] if n[:2] in ("l_", "r_") else n] for n in ANGLE_NAMES]
)
ANGLE_LIMITS.setflags(write=False)

POSE_KINDS: tuple[str, ...] = (
    "standing", "walking", "arms_raised", "crouching", "sitting", "lunge", "bending",
    "one_leg", "random",
)  # fmt: skip
POSE_WEIGHTS = np.array([0.18, 0.2, 0.17, 0.1, 0.1, 0.06, 0.05, 0.05, 0.09])

# Proportions as fractions of the body height (Drillis & Contini style anthropometry).
_LENGTHS = {
    "pelvis_to_waist": 0.10, "waist_to_neck": 0.20, "neck_len": 0.05, "head_up": 0.055,
    "head_fwd": 0.008, "hip_half": 0.052, "shoulder_half": 0.105, "shoulder_drop": 0.012,
    "upper_arm": 0.186, "forearm": 0.146, "hand": 0.07, "thigh": 0.245, "shank": 0.246,
    "ankle_h": 0.039, "heel": 0.02, "toe": 0.09,
}  # fmt: skip
# Radii as fractions of the height. Limbs taper: "_r" at the proximal joint, "_end" at the
# distal one. Girth scales the proximal radii and the trunk fully, the distal radii (wrists,
# knees, ankles) by its square root; the head and face do not scale with girth.
_RADII = {
    "neck_r": 0.032, "girdle_r": 0.034, "upper_arm_r": 0.027, "forearm_r": 0.022,
    "hand_r": 0.014, "thigh_r": 0.046, "shank_r": 0.032, "foot_r": 0.021,
    "chest": (0.1, 0.09, 0.064), "abdomen": (0.088, 0.085, 0.058), "pelvis": (0.095, 0.065, 0.062),
}  # fmt: skip
_DISTAL = {"upper_arm_end": 0.021, "forearm_end": 0.016, "thigh_end": 0.03, "shank_end": 0.021}
_HEAD = {"head": (0.044, 0.063, 0.054), "eye_r": 0.0062, "nose_r": 0.009, "ear": (0.007, 0.017, 0.011)}  # fmt: skip
HAIR_STYLES = ("none", "short", "long")


@dataclass(frozen=True)
class BodyShape:
    """One person's build: lengths and radii in metres, and a hair style."""

    height: float
    dims: dict  # name -> float (lengths, radii) or (3,) tuple (ellipsoid radii)
    hair: str


def sample_body(rng: np.random.Generator) -> BodyShape:
    """Random adult (sometimes a child) with jittered proportions and limb thickness."""
    child = rng.random() < 0.08
    height = rng.uniform(1.05, 1.45) if child else rng.uniform(1.5, 1.95)
    girth = rng.uniform(0.8, 1.0) if child else rng.uniform(0.82, 1.35)
    head_scale = 1.2 if child else rng.uniform(0.93, 1.07)

    def jitter(sd: float) -> float:
        return float(np.clip(rng.normal(1.0, sd), 1 - 2.5 * sd, 1 + 2.5 * sd))

    dims: dict = {k: v * height * jitter(0.04) for k, v in _LENGTHS.items()}
    for k, v in _RADII.items():
        scale = height * girth * jitter(0.06)
        dims[k] = tuple(x * scale for x in v) if isinstance(v, tuple) else v * scale
    for k, v in _DISTAL.items():
        dims[k] = v * height * girth**0.5 * jitter(0.06)
    # A wider build widens the hips and shoulders a little, too.
    dims["hip_half"] *= girth**0.5
    dims["shoulder_half"] *= girth**0.3
    for k, v in _HEAD.items():
        scale = height * head_scale * (1.0 + (0.25 if child else 0.0))
        dims[k] = tuple(x * scale for x in v) if isinstance(v, tuple) else v * scale
    hair = HAIR_STYLES[rng.choice(3, p=[0.1, 0.6, 0.3])]
    return BodyShape(height=float(height), dims=dims, hair=hair)


# --- poses ----------------------------------------------------------------------------------


def _both(p: np.ndarray, name: str, left: float, right: float | None = None) -> None:
    p[ANGLE["l_" + name]] = left
    p[ANGLE["r_" + name]] = left if right is None else right


def _arm(rng: np.random.Generator, style: str) -> tuple[float, float, float, float]:
    """(flexion, abduction, twist, elbow) in degrees for one arm."""
    u = rng.uniform
    if style == "down":
        return rng.normal(5, 12), u(6, 22), rng.normal(0, 15), u(3, 40)
    if style == "up":
        if rng.random() < 0.5:
            return u(140, 180), u(0, 30), rng.normal(0, 20), u(0, 45)
        return u(0, 25), u(140, 180), rng.normal(0, 20), u(0, 45)
    if style == "out":
        return u(-10, 35), u(65, 115), rng.normal(0, 20), u(0, 45)
    if style == "forward":
        return u(55, 115), u(0, 35), rng.normal(0, 20), u(0, 60)
    if style == "wave":
        return u(0, 40), u(70, 125), u(40, 70), u(60, 135)
    # "bent": hands in front of the body (phone, holding something, arms folded)
    return u(10, 60), u(5, 30), u(-30, 10), u(70, 140)


def _kind_pose(rng: np.random.Generator, kind: str) -> np.ndarray:
    """Mean pose of one kind, in degrees (before the shared noise and clipping)."""
    u = rng.uniform
    p = np.zeros(len(ANGLE_NAMES))
    p[ANGLE["neck_twist"]] = rng.normal(0, 25)
    p[ANGLE["neck_flex"]] = rng.normal(5, 12)
    arms = ("down", "down")
    legs_done = False
    if kind == "standing":
        arms = tuple(rng.choice(["down", "down", "down", "bent"], size=2))
        _both(p, "hip_abd", u(0, 10), u(0, 10))
        _both(p, "knee", u(0, 12), u(0, 12))
        _both(p, "hip_flex", rng.normal(0, 6), rng.normal(0, 6))
    elif kind == "walking":
        run = rng.random() < 0.25
        gait = _gait_degrees(
            phase=u(0, 2 * np.pi),
            amp=u(30, 50) if run else u(15, 35),
            bend=u(60, 100) if run else u(25, 50),
            elbow=u(70, 100) if run else u(10, 40),
            lean=u(8, 25) if run else u(0, 10),
        )
        keep = p[ANGLE["neck_twist"]], p[ANGLE["neck_flex"]]
        p = gait
        p[ANGLE["neck_twist"]], p[ANGLE["neck_flex"]] = keep
        arms, legs_done = (), True
    elif kind == "arms_raised":
        styles = ["up", "out", "forward", "wave"]
        first = str(rng.choice(styles))
        second = str(rng.choice([*styles, "down", "down", "bent"]))
        arms = (first, second) if rng.random() < 0.5 else (second, first)
        _both(p, "hip_abd", u(0, 15), u(0, 15))
        _both(p, "knee", u(0, 15), u(0, 15))
    elif kind == "crouching":
        hip = u(70, 125)
        _both(p, "hip_flex", hip + rng.normal(0, 8), hip + rng.normal(0, 8))
        knee = u(80, 145)
        _both(p, "knee", knee + rng.normal(0, 8), knee + rng.normal(0, 8))
        _both(p, "hip_abd", u(5, 30), u(5, 30))
        p[ANGLE["root_pitch"]] = u(0, 25)
        p[ANGLE["spine_flex"]] = u(5, 40)
        p[ANGLE["neck_flex"]] = u(-35, 0)
        arms = tuple(rng.choice(["forward", "bent", "down"], size=2))
    elif kind == "sitting":
        hip = u(75, 105)
        _both(p, "hip_flex", hip + rng.normal(0, 5), hip + rng.normal(0, 5))
        _both(p, "knee", u(70, 110), u(70, 110))
        _both(p, "hip_abd", u(0, 20), u(0, 20))
        p[ANGLE["root_pitch"]] = u(-10, 10)
        p[ANGLE["spine_flex"]] = u(-5, 20)
        arms = tuple(rng.choice(["bent", "bent", "down", "forward", "up"], size=2))
    elif kind == "lunge":
        front, back = (("l_", "r_"), ("r_", "l_"))[rng.integers(2)]
        p[ANGLE[front + "hip_flex"]], p[ANGLE[front + "knee"]] = u(50, 95), u(60, 110)
        p[ANGLE[back + "hip_flex"]], p[ANGLE[back + "knee"]] = u(-30, -5), u(0, 40)
        p[ANGLE["root_pitch"]] = u(0, 15)
        arms = tuple(rng.choice(["out", "up", "down", "forward"], size=2))
    elif kind == "bending":
        pitch = u(30, 75)
        p[ANGLE["root_pitch"]] = pitch
        _both(p, "hip_flex", pitch + rng.normal(0, 5), pitch + rng.normal(0, 5))
        _both(p, "knee", u(0, 30), u(0, 30))
        p[ANGLE["spine_flex"]] = u(10, 45)
        p[ANGLE["neck_flex"]] = u(-40, 0)
        hang = pitch + p[ANGLE["spine_flex"]]  # arms hanging straight down
        _both(p, "shoulder_flex", hang + rng.normal(0, 15), hang + rng.normal(0, 15))
        _both(p, "shoulder_abd", u(0, 20), u(0, 20))
        _both(p, "elbow", u(0, 40), u(0, 40))
        arms = ()
    elif kind == "one_leg":
        up = ("l_", "r_")[rng.integers(2)]
        p[ANGLE[up + "hip_flex"]], p[ANGLE[up + "knee"]] = u(30, 110), u(0, 120)
        p[ANGLE[up + "hip_abd"]] = u(0, 40)
        arms = tuple(rng.choice(["out", "up", "forward", "down"], size=2))
    else:  # random: anywhere inside the middle of the joint limits
        lo, hi = np.degrees(ANGLE_LIMITS[:, 0]), np.degrees(ANGLE_LIMITS[:, 1])
        p = lo + (hi - lo) * rng.uniform(0.15, 0.85, size=len(p))
        p[ANGLE["root_pitch"]] = u(-10, 30)
        arms, legs_done = (), True
    for side, style in zip(("l_", "r_"), arms, strict=False):
        flex, abd, twist, elbow = _arm(rng, style)
        p[ANGLE[side + "shoulder_flex"]], p[ANGLE[side + "shoulder_abd"]] = flex, abd
        p[ANGLE[side + "shoulder_twist"]], p[ANGLE[side + "elbow"]] = twist, elbow
    if not legs_done:
        _both(p, "hip_twist", rng.normal(0, 8), rng.normal(0, 8))
    _flat_feet(p, rng.normal(0, 8, size=2))
    return p


def _gait_degrees(phase: float, amp: float, bend: float, elbow: float, lean: float) -> np.ndarray:
    """Walking / running at gait ``phase`` (radians): legs swing by ``amp``, the swinging knee
    bends by up to ``bend``, arms swing against the legs (degrees)."""
    p = np.zeros(len(ANGLE_NAMES))
    s, c = np.sin(phase), np.cos(phase)
    _both(p, "hip_flex", amp * s, -amp * s)
    _both(p, "knee", 5 + bend * max(0.0, c), 5 + bend * max(0.0, -c))
    _both(p, "shoulder_flex", -0.8 * amp * s, 0.8 * amp * s)
    _both(p, "shoulder_abd", 10.0)
    _both(p, "elbow", elbow)
    p[ANGLE["spine_flex"]] = lean
    p[ANGLE["spine_twist"]] = -0.3 * amp * s
    _flat_feet(p)
    return p


def gait_pose(phase: float, amp: float, bend: float, elbow: float, lean: float) -> np.ndarray:
    """Joint angles (radians) of a walking cycle at ``phase``; see ``_gait_degrees``."""
    return clip_pose(np.radians(_gait_degrees(phase, amp, bend, elbow, lean)))


def _flat_feet(p: np.ndarray, noise: np.ndarray | None = None) -> None:
    """Feet flat on the floor: each ankle undoes its shank's pitch (degrees, in place)."""
    for i, side in enumerate(("l_", "r_")):
        shank_pitch = p[ANGLE["root_pitch"]] - p[ANGLE[side + "hip_flex"]] + p[ANGLE[side + "knee"]]
        p[ANGLE[side + "ankle"]] = -shank_pitch + (0.0 if noise is None else noise[i])


def sample_pose(rng: np.random.Generator, kind: str | None = None) -> tuple[np.ndarray, str]:
    """Random joint angles (radians, within ANGLE_LIMITS) of a pose kind (random if None)."""
    if kind is None:
        kind = POSE_KINDS[rng.choice(len(POSE_KINDS), p=POSE_WEIGHTS / POSE_WEIGHTS.sum())]
    degrees = _kind_pose(rng, kind) + rng.normal(0.0, 3.0, size=len(ANGLE_NAMES))
    return clip_pose(np.radians(degrees)), kind


def clip_pose(angles: np.ndarray) -> np.ndarray:
    """Angles clipped into the joint limits."""
    return np.clip(angles, ANGLE_LIMITS[:, 0], ANGLE_LIMITS[:, 1])


# --- forward kinematics -----------------------------------------------------------------------


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_y(angle: float) -> np.ndarray:
    """Rotation about the up axis (a person's heading in the world)."""
    return _ry(angle)


@dataclass(frozen=True)
class PosedBody:
    """A posed person: joints and primitives in one frame (the body frame, until moved)."""

    joints: np.ndarray  # (17, 3) COCO-17
    joint_radius: np.ndarray  # (17,) body-surface radius around each joint, metres
    cap_a: np.ndarray  # (Nc, 3) capsule segment ends
    cap_b: np.ndarray
    cap_r: np.ndarray  # (Nc,)
    cap_part: np.ndarray  # (Nc,) Part
    ell_c: np.ndarray  # (Ne, 3) ellipsoid centers
    ell_axes: np.ndarray  # (Ne, 3, 3) rotation: columns are the principal axes
    ell_radii: np.ndarray  # (Ne, 3)
    ell_part: np.ndarray  # (Ne,) Part

    def moved(self, rotation: np.ndarray, translation: np.ndarray) -> PosedBody:
        """The same body after x -> R x + t."""
        r, t = np.asarray(rotation, dtype=np.float64), np.asarray(translation, dtype=np.float64)
        return replace(
            self,
            joints=self.joints @ r.T + t,
            cap_a=self.cap_a @ r.T + t,
            cap_b=self.cap_b @ r.T + t,
            ell_c=self.ell_c @ r.T + t,
            ell_axes=r @ self.ell_axes,
        )

    def extent(self, direction: np.ndarray) -> tuple[float, float]:
        """(min, max) of the body's surface along a unit direction (exact support function)."""
        n = np.asarray(direction, dtype=np.float64)
        ends = np.concatenate([self.cap_a @ n, self.cap_b @ n])
        radii = np.concatenate([self.cap_r, self.cap_r])
        # Ellipsoid support: sqrt(sum_k (n . axis_k)^2 radius_k^2).
        reach = np.sqrt((((n @ self.ell_axes) * self.ell_radii) ** 2).sum(axis=1))
        centers = self.ell_c @ n
        lo = min((ends - radii).min(), (centers - reach).min())
        hi = max((ends + radii).max(), (centers + reach).max())
        return float(lo), float(hi)


def _surface_point(radii: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point of an axis-aligned ellipsoid (at the origin) in a direction, and its unit normal."""
    d = np.asarray(direction, dtype=np.float64)
    p = d / np.linalg.norm(d / radii)
    n = p / radii**2
    return p, n / np.linalg.norm(n)


def _ellipsoid_reach(
    center: np.ndarray, radii: np.ndarray, axes: np.ndarray, point: np.ndarray, n: np.ndarray
) -> float:
    """Distance from ``point`` (inside) along ``n`` to the ellipsoid's surface (0 if outside)."""
    o = axes.T @ (point - center) / radii
    d = axes.T @ n / radii
    a, b, c = d @ d, o @ d, o @ o - 1.0
    if c > 0:
        return 0.0
    return float((-b + np.sqrt(b * b - a * c)) / a)


def _tapered(
    a: np.ndarray, b: np.ndarray, r_a: float, r_b: float, part: Part
) -> list[tuple[np.ndarray, np.ndarray, float, Part]]:
    """A limb from ``a`` (radius r_a) to ``b`` (radius r_b) as two overlapping capsules: each
    joint sits at the end of a capsule of its own radius."""
    mid_a, mid_b = a + 0.6 * (b - a), a + 0.4 * (b - a)
    return [(a, mid_a, r_a, part), (mid_b, b, r_b, part)]


def pose_body(shape: BodyShape, angles: np.ndarray, seat: bool = False) -> PosedBody:
    """Forward kinematics: the body of ``shape`` in pose ``angles``, root at the mid-hip point.

    ``seat`` adds a stool under the pelvis reaching down to the lowest point of the feet.
    """
    d, a = shape.dims, np.asarray(angles, dtype=np.float64)
    up, down = np.array([0.0, 1.0, 0.0]), np.array([0.0, -1.0, 0.0])
    caps: list[tuple[np.ndarray, np.ndarray, float, Part]] = []
    ells: list[tuple[np.ndarray, np.ndarray, np.ndarray, Part]] = []
    joints = np.zeros((NUM_JOINTS, 3))
    radius = np.zeros(NUM_JOINTS)
    j = JOINT_INDEX

    r_pelvis = _rx(a[ANGLE["root_pitch"]]) @ _rz(a[ANGLE["root_roll"]])
    r_spine = (
        r_pelvis
        @ _ry(a[ANGLE["spine_twist"]])
        @ _rx(a[ANGLE["spine_flex"]])
        @ _rz(a[ANGLE["spine_side"]])
    )
    r_head = (
        r_spine
        @ _ry(a[ANGLE["neck_twist"]])
        @ _rx(a[ANGLE["neck_flex"]])
        @ _rz(a[ANGLE["neck_side"]])
    )
    waist = r_pelvis @ (up * d["pelvis_to_waist"])
    neck_base = waist + r_spine @ (up * d["waist_to_neck"])
    neck_top = neck_base + r_head @ (up * d["neck_len"])
    head_c = neck_top + r_head @ np.array([0.0, d["head_up"], d["head_fwd"]])

    # Torso and head.
    pelvis_c = r_pelvis @ np.array([0.0, 0.015, -0.005]) * shape.height
    ells.append((pelvis_c, r_pelvis, np.array(d["pelvis"]), Part.PELVIS))
    ells.append((waist + r_spine @ (up * 0.02 * shape.height), r_spine, np.array(d["abdomen"]), Part.SHIRT))  # fmt: skip
    chest_c = waist + r_spine @ np.array([0.0, 0.12, 0.005]) * shape.height
    ells.append((chest_c, r_spine, np.array(d["chest"]), Part.SHIRT))
    caps.append((neck_base, neck_top, d["neck_r"], Part.SKIN))
    head_r = np.array(d["head"])
    ells.append((head_c, r_head, head_r, Part.SKIN))
    if shape.hair != "none":
        hair_c = head_c + r_head @ (np.array([0.0, 0.14, -0.18]) * head_r[1])
        ells.append((hair_c, r_head, head_r * np.array([1.06, 1.04, 1.04]), Part.HAIR))
    if shape.hair == "long":
        back = head_c + r_head @ np.array([0.0, -0.6, -0.45]) * head_r
        ells.append((back, r_head, head_r * np.array([1.0, 1.05, 0.55]), Part.HAIR))

    # Face: nose, eyes and ears sit on the head's surface (their centers are the keypoints).
    nose_p, nose_n = _surface_point(head_r, np.array([0.0, -0.12, 1.0]))
    nose = head_c + r_head @ (nose_p + 0.25 * d["nose_r"] * nose_n)
    ells.append((nose, r_head, np.full(3, d["nose_r"]), Part.SKIN))
    joints[j["nose"]], radius[j["nose"]] = nose, d["nose_r"]
    for side, s in (("left", 1.0), ("right", -1.0)):
        eye_p, eye_n = _surface_point(head_r, np.array([0.33 * s, 0.12, 1.0]))
        eye = head_c + r_head @ (eye_p - 0.35 * d["eye_r"] * eye_n)
        ells.append((eye, r_head, np.full(3, d["eye_r"]), Part.EYE))
        joints[j[f"{side}_eye"]], radius[j[f"{side}_eye"]] = eye, d["eye_r"]
        ear_p, ear_n = _surface_point(head_r, np.array([s, -0.05, -0.08]))
        ear_r = np.array(d["ear"])
        ear = head_c + r_head @ (ear_p + 0.9 * ear_r[0] * ear_n)
        ells.append((ear, r_head, ear_r, Part.SKIN))
        joints[j[f"{side}_ear"]], radius[j[f"{side}_ear"]] = ear, ear_r.max()

    # Arms and legs; the right side mirrors the left (abduction and twist change sign).
    shoulders = {}
    for side, s, pre in (("left", 1.0, "l_"), ("right", -1.0, "r_")):
        shoulder = neck_base + r_spine @ np.array([s * d["shoulder_half"], -d["shoulder_drop"], 0])
        r_up = (
            r_spine
            @ _rz(s * a[ANGLE[pre + "shoulder_abd"]])
            @ _rx(-a[ANGLE[pre + "shoulder_flex"]])
            @ _ry(s * a[ANGLE[pre + "shoulder_twist"]])
        )
        elbow = shoulder + r_up @ (down * d["upper_arm"])
        r_fore = r_up @ _rx(-a[ANGLE[pre + "elbow"]])
        wrist = elbow + r_fore @ (down * d["forearm"])
        hand_end = wrist + r_fore @ _rx(-a[ANGLE[pre + "wrist"]]) @ (down * d["hand"])
        caps += [
            *_tapered(shoulder, elbow, d["upper_arm_r"], d["upper_arm_end"], Part.UPPER_ARM),
            *_tapered(elbow, wrist, d["forearm_r"], d["forearm_end"], Part.FOREARM),
            (wrist, hand_end, d["hand_r"], Part.HAND),
        ]
        shoulders[side] = shoulder
        joints[j[f"{side}_shoulder"]] = shoulder
        joints[j[f"{side}_elbow"]], joints[j[f"{side}_wrist"]] = elbow, wrist
        radius[j[f"{side}_shoulder"]] = max(d["girdle_r"], d["upper_arm_r"])
        radius[j[f"{side}_elbow"]] = max(d["upper_arm_end"], d["forearm_r"])
        radius[j[f"{side}_wrist"]] = max(d["forearm_end"], d["hand_r"])

        hip = r_pelvis @ np.array([s * d["hip_half"], 0.0, 0.0])
        r_thigh = (
            r_pelvis
            @ _rz(s * a[ANGLE[pre + "hip_abd"]])
            @ _rx(-a[ANGLE[pre + "hip_flex"]])
            @ _ry(s * a[ANGLE[pre + "hip_twist"]])
        )
        knee = hip + r_thigh @ (down * d["thigh"])
        r_shank = r_thigh @ _rx(a[ANGLE[pre + "knee"]])
        ankle = knee + r_shank @ (down * d["shank"])
        r_foot = r_shank @ _rx(a[ANGLE[pre + "ankle"]])
        sole = d["ankle_h"] - d["foot_r"]
        heel = ankle + r_foot @ np.array([0.0, -sole, -d["heel"]])
        toe = ankle + r_foot @ np.array([0.0, -sole, d["toe"]])
        caps += [
            *_tapered(hip, knee, d["thigh_r"], d["thigh_end"], Part.THIGH),
            *_tapered(knee, ankle, d["shank_r"], d["shank_end"], Part.SHANK),
            (heel, toe, d["foot_r"], Part.FOOT),
        ]
        joints[j[f"{side}_hip"]], joints[j[f"{side}_knee"]], joints[j[f"{side}_ankle"]] = (
            hip,
            knee,
            ankle,
        )
        # The hip is buried in the pelvis: its radius is the pelvis' depth in front / behind.
        pelvis_radii = np.array(d["pelvis"])
        forward = r_pelvis[:, 2]
        radius[j[f"{side}_hip"]] = max(
            d["thigh_r"],
            _ellipsoid_reach(pelvis_c, pelvis_radii, r_pelvis, hip, forward),
            _ellipsoid_reach(pelvis_c, pelvis_radii, r_pelvis, hip, -forward),
        )
        radius[j[f"{side}_knee"]] = max(d["thigh_end"], d["shank_r"])
        radius[j[f"{side}_ankle"]] = d["shank_end"]
    caps.append((shoulders["left"], shoulders["right"], d["girdle_r"], Part.SHIRT))

    body = PosedBody(
        joints=joints,
        joint_radius=radius,
        cap_a=np.array([c[0] for c in caps]),
        cap_b=np.array([c[1] for c in caps]),
        cap_r=np.array([c[2] for c in caps]),
        cap_part=np.array([int(c[3]) for c in caps]),
        ell_c=np.array([e[0] for e in ells]),
        ell_axes=np.array([e[1] for e in ells]),
        ell_radii=np.array([e[2] for e in ells]),
        ell_part=np.array([int(e[3]) for e in ells]),
    )
    return _with_seat(body, shape) if seat else body


def _with_seat(body: PosedBody, shape: BodyShape) -> PosedBody:
    """Add a stool: a flat cushion under the pelvis and a post down to the floor."""
    floor = body.extent(np.array([0.0, 1.0, 0.0]))[0]
    pelvis = body.ell_c[body.ell_part == Part.PELVIS][0]
    pelvis_r = body.ell_radii[body.ell_part == Part.PELVIS][0]
    top = pelvis[1] - pelvis_r[1] * 0.85
    thick = 0.03 * shape.height
    cushion = np.array([pelvis[0], top - thick, pelvis[2] - 0.02 * shape.height])
    if cushion[1] - floor < 2 * thick:  # too low to be a stool (e.g. a deep squat)
        return body
    post_top, post_bottom = cushion.copy(), cushion.copy()
    post_bottom[1] = floor + 0.02
    return replace(
        body,
        cap_a=np.vstack([body.cap_a, post_top]),
        cap_b=np.vstack([body.cap_b, post_bottom]),
        cap_r=np.append(body.cap_r, 0.025),
        cap_part=np.append(body.cap_part, int(Part.PROP)),
        ell_c=np.vstack([body.ell_c, cushion]),
        ell_axes=np.concatenate([body.ell_axes, np.eye(3)[None]]),
        ell_radii=np.vstack([body.ell_radii, [0.2 * shape.height / 1.7, thick, 0.19]]),
        ell_part=np.append(body.ell_part, int(Part.PROP)),
    )
