"""One random picture: people, props, room, camera and light; its RGB, depth and COCO labels.

Labels come from the render itself. A joint is

- 0 when it projects outside the image (or behind the camera): keypoint [0, 0, 0];
- 2 when the depth map at its pixel (the pixel that contains the keypoint) lies between one
  joint radius (+ ``VISIBILITY_TOLERANCE_M``) in front of the joint's Z and the joint's Z
  (+ the tolerance): the surface seen there is the joint's own body part;
- 1 otherwise (inside the image, hidden behind the other person, a prop or its own body).

Every person with at least one visible pixel is labelled; scenes where a visible person would
get fewer than ``MIN_LABELLED`` labelled joints are drawn again.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from pkmodel.common.camera import Intrinsics, project
from pkmodel.common.skeleton import JOINT_INDEX
from pkmodel.data.synthetic.camera import look_at, sample_intrinsics
from pkmodel.data.synthetic.humanoid import (
    NUM_PARTS,
    BodyShape,
    Part,
    PosedBody,
    pose_body,
    rotation_y,
    sample_body,
    sample_pose,
)
from pkmodel.data.synthetic.render import NEAR, NO_OWNER, Plane, RenderScene, Texture, render

VISIBILITY_TOLERANCE_M = 0.02
MIN_LABELLED = 3  # labelled joints (v > 0) a visible person needs
MAIN_MIN_LABELLED = 6  # ... and the main person
DEPTH_UNIT_M = 0.001
_UP = np.array([0.0, 1.0, 0.0])
_LIMB_JOINTS = [JOINT_INDEX[n] for n in ("left_wrist", "right_wrist", "left_ankle", "right_ankle")]


@dataclass(frozen=True)
class SceneParams:
    """What the caller decides: image size, how often a second person, sensor range."""

    width: int
    height: int
    second_person_prob: float
    max_depth_m: float


@dataclass(frozen=True)
class Outfit:
    """Colour per body part (NUM_PARTS, 3) and stripes per part (NUM_PARTS, 2): (freq, contrast)."""

    colors: np.ndarray
    stripes: np.ndarray


@dataclass(frozen=True)
class Person:
    """A posed person in the world frame (floor y = 0) with clothes."""

    body: PosedBody
    outfit: Outfit


@dataclass(frozen=True)
class Room:
    """World-frame background: textured planes (normal, offset, origin, e1, e2, texture), sky,
    props (capsules and ellipsoids), light."""

    planes: list[tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, Texture]]
    props: PosedBody
    prop_colors: np.ndarray  # (Nc + Ne, 3): capsules first
    light: np.ndarray
    ambient: float
    diffuse: float
    specular: float
    sky_top: np.ndarray
    sky_bottom: np.ndarray


@dataclass(frozen=True)
class Camera:
    intrinsics: Intrinsics
    rotation: np.ndarray  # world -> camera
    eye: np.ndarray  # camera position in the world

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points) - self.eye) @ self.rotation.T

    def extrinsics(self) -> dict[str, list]:
        """X_cam = R X_world + t (world: y up, floor y = 0)."""
        t = -self.rotation @ self.eye
        return {
            "R": np.round(self.rotation, 8).tolist(),
            "t": np.round(t, 6).tolist(),
        }


@dataclass(frozen=True)
class PersonLabel:
    """COCO annotation values of one person (pixels: COCO convention, 3D: camera frame)."""

    keypoints: np.ndarray  # (17, 3) x, y, v; v = 0 -> 0, 0, 0
    keypoints_3d: np.ndarray  # (17, 3) metres
    joint_radius: np.ndarray  # (17,) metres
    bbox: list[float]  # x, y, w, h of the rendered mask
    area: int  # mask pixels

    @property
    def num_keypoints(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass(frozen=True)
class Frame:
    """One rendered picture and its labels."""

    rgb: np.ndarray  # (H, W, 3) uint8 RGB
    depth_mm: np.ndarray  # (H, W) uint16 millimetres, 0 = no surface
    camera: Camera
    people: list[PersonLabel]
    owner: np.ndarray  # (H, W) int16 person index per pixel, -1 = none


# --- appearance -------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def sample_outfit(rng: np.random.Generator) -> Outfit:
    """Skin, hair, clothes and shoes colours; sleeve and trouser lengths."""
    u = rng.uniform
    tone = u(0, 1)
    skin = np.array([0.96, 0.80, 0.69]) * (1 - tone) + np.array([0.36, 0.23, 0.15]) * tone
    skin = np.clip(skin * (1 + rng.normal(0, 0.04, 3)), 0, 1)
    hair = [
        np.array([0.06, 0.05, 0.05]),
        np.array([0.30, 0.18, 0.10]),
        np.array([0.80, 0.66, 0.40]),
        np.array([0.55, 0.25, 0.10]),
        np.array([0.65, 0.65, 0.65]),
    ][rng.choice(5, p=[0.35, 0.3, 0.15, 0.08, 0.12])] * u(0.8, 1.15)
    shirt = _hsv(u(0, 1), u(0.05, 0.9), u(0.15, 0.95))
    trousers = _hsv(u(0, 1), u(0.05, 0.7), u(0.1, 0.8))
    if rng.random() < 0.3:  # jeans
        trousers = _hsv(u(0.58, 0.65), u(0.35, 0.7), u(0.25, 0.6))
    shoes = _hsv(u(0, 1), u(0, 0.5), u(0.05, 0.9))
    sleeves = rng.choice(3, p=[0.1, 0.4, 0.5])  # 0 none, 1 short, 2 long
    long_legs = rng.random() < 0.65
    colors = np.zeros((NUM_PARTS, 3))
    colors[[Part.SKIN, Part.HAND]] = skin
    colors[Part.HAIR] = np.clip(hair, 0, 1)
    colors[Part.EYE] = [0.08, 0.07, 0.07]
    colors[Part.SHIRT] = shirt
    colors[Part.UPPER_ARM] = shirt if sleeves > 0 else skin
    colors[Part.FOREARM] = shirt if sleeves > 1 else skin
    colors[[Part.PELVIS, Part.THIGH]] = trousers
    colors[Part.SHANK] = trousers if long_legs else skin
    colors[Part.FOOT] = shoes
    colors[Part.PROP] = _hsv(u(0, 1), u(0, 0.6), u(0.2, 0.8))
    stripes = np.zeros((NUM_PARTS, 2))
    if rng.random() < 0.3:
        stripes[[Part.SHIRT, Part.UPPER_ARM, Part.FOREARM] if sleeves else [Part.SHIRT]] = [
            u(25, 80),
            u(0.2, 0.6),
        ]
    return Outfit(colors=colors, stripes=stripes)


def _texture(rng: np.random.Generator, floor: bool) -> Texture:
    u = rng.uniform
    kinds = ["plain", "checker", "tiles", "planks", "stripes"]
    p = [0.25, 0.2, 0.25, 0.25, 0.05] if floor else [0.45, 0.05, 0.15, 0.1, 0.25]
    kind = kinds[rng.choice(len(kinds), p=p)]
    base = _hsv(u(0, 1), u(0, 0.6), u(0.2, 0.95))
    other = _hsv(u(0, 1), u(0, 0.6), u(0.1, 0.95)) if rng.random() < 0.6 else base * u(0.5, 0.85)
    scale = {"plain": 1.0, "checker": u(0.25, 1.0), "tiles": u(0.15, 0.6),
             "planks": u(0.08, 0.25), "stripes": u(0.04, 0.3)}[kind]  # fmt: skip
    return Texture(
        kind=kind,
        color0=base.astype(np.float32),
        color1=other.astype(np.float32),
        scale=float(scale),
        noise=rng.random((16, 16)).astype(np.float32),
        noise_cell=float(u(0.03, 0.6)),
        noise_amp=float(u(0.05, 0.6)),
    )


# --- placing people and the camera -------------------------------------------------------------


def place(body: PosedBody, yaw: float, x: float, z: float) -> PosedBody:
    """Turn ``body`` by ``yaw`` about the up axis and stand it on the floor at (x, z)."""
    turned = body.moved(rotation_y(yaw), np.zeros(3))
    floor = turned.extent(_UP)[0]
    return turned.moved(np.eye(3), np.array([x, -floor, z]))


def _footprint(body: PosedBody) -> np.ndarray:
    """World xz box (x0, x1, z0, z1) of a body."""
    return np.array([*body.extent(np.array([1.0, 0, 0])), *body.extent(np.array([0, 0, 1.0]))])


def _overlap(a: np.ndarray, b: np.ndarray, margin: float = 0.05) -> bool:
    return bool(
        a[0] < b[1] + margin
        and b[0] < a[1] + margin
        and a[2] < b[3] + margin
        and b[2] < a[3] + margin
    )


def max_distance(body: PosedBody, intrinsics: Intrinsics, max_depth: float) -> float:
    """Farthest distance at which wrists and ankles are still > 0.75 px thick (and in range)."""
    thin = float(body.joint_radius[_LIMB_JOINTS].min())
    return min(max_depth - 1.0, min(intrinsics.fx, intrinsics.fy) * thin / 0.75)


def sample_person(
    rng: np.random.Generator, shape: BodyShape | None = None, kind: str | None = None
) -> tuple[PosedBody, BodyShape, str]:
    """A random body in a random pose (body frame, with its stool when sitting)."""
    shape = shape or sample_body(rng)
    angles, kind = sample_pose(rng, kind)
    return pose_body(shape, angles, seat=kind == "sitting"), shape, kind


def frame_camera(
    rng: np.random.Generator,
    body: PosedBody,
    intrinsics: Intrinsics,
    fill: float,
    offset: tuple[float, float],
    farthest: float,
    roll_sd: float = 4.0,
) -> Camera:
    """A camera that sees ``body`` (world frame) filling about ``fill`` of the frame, with its
    center moved by ``offset`` (fractions of the half image) and a random height and roll."""
    w, h = intrinsics.width, intrinsics.height
    x0, x1 = body.extent(np.array([1.0, 0, 0]))
    y0, y1 = body.extent(_UP)
    z0, z1 = body.extent(np.array([0, 0, 1.0]))
    distance = max(intrinsics.fy * (y1 - y0) / (fill * h), intrinsics.fx * (x1 - x0) / (fill * w))
    distance = float(np.clip(distance, (z1 - z0) / 2 + 0.5, max(farthest, 1.0)))
    center = np.array([(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2])
    target = center + np.array([0.0, rng.normal(0, 0.04) * (y1 - y0), 0.0])
    # Phone height, looking down at most 50 degrees and up at most 30 (no bird's-eye views).
    height = float(np.clip(rng.normal(1.3, 0.45), 0.3, 2.6))
    height = float(np.clip(height, target[1] - distance * np.tan(np.radians(30)),
                           target[1] + distance * np.tan(np.radians(50))))  # fmt: skip
    eye = np.array([center[0], height, center[2] + distance])
    tilted = rng.random() < 0.15 and roll_sd >= 4.0
    roll = np.radians(rng.uniform(-25, 25) if tilted else rng.normal(0, roll_sd))
    rotation = look_at(eye, target, roll)
    # Turn the camera so the body's center lands at `offset` instead of the image center.
    yaw = np.arctan(offset[0] * (w / 2) / intrinsics.fx)
    pitch = np.arctan(offset[1] * (h / 2) / intrinsics.fy)
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    turn_y = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    turn_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return Camera(intrinsics=intrinsics, rotation=turn_x @ turn_y @ rotation, eye=eye)


def _inside_count(camera: Camera, body: PosedBody) -> int:
    pts = camera.to_camera(body.joints)
    uv = project(pts, camera.intrinsics)
    k = camera.intrinsics
    inside = (pts[:, 2] > NEAR) & (uv[:, 0] >= 0) & (uv[:, 0] < k.width)
    return int((inside & (uv[:, 1] >= 0) & (uv[:, 1] < k.height)).sum())


def sample_room(rng: np.random.Generator, people: list[PosedBody], camera_eye: np.ndarray) -> Room:
    """Floor, walls (indoors) or sky (outdoors), a few props, the light."""
    u = rng.uniform
    boxes = [_footprint(b) for b in people]
    z_back = min(b[2] for b in boxes)
    planes = [
        (np.array([0.0, 1.0, 0.0]), 0.0, np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 0, 1.0]),
         _texture(rng, floor=True)),
    ]  # fmt: skip
    outdoor = rng.random() < 0.3
    if not outdoor:
        wall_z = z_back - u(0.3, 4.0)
        planes.append(
            (np.array([0.0, 0.0, 1.0]), wall_z, np.array([0, 0, wall_z]), np.array([1.0, 0, 0]),
             np.array([0, 1.0, 0]), _texture(rng, floor=False))
        )  # fmt: skip
        if rng.random() < 0.35:
            s = rng.choice([-1.0, 1.0])
            edge = max(b[1] for b in boxes) if s > 0 else min(b[0] for b in boxes)
            wall_x = edge + s * u(0.5, 3.0)
            planes.append(
                (np.array([-s, 0.0, 0.0]), -s * wall_x, np.array([wall_x, 0, 0]),
                 np.array([0, 0, 1.0]), np.array([0, 1.0, 0]), _texture(rng, floor=False))
            )  # fmt: skip
    props = _sample_props(rng, boxes, camera_eye, z_back)
    n_props = len(props.cap_r) + len(props.ell_c)
    prop_colors = np.array(
        [_hsv(u(0, 1), u(0, 0.8), u(0.15, 0.95)) for _ in range(n_props)]
    ).reshape(n_props, 3)
    light = np.array([u(-1, 1), u(0.4, 1.6), u(-0.3, 1.2)])
    sky = _hsv(u(0.5, 0.7), u(0.1, 0.6), u(0.6, 1.0)) if outdoor else np.full(3, u(0.1, 0.6))
    return Room(
        planes=planes,
        props=props,
        prop_colors=prop_colors,
        light=light / np.linalg.norm(light),
        ambient=float(u(0.3, 0.55)),
        diffuse=float(u(0.35, 0.75)),
        specular=float(u(0.0, 0.12)),
        sky_top=sky * u(0.7, 1.0),
        sky_bottom=np.clip(sky * u(1.0, 1.3), 0, 1),
    )


def _sample_props(
    rng: np.random.Generator, boxes: list[np.ndarray], eye: np.ndarray, z_back: float
) -> PosedBody:
    """0-3 objects on the floor (poles, balls, boxes), never inside a person; sometimes one
    between the camera and the main person, to hide part of them."""
    u = rng.uniform
    caps, ells = [], []
    for i in range(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1])):
        in_front = i == 0 and rng.random() < 0.25
        for _ in range(10):
            if in_front:
                main = boxes[0]
                x = u(main[0] - 0.4, main[1] + 0.4)
                z = u(main[3] + 0.3, max(main[3] + 0.4, eye[2] - 0.8))
            else:
                x, z = eye[0] + u(-4, 4), u(z_back - 1.0, eye[2] - 1.5)
            kind = rng.choice(3)
            size = u(0.05, 0.15) if kind == 0 else u(0.12, 0.5)
            box = np.array([x - size, x + size, z - size, z + size])
            if not any(_overlap(box, b) for b in boxes):
                break
        else:
            continue
        if kind == 0:  # pole
            caps.append((np.array([x, 0.0, z]), np.array([x, u(0.4, 2.4), z]), size))
        elif kind == 1:  # ball
            ells.append((np.array([x, size, z]), np.eye(3), np.full(3, size)))
        else:  # box-like ellipsoid
            radii = np.array([size, u(0.1, 0.6), u(0.12, 0.5)])
            ells.append((np.array([x, radii[1], z]), rotation_y(u(0, np.pi)), radii))
    return PosedBody(
        joints=np.zeros((0, 3)),
        joint_radius=np.zeros(0),
        cap_a=np.array([c[0] for c in caps]).reshape(-1, 3),
        cap_b=np.array([c[1] for c in caps]).reshape(-1, 3),
        cap_r=np.array([c[2] for c in caps]),
        cap_part=np.full(len(caps), int(Part.PROP)),
        ell_c=np.array([e[0] for e in ells]).reshape(-1, 3),
        ell_axes=np.array([e[1] for e in ells]).reshape(-1, 3, 3),
        ell_radii=np.array([e[2] for e in ells]).reshape(-1, 3),
        ell_part=np.full(len(ells), int(Part.PROP)),
    )


# --- rendering and labelling -------------------------------------------------------------------


def build_render_scene(people: list[Person], room: Room, camera: Camera) -> RenderScene:
    """Everything in the camera frame, with colours, stripes and owners per primitive."""
    r = camera.rotation
    cap_a, cap_b, cap_r, cap_color, cap_owner, cap_stripes = [], [], [], [], [], []
    ell_c, ell_axes, ell_radii, ell_color, ell_owner, ell_stripes = [], [], [], [], [], []
    up = r @ _UP
    entries = [(p.body, p.outfit.colors, p.outfit.stripes, i) for i, p in enumerate(people)]
    for body, colors, stripes, who in entries:
        cam = body.moved(r, -r @ camera.eye)
        owner_c = np.where(cam.cap_part == Part.PROP, NO_OWNER, who)
        owner_e = np.where(cam.ell_part == Part.PROP, NO_OWNER, who)
        cap_a.append(cam.cap_a), cap_b.append(cam.cap_b), cap_r.append(cam.cap_r)
        cap_color.append(colors[cam.cap_part]), cap_owner.append(owner_c)
        s = stripes[cam.cap_part]
        cap_stripes.append(np.concatenate([s[:, :1] * up, s[:, 1:]], axis=1))
        ell_c.append(cam.ell_c), ell_axes.append(cam.ell_axes), ell_radii.append(cam.ell_radii)
        ell_color.append(colors[cam.ell_part]), ell_owner.append(owner_e)
        s = stripes[cam.ell_part]
        ell_stripes.append(np.concatenate([s[:, :1] * up, s[:, 1:]], axis=1))
    props = room.props.moved(r, -r @ camera.eye)
    n_caps = len(props.cap_r)
    cap_a.append(props.cap_a), cap_b.append(props.cap_b), cap_r.append(props.cap_r)
    cap_color.append(room.prop_colors[:n_caps]), cap_owner.append(np.full(n_caps, NO_OWNER))
    cap_stripes.append(np.zeros((n_caps, 4)))
    n_ells = len(props.ell_c)
    ell_c.append(props.ell_c), ell_axes.append(props.ell_axes), ell_radii.append(props.ell_radii)
    ell_color.append(room.prop_colors[n_caps:]), ell_owner.append(np.full(n_ells, NO_OWNER))
    ell_stripes.append(np.zeros((n_ells, 4)))

    planes = []
    for normal, offset, origin, e1, e2, texture in room.planes:
        planes.append(
            Plane(
                normal=r @ normal,
                offset=float(offset - normal @ camera.eye),
                origin=r @ (origin - camera.eye),
                e1=r @ e1,
                e2=r @ e2,
                texture=texture,
            )
        )
    return RenderScene(
        cap_a=np.concatenate(cap_a), cap_b=np.concatenate(cap_b), cap_r=np.concatenate(cap_r),
        cap_color=np.concatenate(cap_color), cap_owner=np.concatenate(cap_owner),
        cap_stripes=np.concatenate(cap_stripes),
        ell_c=np.concatenate(ell_c), ell_axes=np.concatenate(ell_axes),
        ell_radii=np.concatenate(ell_radii), ell_color=np.concatenate(ell_color),
        ell_owner=np.concatenate(ell_owner), ell_stripes=np.concatenate(ell_stripes),
        planes=planes, light=r @ room.light, up=up, ambient=room.ambient, diffuse=room.diffuse,
        specular=room.specular, sky_top=room.sky_top, sky_bottom=room.sky_bottom,
    )  # fmt: skip


def depth_to_mm(depth_m: np.ndarray, max_depth_m: float) -> np.ndarray:
    """Metres (inf = none) -> uint16 millimetres, 0 where no surface or beyond the range."""
    valid = np.isfinite(depth_m) & (depth_m <= max_depth_m)
    return np.where(valid, np.round(np.where(valid, depth_m, 0) / DEPTH_UNIT_M), 0).astype(
        np.uint16
    )


def joint_visibility(
    keypoints: np.ndarray,
    z: np.ndarray,
    radius: np.ndarray,
    depth_m: np.ndarray,
    tolerance: float = VISIBILITY_TOLERANCE_M,
) -> np.ndarray:
    """COCO visibility (K,) of joints at COCO pixel positions ``keypoints`` (K, 2) with camera
    depth ``z`` (K,) and surface radius ``radius`` (K,), from the depth map (metres, 0 = none).
    See the module docstring."""
    height, width = depth_m.shape
    u, v = keypoints[:, 0], keypoints[:, 1]
    inside = (z > NEAR) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    col = np.clip(np.floor(np.where(inside, u, 0)), 0, width - 1).astype(np.int64)
    row = np.clip(np.floor(np.where(inside, v, 0)), 0, height - 1).astype(np.int64)
    d = depth_m[row, col]
    seen = inside & (d > 0) & (d >= z - radius - tolerance) & (d <= z + tolerance)
    return np.where(inside, np.where(seen, 2, 1), 0)


def label_person(
    joints_cam: np.ndarray,
    radius: np.ndarray,
    intrinsics: Intrinsics,
    depth_m: np.ndarray,
    mask: np.ndarray,
) -> PersonLabel:
    """Keypoints, visibility, bbox and area of one person (values rounded as written)."""
    points = np.round(joints_cam, 6)
    uv = np.round(project(points, intrinsics), 4)
    vis = joint_visibility(uv, points[:, 2], radius, depth_m)
    keypoints = np.where(vis[:, None] > 0, np.concatenate([uv, vis[:, None]], axis=1), 0.0)
    rows, cols = np.nonzero(mask)
    if len(rows):
        bbox = [float(cols.min()), float(rows.min()), float(cols.max() + 1 - cols.min()),
                float(rows.max() + 1 - rows.min())]  # fmt: skip
    else:
        bbox = [0.0, 0.0, 0.0, 0.0]
    return PersonLabel(
        keypoints=keypoints,
        keypoints_3d=points,
        joint_radius=np.round(radius, 4),
        bbox=bbox,
        area=len(rows),
    )


@dataclass(frozen=True)
class Look:
    """The camera's rendition: exposure and white balance gains, blur, sensor noise."""

    gain: np.ndarray  # (3,) per channel
    blur: float  # Gaussian sigma in pixels, 0 = sharp
    noise: float  # standard deviation of the sensor noise (colour values in [0, 1])


def sample_look(rng: np.random.Generator) -> Look:
    gain = rng.uniform(0.8, 1.15) * (1 + rng.normal(0, 0.04, 3))
    blur = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.6 else 0.0
    return Look(gain=gain.astype(np.float32), blur=blur, noise=float(rng.uniform(0.003, 0.02)))


def _finish_image(rng: np.random.Generator, rgb: np.ndarray, look: Look) -> np.ndarray:
    """Apply ``look`` and fresh sensor noise -> uint8."""
    import cv2

    img = rgb * look.gain
    if look.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=look.blur)
    # OpenCV's generator is much faster than NumPy's here; seeding it from `rng` keeps every
    # image a pure function of its own seed, whatever process draws it.
    noise = np.empty((img.shape[0], img.shape[1] * 3), np.float32)
    cv2.setRNGSeed(int(rng.integers(2**31)))
    cv2.randn(noise, 0.0, look.noise)
    img = img + noise.reshape(img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_frame(
    rng: np.random.Generator,
    people: list[Person],
    room: Room,
    camera: Camera,
    max_depth_m: float,
    look: Look | None = None,
) -> Frame:
    """Render people in a room and label every person that shows at least one pixel.

    ``rng`` draws the sensor noise (and the look, when none is given)."""
    rendered = render(build_render_scene(people, room, camera), camera.intrinsics)
    depth_mm = depth_to_mm(rendered.depth, max_depth_m)
    depth_m = depth_mm.astype(np.float64) * DEPTH_UNIT_M
    labels = []
    for i, person in enumerate(people):
        mask = rendered.owner == i
        if not mask.any():
            continue
        joints = camera.to_camera(person.body.joints)
        labels.append(
            label_person(joints, person.body.joint_radius, camera.intrinsics, depth_m, mask)
        )
    return Frame(
        rgb=_finish_image(rng, rendered.rgb, look or sample_look(rng)),
        depth_mm=depth_mm,
        camera=camera,
        people=labels,
        owner=rendered.owner,
    )


def _fill_and_offset(rng: np.random.Generator) -> tuple[float, tuple[float, float]]:
    """How much of the frame the main person fills, and where their center goes."""
    r = rng.random()
    fill = rng.uniform(0.45, 0.9) if r < 0.75 else rng.uniform(0.9, 1.4) if r < 0.87 else rng.uniform(0.3, 0.45)  # fmt: skip
    if rng.random() < 0.12:  # anywhere, possibly cut by the border
        return fill, (rng.uniform(-0.9, 0.9), rng.uniform(-0.9, 0.9))
    room = max(0.0, 0.95 - fill) * 0.9
    return fill, (rng.uniform(-room, room), rng.uniform(-room, room))


def _second_person(
    rng: np.random.Generator, main: PosedBody, camera: Camera, max_depth: float
) -> tuple[PosedBody, BodyShape] | None:
    """Another person beside, in front of or behind the main one, never inside them."""
    k = camera.intrinsics
    half_fov = np.arctan(k.width / 2 / k.fx)
    main_box = _footprint(main)
    main_z = (main_box[2] + main_box[3]) / 2
    distance = camera.eye[2] - main_z
    for _ in range(8):
        body, shape, _kind = sample_person(rng)
        limit = max_distance(body, k, max_depth)
        depth = distance + rng.uniform(-0.5, 1.5) * distance
        depth = float(np.clip(depth, 1.2, limit))
        x = camera.eye[0] + depth * np.tan(rng.uniform(-1.1, 1.1) * half_fov)
        placed = place(body, rng.uniform(0, 2 * np.pi), x, camera.eye[2] - depth)
        box = _footprint(placed)
        if _overlap(box, main_box) or box[3] > camera.eye[2] - 0.6:
            continue
        return placed, shape
    return None


def sample_frame(rng: np.random.Generator, params: SceneParams) -> Frame:
    """One random picture with a main person and sometimes a second one, with labels."""
    for _ in range(50):
        intrinsics = sample_intrinsics(rng, params.width, params.height)
        body, _shape, _kind = sample_person(rng)
        main = place(body, rng.uniform(0, 2 * np.pi), 0.0, 0.0)
        fill, offset = _fill_and_offset(rng)
        limit = max_distance(main, intrinsics, params.max_depth_m)
        camera = frame_camera(rng, main, intrinsics, fill, offset, limit)
        if _inside_count(camera, main) < MAIN_MIN_LABELLED:
            continue
        bodies = [main]
        if rng.random() < params.second_person_prob:
            other = _second_person(rng, main, camera, params.max_depth_m)
            if other is not None and _inside_count(camera, other[0]) >= MIN_LABELLED:
                bodies.append(other[0])
        room = sample_room(rng, bodies, camera.eye)
        people = [Person(body=b, outfit=sample_outfit(rng)) for b in bodies]
        frame = render_frame(rng, people, room, camera, params.max_depth_m)
        if (frame.owner == 0).any():  # the main person shows (a prop may hide them all)
            return frame
    raise RuntimeError("could not draw a usable synthetic scene in 50 tries")
