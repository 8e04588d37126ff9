"""The z-buffer ray caster: capsules, ellipsoids and textured planes, in the camera frame.

One ray per pixel through its center (see ``camera``). Each primitive is intersected
analytically, only over the pixels of its projected bounding box; the nearest hit per pixel
wins (z-buffer). The result is the shaded colour, the depth Z (metres, inf = no surface) and
the owner of each pixel (a person's index, or -1 for the background and props).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pkmodel.common.camera import Intrinsics
from pkmodel.data.synthetic.camera import pixel_rays

NEAR = 0.05  # metres: hits closer to the camera than this are ignored
NO_OWNER = -1
_F32 = np.float32


@dataclass(frozen=True)
class Texture:
    """A procedural surface pattern in plane coordinates (metres)."""

    kind: str  # "plain", "checker", "stripes", "tiles", "planks"
    color0: np.ndarray  # (3,) RGB in [0, 1]
    color1: np.ndarray  # (3,)
    scale: float  # pattern period in metres
    noise: np.ndarray  # (G, G) values in [0, 1], tiled
    noise_cell: float  # metres per noise cell
    noise_amp: float  # brightness modulation by the noise


@dataclass(frozen=True)
class Plane:
    """An infinite plane n . X = offset (camera frame) with texture axes e1, e2 through origin."""

    normal: np.ndarray
    offset: float
    origin: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    texture: Texture


@dataclass
class RenderScene:
    """Everything to draw, in the camera frame. Colours are RGB in [0, 1].

    ``*_stripes`` rows are (kx, ky, kz, contrast): a stripe pattern darkens a surface where
    sin(k . P) > 0 by ``contrast`` (0 = plain).
    """

    cap_a: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    cap_b: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    cap_r: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cap_color: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    cap_owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cap_stripes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    ell_c: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    ell_axes: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, 3)))
    ell_radii: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    ell_color: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    ell_owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ell_stripes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    planes: list[Plane] = field(default_factory=list)
    light: np.ndarray = field(default_factory=lambda: np.array([0.0, -0.6, -0.8]))  # to light
    up: np.ndarray = field(default_factory=lambda: np.array([0.0, -1.0, 0.0]))  # world up
    ambient: float = 0.45
    diffuse: float = 0.6
    specular: float = 0.05
    sky_top: np.ndarray = field(default_factory=lambda: np.array([0.55, 0.7, 0.9]))
    sky_bottom: np.ndarray = field(default_factory=lambda: np.array([0.85, 0.9, 0.95]))


@dataclass(frozen=True)
class Rendered:
    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    depth: np.ndarray  # (H, W) float32 metres, inf where no surface
    owner: np.ndarray  # (H, W) int16, -1 = background / prop


def render(scene: RenderScene, intrinsics: Intrinsics) -> Rendered:
    """Ray-cast ``scene`` through every pixel center."""
    width, height = intrinsics.width, intrinsics.height
    dx, dy = pixel_rays(intrinsics)
    rdrd = dx[None, :] ** 2 + dy[:, None] ** 2 + _F32(1.0)
    frac = (np.arange(height, dtype=_F32) / max(height - 1, 1))[:, None, None]
    rgb = np.broadcast_to(
        (scene.sky_top * (1 - frac) + scene.sky_bottom * frac).astype(_F32), (height, width, 3)
    ).copy()
    depth = np.full((height, width), np.inf, dtype=_F32)
    n_caps = len(scene.cap_r)
    p0 = np.concatenate([scene.cap_a, scene.ell_c]).reshape(-1, 3)
    p1 = np.concatenate([scene.cap_b, scene.ell_c]).reshape(-1, 3)
    reach = np.concatenate([scene.cap_r, scene.ell_radii.max(axis=1, initial=0.0)])
    boxes, keep = _boxes(p0, p1, reach, intrinsics)
    # Near to far, so that far primitives mostly fail the depth test.
    order = np.argsort(np.minimum(p0[:, 2], p1[:, 2]) - reach, kind="stable")
    # Which primitive (capsules first, then ellipsoids) is in front at each pixel; -1 = none.
    front = np.full((height, width), -1, dtype=np.int32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        _draw_background(scene, intrinsics, dx, dy, rgb, depth)
        for k in order[keep[order]]:
            x0, x1, y0, y1 = (int(v) for v in boxes[k])
            sx, sy = dx[None, x0:x1], dy[y0:y1, None]
            if k < n_caps:
                r = float(scene.cap_r[k])
                t = _ray_capsule(sx, sy, rdrd[y0:y1, x0:x1], scene.cap_a[k], scene.cap_b[k], r)
            else:
                e = k - n_caps
                t = _ray_ellipsoid(sx, sy, scene.ell_c[e], scene.ell_axes[e], scene.ell_radii[e])
            closer = t < depth[y0:y1, x0:x1]
            np.copyto(depth[y0:y1, x0:x1], t, where=closer)
            np.copyto(front[y0:y1, x0:x1], k, where=closer, casting="unsafe")
        _shade_primitives(scene, front, depth, dx, dy, rgb)
    owners = np.concatenate([scene.cap_owner, scene.ell_owner, [NO_OWNER]]).astype(np.int16)
    return Rendered(rgb=np.clip(rgb, 0.0, 1.0), depth=depth, owner=owners[front])


def _boxes(
    p0: np.ndarray, p1: np.ndarray, radius: np.ndarray, intrinsics: Intrinsics
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel ranges (P, 4) = x0, x1, y0, y1 holding the projection of each primitive: spheres
    of ``radius`` around ``p0`` and ``p1`` and everything between (conservative), and which
    ranges are not empty."""
    w, h = intrinsics.width, intrinsics.height
    pts = np.stack([p0, p1], axis=1)  # (P, 2, 3)
    z = pts[..., 2]
    behind = z.max(axis=1) + radius <= NEAR
    around = z.min(axis=1) - radius <= NEAR  # reaches behind the camera: test every pixel
    zs = np.where(around[:, None], 1.0, z)
    slope = np.abs(pts[..., :2] / zs[..., None]).max(axis=(1, 2))
    # A sphere at depth z projects within f * r * (1 + |x / z|) / (z - r) of its center.
    margin = (1.0 + slope) * radius / np.where(around, 1.0, zs.min(axis=1) - radius)
    u = intrinsics.fx * pts[..., 0] / zs + intrinsics.cx
    v = intrinsics.fy * pts[..., 1] / zs + intrinsics.cy
    mu, mv = intrinsics.fx * margin + 1.0, intrinsics.fy * margin + 1.0
    boxes = np.stack(
        [
            np.clip(np.floor(u.min(axis=1) - mu), 0, w),
            np.clip(np.ceil(u.max(axis=1) + mu) + 1, 0, w),
            np.clip(np.floor(v.min(axis=1) - mv), 0, h),
            np.clip(np.ceil(v.max(axis=1) + mv) + 1, 0, h),
        ],
        axis=1,
    )
    boxes[around] = [0, w, 0, h]
    keep = ~behind & (boxes[:, 0] < boxes[:, 1]) & (boxes[:, 2] < boxes[:, 3])
    return boxes.astype(np.int64), keep


def _sphere_t(
    sx: np.ndarray, sy: np.ndarray, rdrd: np.ndarray, c: np.ndarray, r: float
) -> np.ndarray:
    """First hit of rays (sx, sy, 1) from the origin with a sphere; inf where missed."""
    b = float(c[0]) * sx + float(c[1]) * sy + float(c[2])  # d . c
    h = b * b - rdrd * float(c @ c - r * r)
    t = (b - np.sqrt(h)) / rdrd  # NaN where h < 0 (a miss); callers silence the warning
    return np.where((h >= 0) & (t > NEAR), t, _F32(np.inf))


def ray_capsule(
    sx: np.ndarray, sy: np.ndarray, rdrd: np.ndarray, a: np.ndarray, b: np.ndarray, r: float
) -> np.ndarray:
    """First hit t (= Z) of rays (sx, sy, 1) from the origin with the capsule [a, b] of radius r
    (inf where missed)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _ray_capsule(sx, sy, rdrd, a, b, r)


def _ray_capsule(
    sx: np.ndarray, sy: np.ndarray, rdrd: np.ndarray, a: np.ndarray, b: np.ndarray, r: float
) -> np.ndarray:
    """First hit t (= Z) of rays (sx, sy, 1) from the origin with the capsule [a, b] of radius r.

    The capsule is the union of a finite cylinder and two end spheres, so the first hit is the
    nearest of the cylinder's side (where its foot lies between a and b) and the two spheres.
    """
    ba = b - a
    baba, baoa, oaoa = float(ba @ ba), float(-(ba @ a)), float(a @ a)
    bard = float(ba[0]) * sx + float(ba[1]) * sy + float(ba[2])
    rdoa = -(float(a[0]) * sx + float(a[1]) * sy + float(a[2]))
    qa = baba * rdrd - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - r * r * baba
    h = qb * qb - qa * qc
    t = (-qb - np.sqrt(h)) / qa
    y = baoa + t * bard
    side = (h >= 0) & (qa > 1e-12) & (y > 0) & (y < baba) & (t > NEAR)
    t = np.where(side, t, _F32(np.inf))
    t = np.minimum(t, _sphere_t(sx, sy, rdrd, a, r))
    return np.minimum(t, _sphere_t(sx, sy, rdrd, b, r))


def ray_ellipsoid(
    sx: np.ndarray, sy: np.ndarray, c: np.ndarray, axes: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """First hit t (= Z) of rays (sx, sy, 1) from the origin with an ellipsoid (center ``c``,
    principal axes as the columns of ``axes``, semi-axes ``radii``); inf where missed."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return _ray_ellipsoid(sx, sy, c, axes, radii)


def _ray_ellipsoid(
    sx: np.ndarray, sy: np.ndarray, c: np.ndarray, axes: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    # In the ellipsoid's unit-sphere frame the ray starts at o = -M c with direction q = M d.
    m = axes.T / radii[:, None]
    o = -(m @ c)
    q = [float(m[i, 0]) * sx + float(m[i, 1]) * sy + float(m[i, 2]) for i in range(3)]
    qa = q[0] * q[0] + q[1] * q[1] + q[2] * q[2]
    qb = float(o[0]) * q[0] + float(o[1]) * q[1] + float(o[2]) * q[2]
    h = qb * qb - qa * float(o @ o - 1.0)
    t = (-qb - np.sqrt(h)) / qa
    return np.where((h >= 0) & (t > NEAR), t, _F32(np.inf))


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b)


def _shade_primitives(
    scene: RenderScene, front: np.ndarray, depth: np.ndarray, dx, dy, rgb: np.ndarray
) -> None:
    """One pass over every pixel a primitive won: surface normal, then Lambert + hemisphere
    ambient + a little specular, with optional stripes."""
    rows, cols = np.nonzero(front >= 0)
    if not len(rows):
        return
    ids = front[rows, cols]
    t = depth[rows, cols]
    points = np.stack([dx[cols] * t, dy[rows] * t, t], axis=1)
    n_caps = len(scene.cap_r)
    normals = np.empty_like(points)
    cap = ids < n_caps
    if cap.any():  # away from the nearest point of the segment
        k = ids[cap]
        a = scene.cap_a[k].astype(_F32)
        ba = scene.cap_b[k].astype(_F32) - a
        rel = points[cap] - a
        along = np.clip(_rowdot(rel, ba) / np.maximum(_rowdot(ba, ba), 1e-12), 0.0, 1.0)
        normals[cap] = rel - along[:, None] * ba
    ell = ~cap
    if ell.any():  # gradient of |M (X - c)|^2 is M^T M (X - c)
        k = ids[ell] - n_caps
        m = (scene.ell_axes.transpose(0, 2, 1) / scene.ell_radii[:, :, None]).astype(_F32)[k]
        unit = np.einsum("nij,nj->ni", m, points[ell] - scene.ell_c[k].astype(_F32))
        normals[ell] = np.einsum("nji,nj->ni", m, unit)
    normals /= np.sqrt(_rowdot(normals, normals))[:, None]

    color = np.concatenate([scene.cap_color, scene.ell_color]).astype(_F32)[ids]
    stripes = np.concatenate([scene.cap_stripes, scene.ell_stripes]).astype(_F32)[ids]
    striped = stripes[:, 3] > 0
    if striped.any():
        band = np.sin(_rowdot(points[striped], stripes[striped, :3])) > 0
        color[striped] *= (1.0 - stripes[striped, 3] * band)[:, None]
    light = scene.light.astype(_F32)
    lambert = np.maximum(normals @ light, 0.0)
    sky = 0.8 + 0.2 * (normals @ scene.up.astype(_F32))
    half = light - points / np.sqrt(_rowdot(points, points))[:, None]
    half /= np.sqrt(_rowdot(half, half))[:, None]
    spec = np.maximum(_rowdot(normals, half), 0.0) ** 16
    amount = scene.ambient * sky + scene.diffuse * lambert
    rgb[rows, cols] = color * amount[:, None] + scene.specular * spec[:, None]


def _value_noise(a: np.ndarray, b: np.ndarray, grid: np.ndarray, cell: float) -> np.ndarray:
    """Smooth tiled noise in [0, 1] at plane coordinates (a, b) (2-D arrays, metres)."""
    import cv2

    g = float(grid.shape[0])
    x, y = a / cell, b / cell
    x -= np.floor(x / g) * g  # wrap into the tile (np.mod is slow on float32)
    y -= np.floor(y / g) * g
    return cv2.remap(grid, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


# Mean of each pattern's mix, where a pattern fades to when its period shrinks below a pixel.
_MIX_MEAN = {"checker": 0.5, "stripes": 0.5, "tiles": 0.12, "planks": 0.5, "plain": 0.5}


def texture_color(
    tex: Texture, a: np.ndarray, b: np.ndarray, footprint: np.ndarray | float = 0.0
) -> np.ndarray:
    """Colours (..., 3) of ``tex`` at plane coordinates ``a``, ``b`` (2-D arrays, metres).

    ``footprint`` (metres per pixel) fades patterns finer than about two pixels to their mean
    colour, so far floors do not alias into moire.
    """
    noise = _value_noise(a, b, tex.noise, tex.noise_cell)
    s = tex.scale
    if tex.kind == "checker":
        cells = np.floor(a / s) + np.floor(b / s)
        mix = cells - 2.0 * np.floor(cells / 2.0)  # cells mod 2 (np.mod is slow)
    elif tex.kind == "stripes":
        cells = np.floor(a / s)
        mix = cells - 2.0 * np.floor(cells / 2.0)
    elif tex.kind == "tiles":  # tiles of color0 with grout lines of color1
        fa, fb = a / s, b / s
        mix = ((fa - np.floor(fa) < 0.06) | (fb - np.floor(fb) < 0.06)).astype(_F32)
    elif tex.kind == "planks":  # boards along b, each with its own shade
        board = np.floor(a / s)
        mix = _value_noise(board * 3.1, board * 7.7, tex.noise, 1.0)
    else:
        mix = noise
    fade = np.clip(2.0 - 4.0 * footprint / s, 0.0, 1.0)
    mean = _MIX_MEAN[tex.kind]
    mix = (mean + (mix - mean) * fade)[..., None]
    grain = (noise - 0.5) * np.clip(2.0 - 2.0 * footprint / tex.noise_cell, 0.0, 1.0)
    color = tex.color0 * (1 - mix) + tex.color1 * mix
    return color * (1.0 + tex.noise_amp * grain)[..., None]


def _draw_background(scene: RenderScene, intrinsics: Intrinsics, dx, dy, rgb, depth) -> None:
    """The planes: exact depth per pixel; colours from a half-resolution grid, upsampled (a
    background slightly softer than the people, as with a real lens, for a quarter of the
    cost)."""
    import cv2

    if not scene.planes:
        return
    height, width = depth.shape
    which = np.full((height, width), -1, dtype=np.int8)
    for k, plane in enumerate(scene.planes):
        n = plane.normal
        t = plane.offset / (float(n[0]) * dx[None, :] + float(n[1]) * dy[:, None] + float(n[2]))
        hit = (t > NEAR) & (t < depth)
        np.copyto(depth, t, where=hit)
        which[hit] = k
    # Rays through the centers of 2 x 2 pixel blocks.
    wh, hh = (width + 1) // 2, (height + 1) // 2
    dxh = ((2.0 * np.arange(wh) + 0.5 - intrinsics.cx) / intrinsics.fx).astype(_F32)
    dyh = ((2.0 * np.arange(hh) + 0.5 - intrinsics.cy) / intrinsics.fy).astype(_F32)
    for k, plane in enumerate(scene.planes):
        mask = which == k
        if not mask.any():
            continue
        half = _plane_color(plane, scene, dxh, dyh, 2.0 * intrinsics.fx)
        full = cv2.resize(half, (2 * wh, 2 * hh), interpolation=cv2.INTER_LINEAR)
        np.copyto(rgb, full[:height, :width], where=mask[..., None])


def _plane_color(plane: Plane, scene: RenderScene, dx, dy, focal: float) -> np.ndarray:
    """Shaded texture colour of ``plane`` for the rays (dx, dy, 1): (len(dy), len(dx), 3)."""
    n = plane.normal
    denom = float(n[0]) * dx[None, :] + float(n[1]) * dy[:, None] + float(n[2])
    t = plane.offset / denom
    t = np.where(t > NEAR, t, _F32(1e3))  # rays that miss: far away, i.e. hazy
    o, e1, e2 = plane.origin, plane.e1, plane.e2
    px, py = dx[None, :] * t - float(o[0]), dy[:, None] * t - float(o[1])
    pz = t - float(o[2])
    a = px * float(e1[0]) + py * float(e1[1]) + pz * float(e1[2])
    b = px * float(e2[0]) + py * float(e2[1]) + pz * float(e2[2])
    # Metres per pixel on the plane: t / f, stretched by the grazing angle.
    ray_len = np.sqrt(dx[None, :] ** 2 + dy[:, None] ** 2 + 1.0)
    grazing = np.maximum(np.abs(denom) / ray_len, 0.05)
    footprint = t * ray_len / (focal * grazing)
    color = texture_color(plane.texture, a, b, footprint)
    # Planes get diffuse light and ambient; distance haze makes far surfaces a little paler.
    lit = scene.ambient * 0.9 + scene.diffuse * max(float(n @ scene.light), 0.0)
    haze = np.clip((t - 4.0) / 30.0, 0.0, 0.35)[..., None]
    return (color * lit) * (1 - haze) + scene.sky_bottom.astype(_F32) * haze
