"""Ray-cast rendering shared by the synthetic scenes: noise textures and the :class:`_Canvas`.

A :class:`_Canvas` holds one pinhole camera's per-pixel rays and colour / label / depth
buffers. Primitives (axis-aligned boxes, ellipsoids, vertical rectangles with a cut-out mask,
and the inside of a room box) are intersected with every ray of their screen window, and a hit
is written only where it is nearer than what the buffers already hold (a z-buffer). Colour,
label and depth therefore come from the same hit, which is what makes the synthetic depth and
segmentation consistent by construction.

World frame: x to the right, y up, z forward. Camera frame: x right, y down, z forward. A ray
is parameterised with camera-z = 1, so the hit parameter *is* the camera depth Z (metres).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


# ----------------------------------------------------------------------------- textures
def _noise_tile(rng: np.random.Generator, size: int = 128, smooth: float = 3.0) -> np.ndarray:
    """Periodic (tileable) smooth noise, size×size float32 with zero mean and unit std.

    White noise low-passed in the Fourier domain, so the tile wraps seamlessly.
    """
    f = np.fft.fftfreq(size)
    r2 = f[:, None] ** 2 + f[None, :] ** 2
    spec = np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-r2 * (smooth * np.pi) ** 2 * 2)
    t = np.real(np.fft.ifft2(spec))
    return ((t - t.mean()) / (t.std() + 1e-8)).astype(np.float32)


def _sample(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Nearest lookup of a power-of-two tile at continuous texel coordinates (wraps)."""
    m = tile.shape[0] - 1
    return tile[v.astype(np.int32) & m, u.astype(np.int32) & m]


def _hash01(a: np.ndarray, b: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer pair (window tints etc.)."""
    h = (a.astype(np.int64) * 374761393 + b.astype(np.int64) * 668265263 + seed * 2246822519) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _col(rgb) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _const(color) -> Callable:
    c = _col(color) if max(color) > 1.0 else np.asarray(color, dtype=np.float32)
    return lambda P, n: np.broadcast_to(c, (P.shape[1], 3))


# ----------------------------------------------------------------------------- camera + canvas
class _Canvas:
    """Per-pixel rays of one pinhole camera plus colour / label / depth buffers.

    Args:
        h, w: image size in pixels. fx: focal length in pixels (fy = fx, principal point at
            the image centre). origin: camera centre, world metres.
        yaw, pitch, roll: radians; yaw turns right (towards +x), pitch > 0 looks down.
        sun: unit 3-vector towards the light; sun_int, ambient: Lambert and ambient factors.
        background: uint8 label of pixels no primitive hits (their depth stays +inf).
    """

    def __init__(self, h, w, origin, yaw, pitch, roll, sun, sun_int, ambient, *, fx: float, background: int):
        self.h, self.w = h, w
        self.fx = self.fy = fx
        self.cx, self.cy = w / 2.0, h / 2.0
        cy_, sy_ = math.cos(yaw), math.sin(yaw)
        cp, sp = math.cos(pitch), math.sin(pitch)
        cr, sr = math.cos(roll), math.sin(roll)
        flip = np.diag([1.0, -1.0, 1.0])                                   # camera y down → world y up
        r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1.0]])
        r_pitch = np.array([[1.0, 0, 0], [0, cp, -sp], [0, sp, cp]])       # pitch > 0 looks down
        r_yaw = np.array([[cy_, 0, sy_], [0, 1.0, 0], [-sy_, 0, cy_]])
        self.R = r_yaw @ r_pitch @ r_roll @ flip                          # camera → world
        self.O = np.asarray(origin, dtype=np.float64)
        xc = ((np.arange(w) + 0.5 - self.cx) / self.fx).astype(np.float32)
        yc = ((np.arange(h) + 0.5 - self.cy) / self.fy).astype(np.float32)
        R = self.R.astype(np.float32)
        self.D = (R[:, 0, None, None] * xc[None, None, :] + R[:, 1, None, None] * yc[None, :, None]
                  + R[:, 2, None, None])                                 # 3×H×W world ray directions
        safe = np.where(np.abs(self.D) < 1e-7, np.float32(1e-7), self.D)
        self.invD = (1.0 / safe).astype(np.float32)
        self.z = np.full((h, w), np.inf, np.float32)
        self.lab = np.full((h, w), background, np.uint8)
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.sun = np.asarray(sun, dtype=np.float32)
        self.sun_int, self.ambient = np.float32(sun_int), np.float32(ambient)

    def light(self, normals: np.ndarray) -> np.ndarray:
        """Lambert + ambient for 3×n unit normals → n brightness factors."""
        return self.ambient + self.sun_int * np.maximum(0.0, (self.sun[:, None] * normals).sum(0))

    def shade(self, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Brightness of 3×n hit points with 3×n unit normals: :meth:`light` (a subclass may add
        lights that depend on the position)."""
        return self.light(normals)

    def window(self, lo, hi):
        """Image rows/cols that the world box [lo, hi] can cover, or None if off-screen."""
        xs, ys, zs = (lo[0], hi[0]), (lo[1], hi[1]), (lo[2], hi[2])
        pts = np.array([[x, y, z] for x in xs for y in ys for z in zs], dtype=np.float64)
        c = (pts - self.O) @ self.R                                         # world → camera
        if (c[:, 2] < 0.05).any():
            if (c[:, 2] < 0.05).all():
                return None
            return 0, self.h, 0, self.w
        u = self.fx * c[:, 0] / c[:, 2] + self.cx
        v = self.fy * c[:, 1] / c[:, 2] + self.cy
        c0, c1 = max(0, int(math.floor(u.min())) - 1), min(self.w, int(math.ceil(u.max())) + 1)
        r0, r1 = max(0, int(math.floor(v.min())) - 1), min(self.h, int(math.ceil(v.max())) + 1)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1

    def _write(self, win, rows, cols, t, label, rgb):
        r0, _, c0, _ = win
        rr, cc = rows + r0, cols + c0
        self.z[rr, cc] = t
        self.lab[rr, cc] = label
        self.rgb[rr, cc] = rgb

    def _finish(self, win, rows, cols, t, P, n, label, albedo):
        res = albedo(P, n)
        if isinstance(res, tuple):                                          # (albedo, keep) cut-out
            alb, keep = res
            rows, cols, t, P, n, alb = rows[keep], cols[keep], t[keep], P[:, keep], n[:, keep], alb[keep]
            if isinstance(label, np.ndarray):
                label = label[keep]
        else:
            alb = res
        if len(t):
            self._write(win, rows, cols, t, label, alb * self.shade(P, n)[:, None])

    def box(self, lo, hi, label, albedo):
        """Axis-aligned box [lo, hi] (world metres); ``albedo(P 3×n, normals 3×n) -> n×3``."""
        lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
        win = self.window(lo, hi)
        if win is None:
            return
        r0, r1, c0, c1 = win
        iD = self.invD[:, r0:r1, c0:c1]
        o = self.O.astype(np.float32)[:, None, None]
        ta, tb = (lo[:, None, None] - o) * iD, (hi[:, None, None] - o) * iD
        tmin = np.minimum(ta, tb)
        tn = tmin.max(0)
        tf = np.maximum(ta, tb).min(0)
        hit = (tn <= tf) & (tn > 0.05) & (tn < self.z[r0:r1, c0:c1])
        rows, cols = np.nonzero(hit)
        if not len(rows):
            return
        t = tn[rows, cols]
        d = self.D[:, r0:r1, c0:c1][:, rows, cols]
        axis = tmin[:, rows, cols].argmax(0)
        n = np.zeros_like(d)
        k = np.arange(len(t))
        n[axis, k] = -np.sign(d[axis, k])                                   # face normal faces the ray
        P = self.O.astype(np.float32)[:, None] + t * d
        self._finish(win, rows, cols, t, P, n, label, albedo)

    def ellipsoid(self, center, radii, label, albedo):
        """Axis-aligned ellipsoid; normals are the true surface normals."""
        c, r = np.asarray(center, np.float32), np.asarray(radii, np.float32)
        win = self.window(c - r, c + r)
        if win is None:
            return
        r0, r1, c0, c1 = win
        d = self.D[:, r0:r1, c0:c1] / r[:, None, None]
        o = ((self.O.astype(np.float32) - c) / r)[:, None, None]
        a = (d * d).sum(0)
        b = 2.0 * (o * d).sum(0)
        cc = float((o * o).sum()) - 1.0
        disc = b * b - 4.0 * a * cc
        ok = disc > 0
        t = np.where(ok, (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a), np.inf)
        hit = ok & (t > 0.05) & (t < self.z[r0:r1, c0:c1])
        rows, cols = np.nonzero(hit)
        if not len(rows):
            return
        t = t[rows, cols]
        P = self.O.astype(np.float32)[:, None] + t * self.D[:, r0:r1, c0:c1][:, rows, cols]
        n = (P - c[:, None]) / (r[:, None] ** 2)
        n /= np.linalg.norm(n, axis=0, keepdims=True) + 1e-8
        self._finish(win, rows, cols, t, P, n, label, albedo)

    def plane(self, axis, value, lo, hi, label, albedo):
        """Vertical rectangle on the plane world[axis] = value (axis 0 or 2), bounded by lo/hi
        (3-vectors; the ``axis`` entries are ignored). ``albedo`` returns (n×3, keep mask)."""
        lo, hi = np.array(lo, np.float32), np.array(hi, np.float32)
        lo[axis] = hi[axis] = value
        win = self.window(lo, hi)
        if win is None:
            return
        r0, r1, c0, c1 = win
        t = (value - np.float32(self.O[axis])) * self.invD[axis, r0:r1, c0:c1]
        P = self.O.astype(np.float32)[:, None, None] + t * self.D[:, r0:r1, c0:c1]
        other = [i for i in range(3) if i != axis]
        hit = (t > 0.05) & (t < self.z[r0:r1, c0:c1])
        for i in other:
            hit &= (P[i] >= lo[i]) & (P[i] <= hi[i])
        rows, cols = np.nonzero(hit)
        if not len(rows):
            return
        t = t[rows, cols]
        P = P[:, rows, cols]
        n = np.zeros_like(P)
        n[axis] = -np.sign(self.D[axis, r0:r1, c0:c1][rows, cols])
        self._finish(win, rows, cols, t, P, n, label, albedo)

    def interior(self, lo, hi) -> tuple:
        """Where each ray leaves the box [lo, hi] the camera stands in (the walls of a room).

        Returns ``(rows, cols, t, P, n, axis)`` for every pixel whose exit is nearer than the
        buffers: t (n,) camera depth, P 3×n world points, n 3×n unit normals facing the camera,
        axis (n,) the world axis of the face left through (0 x-wall, 1 floor / ceiling, 2 z-wall).
        Nothing is written: the caller labels and colours the faces and calls :meth:`paint`.
        """
        lo, hi = np.asarray(lo, np.float32), np.asarray(hi, np.float32)
        o = self.O.astype(np.float32)[:, None, None]
        far = np.where(self.D > 0, hi[:, None, None], lo[:, None, None])
        # 3×H×W distance to the exit plane per axis (positive from inside; abs() keeps the
        # near-zero direction components, whose invD sign is arbitrary, at a huge distance)
        tax = np.abs((far - o) * self.invD)
        axis = tax.argmin(0)
        t = np.take_along_axis(tax, axis[None], 0)[0]
        rows, cols = np.nonzero((t > 0.05) & (t < self.z))
        t, axis = t[rows, cols], axis[rows, cols]
        d = self.D[:, rows, cols]
        P = self.O.astype(np.float32)[:, None] + t * d
        n = np.zeros_like(d)
        k = np.arange(len(t))
        n[axis, k] = -np.sign(d[axis, k])
        return rows, cols, t, P, n, axis

    def paint(self, rows, cols, t, P, n, label, albedo) -> None:
        """Write hits found by the caller (e.g. :meth:`interior`) like any primitive's:
        ``albedo(P, n)`` gives n×3 colours or (colours, keep mask); ``label`` a uint8 or (n,)."""
        self._finish((0, self.h, 0, self.w), rows, cols, t, P, n, label, albedo)
