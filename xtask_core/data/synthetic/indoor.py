"""Procedural indoor rooms in the NYUv2 13-class convention. SYNTHETIC, not real photos.

NYUv2 cannot be downloaded or shipped with xtask, so this renders rooms the way the Kinect of
NYUv2 saw them: a pinhole camera with the Kinect's focal length (518.86 px at 640 width, scaled
to the image width), held 1.1-1.7 m above the floor and pitched 3-20° down, inside a box room
(3-5.5 m wide, 3.5-7 m deep, 2.4-3 m high) with a floor, walls, a ceiling, a window with
curtains, a door, paintings, a ceiling lamp, and furniture depending on the room type
(bedroom, living room, dining room, study): bed, sofa, chairs, tables / desks, a TV,
bookshelves full of books, cabinets, nightstands, lamps, plants, pillows and small things.

Every pixel's ray is intersected with the room box (from inside) and with the furniture's
boxes and ellipsoids (:class:`~xtask_core.data.synthetic.canvas._Canvas`); colour, label and
depth come from the same nearest hit, so depth and segmentation are consistent by
construction. Labels are the 13 NYUv2 classes (indices in :mod:`.indoor_ids`); every pixel is
labelled (no -1 is produced, though -1 is the ignore value of the format).

Depth is the camera Z in metres (float32), about 0.5-9 m. It is 0 (invalid) on window panes
and nowhere else: a Kinect gets no return through glass. The window's frame and curtains have
valid depth. RGB has textures (wood grain, fabric, tiles, carpet, wallpaper), Lambert shading
from ceiling / table lamps and daylight from the window, corner darkening, contact shadows,
auto exposure, white balance, vignetting, blur and sensor noise.

Deterministic from a seed (a ``numpy.random.Generator``, no global state). All random draws
happen while the room is laid out, before anything is drawn, so ``_render(...,
furniture=False)`` shows the very same room empty (the tests compare the two).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from xtask_core.data.synthetic.canvas import _Canvas, _col, _frac, _hash01, _noise_tile, _sample
from xtask_core.data.synthetic.indoor_furniture import FABRICS, WOODS, _Frame, _Furnishing
from xtask_core.data.synthetic.indoor_ids import (
    CEILING,
    FLOOR,
    GLASS,
    IGNORE,
    KINECT_FX_640,
    NOTHING,
    NUM_CLASSES,
    OBJECTS,
    PAINTING,
    TV,
    WALL,
    WINDOW,
)
from xtask_core.errors import XTaskError

LEFT, RIGHT, FRONT, BACK = 0, 1, 2, 3   # wall codes; the camera stands by the back wall and never sees it
WALLS = (LEFT, RIGHT, FRONT)

PAINTS = ((232, 226, 212), (212, 216, 222), (226, 206, 182), (192, 206, 190), (240, 240, 236), (203, 188, 172),
          (178, 192, 212), (222, 200, 200))

# canvas label (uint8) → output label: classes as they are, window glass → window, else ignore
_LUT = np.full(256, IGNORE, np.int64)
_LUT[:NUM_CLASSES] = np.arange(NUM_CLASSES)
_LUT[GLASS] = WINDOW


class _RoomCanvas(_Canvas):
    """Canvas lit by point lights (ceiling / table lamps) besides ambient and window daylight."""

    def __init__(self, *args, lamps, **kw):
        super().__init__(*args, **kw)
        self.lamps = lamps

    def shade(self, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        out = self.light(normals)
        for pos, power in self.lamps:
            L = pos[:, None] - points
            d2 = (L * L).sum(0) + np.float32(1e-6)
            cos = np.maximum(0.0, (normals * L).sum(0)) / np.sqrt(d2)
            out = out + np.float32(power) * cos / (np.float32(0.3) + d2)     # inverse square, finite close up
        return out


class _Room(_Furnishing):
    """Random layout of one room (metres; x right, y up, z forward; floor y = 0, back wall z = 0)."""

    def __init__(self, rng: np.random.Generator, h: int, w: int):
        R = self.rng = rng
        self.h, self.w = h, w
        self.fine = _noise_tile(R, 128, 1.0)
        self.coarse = _noise_tile(R, 128, 6.0)
        self.W, self.D, self.H = float(R.uniform(3.0, 5.5)), float(R.uniform(3.5, 7.0)), float(R.uniform(2.4, 3.0))
        cx, cz = float(R.uniform(-0.3, 0.3)) * self.W, float(R.uniform(0.2, 0.8))
        self.cam = (cx, float(R.uniform(1.1, 1.7)), cz)
        self.yaw = math.atan2(-cx, self.D / 2) + math.radians(float(R.uniform(-15.0, 15.0)))
        self.pitch = math.radians(float(R.uniform(3.0, 20.0)))
        self.roll = math.radians(float(R.uniform(-2.0, 2.0)))
        self.z_near = cz + 0.8                       # nothing stands closer than this to the camera
        self.prims: list[tuple] = []                 # ("box" | "ellipsoid", args): drawn after the shell
        self.footprints: list[tuple] = []            # floor rectangles (x0, x1, z0, z1) taken
        self.wall_rects = {k: [] for k in WALLS}     # (along0, along1, y0, y1) taken on each wall
        self.lamps: list[tuple] = []
        self.ambient = float(R.uniform(0.3, 0.45))
        self.exposure = float(R.uniform(0.85, 1.1))
        self.wb = np.array([R.uniform(1.0, 1.12), 1.0, R.uniform(0.8, 0.97)], np.float32)   # warm indoor light
        self._materials()
        self.door = self._door() if R.random() < 0.5 else None
        self.window = self._window() if R.random() < 0.8 else None
        self.sun, self.sun_int = self._daylight()
        for _ in range(int(R.integers(1, 3))):
            self._ceiling_lamp()
        self.kind = ("bedroom", "living", "dining", "study")[int(R.integers(4))]
        self._furnish()
        for _ in range(int(R.integers(0, 4))):
            self._painting()

    # -- placement -----------------------------------------------------------------------
    def _box(self, f: _Frame, u0, u1, y0, y1, v0, v1, label, albedo) -> None:
        lo, hi = f.box(u0, u1, y0, y1, v0, v1)
        self.prims.append(("box", (lo, hi, label, albedo)))

    def _ellipsoid(self, f: _Frame, u, y, v, ru, ry, rv, label, albedo) -> None:
        rx, rz = (ru, rv) if abs(f.a[0]) > 0.5 else (rv, ru)
        x, z = f.xz(u, v)
        self.prims.append(("ellipsoid", ((x, y, z), (rx, ry, rz), label, albedo)))

    def _claim_floor(self, rect, margin: float = 0.08) -> bool:
        """Take the floor rectangle (x0, x1, z0, z1) if it is inside the room, beyond the
        camera's clear zone and ``margin`` away from everything placed."""
        x0, x1, z0, z1 = rect
        if x0 < -self.W / 2 - 1e-6 or x1 > self.W / 2 + 1e-6 or z0 < self.z_near or z1 > self.D + 1e-6:
            return False
        for a, b, c, d in self.footprints:
            if x0 < b + margin and x1 > a - margin and z0 < d + margin and z1 > c - margin:
                return False
        self.footprints.append(rect)
        return True

    def _wall_free(self, wall, a0, a1, y0, y1, margin: float = 0.05) -> bool:
        return all(not (a0 < b + margin and a1 > a - margin and y0 < d + margin and y1 > c - margin)
                   for a, b, c, d in self.wall_rects[wall])

    def _claim_wall(self, wall, a0, a1, y0, y1) -> bool:
        if not self._wall_free(wall, a0, a1, y0, y1):
            return False
        self.wall_rects[wall].append((a0, a1, y0, y1))
        return True

    def _wall_frame(self, wall: str, a0: float) -> _Frame:
        """Frame whose u runs along ``wall`` from its coordinate ``a0`` (x on the front wall,
        z on the side walls) and whose v points into the room."""
        if wall == FRONT:
            return _Frame(a0, self.D, (1, 0), (0, -1))
        return _Frame(-self.W / 2 if wall == LEFT else self.W / 2, a0, (0, 1), (1, 0) if wall == LEFT else (-1, 0))

    def _wall_range(self, wall: str, start: float) -> tuple[float, float]:
        return (-self.W / 2 + 0.02, self.W / 2 - 0.02) if wall == FRONT else (start, self.D - 0.02)

    def _against_wall(self, width: float, depth: float, height: float, tries: int = 20) -> _Frame | None:
        """Frame of a width×depth piece, ``height`` tall, backed against a random visible wall."""
        R = self.rng
        for _ in range(tries):
            wall = WALLS[int(R.integers(3))]
            lo, hi = self._wall_range(wall, self.z_near)
            if hi - width <= lo:
                continue
            a0 = float(R.uniform(lo, hi - width))
            f = self._wall_frame(wall, a0)
            if self._wall_free(wall, a0, a0 + width, 0.0, height) and self._claim_floor(f.rect(0, width, 0, depth)):
                self.wall_rects[wall].append((a0, a0 + width, 0.0, height))
                return f
        return None

    def _free_spot(self, width: float, depth: float, border: float, tries: int = 20) -> _Frame | None:
        """Frame of a free-standing piece with ``border`` metres of free floor around it."""
        R = self.rng
        for _ in range(tries):
            o = ((0, 1), (1, 0))[int(R.integers(2))]
            span_x, span_z = (width, depth) if o == (0, 1) else (depth, width)
            x_lo, x_hi = -self.W / 2 + border + span_x / 2, self.W / 2 - border - span_x / 2
            z_lo, z_hi = self.z_near + border + span_z / 2, self.D - border - span_z / 2
            if x_hi <= x_lo or z_hi <= z_lo:
                continue
            f = _Frame.centred(float(R.uniform(x_lo, x_hi)), float(R.uniform(z_lo, z_hi)), o, width, depth)
            x0, x1, z0, z1 = f.rect(0, width, 0, depth)
            if self._claim_floor((x0, x1, z0, z1), margin=border):
                return f
        return None

    # -- structure ------------------------------------------------------------------------
    def _materials(self) -> None:
        R = self.rng
        self.paint = np.clip(_col(PAINTS[int(R.integers(len(PAINTS)))]) * np.float32(R.uniform(0.85, 1.05)), 0, 1)
        self.accent = FRONT if R.random() < 0.2 else -1
        self.accent_paint = self._pick(FABRICS, 0.1)
        self.stripes = float(R.uniform(0.08, 0.3)) if R.random() < 0.25 else 0.0
        self.skirting = _col((240, 240, 235)) if R.random() < 0.6 else self._pick(WOODS)
        self.floor_kind = ("planks", "planks", "tiles", "carpet")[int(R.integers(4))]
        self.floor_base = self._pick(WOODS if self.floor_kind == "planks" else FABRICS + WOODS[-1:], 0.15)
        self.plank = (float(R.uniform(0.1, 0.2)), float(R.uniform(0.8, 1.8)), bool(R.random() < 0.5))
        self.tile = float(R.uniform(0.3, 0.6))
        self.ceiling = _col((242, 242, 238)) * np.float32(R.uniform(0.93, 1.02))
        self.hseed = int(R.integers(1 << 30))
        self.rug = None
        if R.random() < 0.45:
            rw, rd = float(R.uniform(1.2, 2.4)), float(R.uniform(0.9, 1.8))
            x = float(R.uniform(-self.W / 2 + 0.3, self.W / 2 - 0.3 - rw))
            z = float(R.uniform(self.z_near - 0.5, max(self.z_near - 0.4, self.D - 0.3 - rd)))
            self.rug = (x, x + rw, z, z + rd, self._pick(FABRICS), self._pick(FABRICS))

    def _door(self):
        R = self.rng
        for _ in range(10):
            wall = WALLS[int(R.integers(3))]
            dw, dh = float(R.uniform(0.8, 0.92)), float(R.uniform(2.0, min(2.15, self.H - 0.2)))
            lo, hi = self._wall_range(wall, self.z_near)
            if hi - dw - 0.1 <= lo + 0.1:
                continue
            a0 = float(R.uniform(lo + 0.1, hi - dw - 0.1))
            f = self._wall_frame(wall, a0)
            if self._claim_wall(wall, a0 - 0.08, a0 + dw + 0.08, 0.0, dh + 0.08):
                self._claim_floor(f.rect(0, dw, 0, 0.7))       # keep the way in clear (if it can be)
                return wall, a0, a0 + dw, dh, _col((235, 232, 225)) if R.random() < 0.5 else self._pick(WOODS)
        return None

    def _window(self):
        R = self.rng
        for _ in range(10):
            wall = WALLS[int(R.integers(3))]
            lo, hi = self._wall_range(wall, self.z_near - 0.5)
            ww = float(R.uniform(0.8, min(2.2, 0.6 * (hi - lo))))
            sill = float(R.uniform(0.75, 1.0))
            top = min(self.H - 0.2, sill + float(R.uniform(1.1, 1.6)))
            curtain = float(R.uniform(0.2, 0.4)) if R.random() < 0.55 else 0.0
            if hi - ww - curtain <= lo + curtain:
                continue
            a0 = float(R.uniform(lo + curtain, hi - ww - curtain))
            if not self._claim_wall(wall, a0 - curtain, a0 + ww + curtain, 0.0 if curtain else sill, top + 0.1):
                continue
            if curtain:
                f = self._wall_frame(wall, a0)
                cloth = self._pick(FABRICS)
                fold = float(R.uniform(0.08, 0.15))
                fab = self._fabric(cloth)

                def folds(P, n, f=f, fab=fab, fold=fold):   # vertical folds: brightness ripples across
                    return fab(P, n) * (1.0 + 0.18 * np.sin(f.u_of(P) * (2 * np.pi / fold)))[:, None]
                bottom = float(R.uniform(0.02, 0.1)) if R.random() < 0.6 else sill - 0.15
                for u0, u1 in ((-curtain, 0.1), (ww - 0.1, ww + curtain)):
                    self._box(f, u0, u1, bottom, top + 0.1, 0.06, 0.12, WINDOW, folds)
            return wall, a0, a0 + ww, sill, top, float(R.uniform(0.04, 0.08)), int(R.integers(1, 4))
        return None

    def _daylight(self):
        """Direction towards the window (and up) and its strength; none without a window."""
        if self.window is None:
            return np.array([0.0, 1.0, 0.0], np.float32), 0.0
        out = {LEFT: (-1.0, 0.0), RIGHT: (1.0, 0.0), FRONT: (0.0, 1.0)}[self.window[0]]
        v = np.array([out[0], 0.6, out[1]], np.float32)
        return v / np.linalg.norm(v), float(self.rng.uniform(0.15, 0.4))

    def _ceiling_lamp(self) -> None:
        R = self.rng
        x = float(R.uniform(-self.W / 2 + 0.6, self.W / 2 - 0.6))
        z = float(R.uniform(self.z_near, self.D - 0.6))
        r = float(R.uniform(0.18, 0.3))
        f = _Frame(0.0, 0.0, (1, 0), (0, 1))
        glow = _col((255, 248, 230)) * np.float32(R.uniform(1.8, 2.4))
        self._ellipsoid(f, x, self.H - 0.04, z, r, 0.07, r, OBJECTS, self._matte(glow, 0.01))
        self.lamps.append((np.array([x, self.H - 0.25, z], np.float32), float(R.uniform(1.5, 3.0))))

    def _furnish(self) -> None:
        R = self.rng
        if self.kind == "bedroom":
            self.add_bed()
            for fn, p in ((self.add_cabinet, 0.7), (self.add_bookshelf, 0.3), (self.add_desk, 0.3)):
                if R.random() < p:
                    fn()
        elif self.kind == "living":
            sofa = self.add_sofa()
            if sofa is not None and R.random() < 0.8:
                self.add_coffee_table(sofa)
            if R.random() < 0.35:
                self._wall_tv()
            else:
                self.add_tv_stand()
            for fn, p in ((self.add_bookshelf, 0.5), (self.add_plant, 0.6), (self.add_cabinet, 0.3)):
                if R.random() < p:
                    fn()
        elif self.kind == "dining":
            self.add_dining_set()
            for fn, p in ((self.add_cabinet, 0.7), (self.add_plant, 0.4), (self.add_bookshelf, 0.2)):
                if R.random() < p:
                    fn()
        else:
            self.add_desk()
            for _ in range(int(R.integers(1, 3))):
                self.add_bookshelf()
            for fn, p in ((self.add_sofa, 0.3), (self.add_cabinet, 0.4), (self.add_plant, 0.4)):
                if R.random() < p:
                    fn()
        for _ in range(int(R.integers(0, 3))):
            self.add_floor_box()

    def _wall_tv(self) -> None:
        R = self.rng
        tw = float(R.uniform(0.9, 1.4))
        th, y0 = tw * 0.58, float(R.uniform(0.9, 1.2))
        for _ in range(10):
            wall = WALLS[int(R.integers(3))]
            lo, hi = self._wall_range(wall, self.z_near)
            if hi - tw <= lo:
                continue
            a0 = float(R.uniform(lo, hi - tw))
            if self._claim_wall(wall, a0, a0 + tw, y0, y0 + th):
                f = self._wall_frame(wall, a0)
                self._box(f, 0, tw, y0, y0 + th, 0.0, 0.05, TV, self._screen(f, 0.0, tw, y0, th))
                return

    def _painting(self) -> None:
        R = self.rng
        pw, ph = float(R.uniform(0.35, 1.2)), float(R.uniform(0.3, 0.9))
        yc = min(float(R.uniform(1.35, 1.8)), self.H - 0.15 - ph / 2)
        for _ in range(10):
            wall = WALLS[int(R.integers(3))]
            lo, hi = self._wall_range(wall, 0.3)
            if hi - pw <= lo:
                continue
            a0 = float(R.uniform(lo, hi - pw))
            if self._claim_wall(wall, a0, a0 + pw, yc - ph / 2, yc + ph / 2):
                f = self._wall_frame(wall, a0)
                self._box(f, 0, pw, yc - ph / 2, yc + ph / 2, 0.0, float(R.uniform(0.02, 0.04)), PAINTING,
                          self._art(f, pw, yc - ph / 2, ph))
                return

    def _art(self, f: _Frame, pw: float, y0: float, ph: float):
        """A framed picture: frame colour, optional white mat, and an abstract or landscape image."""
        R = self.rng
        border, mat = float(R.uniform(0.025, 0.06)), float(R.uniform(0.03, 0.08)) if R.random() < 0.4 else 0.0
        frame = _col(((200, 160, 60), (25, 25, 25), (120, 80, 50), (235, 235, 230))[int(R.integers(4))])
        pal = np.stack([self._pick(FABRICS + WOODS, 0.3) * np.float32(R.uniform(0.6, 1.3)) for _ in range(4)])
        landscape, scale, off = bool(R.random() < 0.4), float(R.uniform(3.0, 12.0)), float(R.uniform(0, 100))
        coarse, fine = self.coarse, self.fine

        def albedo(P, n):
            u, y = f.u_of(P), P[1] - y0
            out = np.broadcast_to(frame, (P.shape[1], 3)).copy()
            inner = f.is_front(n) & (u > border) & (u < pw - border) & (y > border) & (y < ph - border)
            m = border + mat
            image = inner & (u > m) & (u < pw - m) & (y > m) & (y < ph - m)
            out[inner] = _col((240, 238, 230))
            s = _sample(coarse, (u + off) * scale * 8, (y + off) * scale * 8)
            if landscape:
                horizon = ph * 0.45 + 0.05 * s
                k = np.where(y > horizon, 0, np.where(y > horizon - 0.08, 1, 2)) + (s > 1.0)
            else:
                k = np.clip(((s + 2.0) * 1.0).astype(np.int64), 0, 3)
            img = pal[np.clip(k, 0, 3)] * (1.0 + 0.08 * _sample(fine, u * 300, y * 300))[:, None]
            out[image] = img[image]
            return out
        return albedo

    # -- drawing -------------------------------------------------------------------------------
    def _corner_shade(self, d: np.ndarray) -> np.ndarray:
        """Darkening near room edges (cheap ambient occlusion), ``d`` = distance to the nearest edge."""
        return 1.0 - 0.3 * np.exp(-d / 0.2)

    def _floor_albedo(self, x: np.ndarray, z: np.ndarray) -> np.ndarray:
        base, fine, coarse = self.floor_base, self.fine, self.coarse
        if self.floor_kind == "planks":
            pw, pl, along_z = self.plank
            across, length = (x, z) if along_z else (z, x)
            row = np.floor(across / pw)
            shift = _hash01(row, row * 0 + 7, self.hseed) * pl               # staggered plank ends
            along = length + shift
            col = np.floor(along / pl)
            tint = _hash01(row, col, self.hseed)
            grain = _sample(fine, along * 4.0, across * 70.0)
            c = base[None, :] * ((0.8 + 0.35 * tint) * (1.0 + 0.08 * grain))[:, None]
            joint = (_frac(across / pw) < 0.03) | (_frac(along / pl) < 0.006)
            c = np.where(joint[:, None], c * 0.6, c)
        elif self.floor_kind == "tiles":
            tx, tz = np.floor(x / self.tile), np.floor(z / self.tile)
            tint = _hash01(tx, tz, self.hseed)
            c = base[None, :] * ((0.93 + 0.1 * tint) * (1.0 + 0.03 * _sample(fine, x * 90, z * 90)))[:, None]
            grout = (_frac(x / self.tile) < 0.02) | (_frac(z / self.tile) < 0.02)
            c = np.where(grout[:, None], _col((150, 145, 140)), c)
        else:
            pile = 1.0 + 0.12 * _sample(fine, x * 120, z * 120) + 0.06 * _sample(coarse, x * 5, z * 5)
            c = base[None, :] * pile[:, None]
        if self.rug is not None:
            x0, x1, z0, z1, c1, c2 = self.rug
            inside = (x > x0) & (x < x1) & (z > z0) & (z < z1)
            edge = np.minimum(np.minimum(x - x0, x1 - x), np.minimum(z - z0, z1 - z))
            pattern = np.where((edge < 0.1)[:, None], c2, c1)
            pattern = pattern * (1.0 + 0.1 * _sample(fine, x * 150, z * 150))[:, None]
            c = np.where(inside[:, None], pattern, c)
        shade = self._corner_shade(np.minimum(np.minimum(x + self.W / 2, self.W / 2 - x), np.minimum(z, self.D - z)))
        for x0, x1, z0, z1 in self.footprints:                            # soft contact shadows
            dist = np.hypot(np.maximum(np.maximum(x0 - x, x - x1), 0), np.maximum(np.maximum(z0 - z, z - z1), 0))
            shade = shade * (1.0 - 0.4 * np.exp(-dist / 0.1))
        return c * shade[:, None]

    def _wall_albedo(self, wall: np.ndarray, along: np.ndarray, y: np.ndarray, x, z) -> np.ndarray:
        c = np.broadcast_to(self.paint, (len(y), 3)).copy()
        c[wall == self.accent] = self.accent_paint
        c *= (1.0 + 0.025 * _sample(self.fine, along * 60, y * 60)
              + 0.03 * _sample(self.coarse, along * 3, y * 3))[:, None]
        if self.stripes:
            c = np.where((_frac(along / self.stripes) < 0.5)[:, None], c * 0.93, c)
        c = np.where((y < 0.08)[:, None], self.skirting, c)
        if self.door is not None:
            dwall, a0, a1, top, colour = self.door
            on = (wall == dwall) & (along > a0 - 0.06) & (along < a1 + 0.06) & (y < top + 0.06)
            leaf = on & (along > a0) & (along < a1) & (y < top)
            u, v = along - a0, y
            panel = leaf & (np.abs(_frac(v / (top / 2)) - 0.5) < 0.4) & (u > 0.1) & (u < a1 - a0 - 0.1)
            knob = leaf & (np.hypot(u - (a1 - a0 - 0.08), v - 1.0) < 0.03)
            c = np.where(on[:, None], _col((245, 245, 240)), c)
            c = np.where(leaf[:, None], colour * (1.0 + 0.05 * _sample(self.fine, u * 40, v * 90))[:, None], c)
            c = np.where((leaf & ~panel & (np.abs(_frac(v / (top / 2)) - 0.5) < 0.42))[:, None], c * 0.8, c)
            c = np.where(knob[:, None], _col((190, 180, 150)), c)
        edge = np.minimum(np.minimum(y, self.H - y), np.minimum(np.minimum(x + self.W / 2, self.W / 2 - x), self.D - z))
        return c * self._corner_shade(edge)[:, None]

    def render_shell(self, cv: _Canvas) -> None:
        """Floor, ceiling and walls (with window and door) where the rays leave the room box."""
        rows, cols, t, P, n, axis = cv.interior((-self.W / 2, 0.0, 0.0), (self.W / 2, self.H, self.D))
        x, y, z = P
        wall = np.where(axis == 0, np.where(x < 0, LEFT, RIGHT), np.where(z > self.D / 2, FRONT, BACK))
        wall = np.where(axis == 1, -1, wall)
        along = np.where(axis == 0, z, x)
        lab = np.where(axis == 1, np.where(n[1] > 0, FLOOR, CEILING), WALL).astype(np.uint8)
        rgb = np.empty((len(t), 3), np.float32)
        fl, ce, wa = lab == FLOOR, lab == CEILING, lab == WALL
        rgb[fl] = self._floor_albedo(x[fl], z[fl])
        edge = np.minimum(np.minimum(x + self.W / 2, self.W / 2 - x), self.D - z)
        plaster = 1.0 + 0.02 * _sample(self.fine, x[ce] * 50, z[ce] * 50)
        rgb[ce] = self.ceiling * (self._corner_shade(edge[ce]) * plaster)[:, None]
        rgb[wa] = self._wall_albedo(wall[wa], along[wa], y[wa], x[wa], z[wa])
        if self.window is not None:
            ww, a0, a1, y0, y1, fw, panes = self.window
            win = (wall == ww) & (along > a0) & (along < a1) & (y > y0) & (y < y1)
            pu = (along - a0 - fw) / (a1 - a0 - 2 * fw) * panes                # pane coordinate across
            pane = win & (along > a0 + fw) & (along < a1 - fw) & (y > y0 + fw) & (y < y1 - fw) \
                & ((_frac(pu) > 0.03) & (_frac(pu) < 0.97) | (panes == 1))
            lab[win] = WINDOW
            lab[pane] = GLASS
            rgb[win] = _col((238, 238, 232))
        cv.paint(rows, cols, t, P, n, lab, lambda P_, n_: rgb)

    def render_outside(self, cv: _Canvas) -> None:
        """What is seen through the glass: bright sky over trees / houses, unshaded (overexposed)."""
        rows, cols = np.nonzero(cv.lab == GLASS)
        if not len(rows):
            return
        d = cv.D[:, rows, cols]
        d = d / np.linalg.norm(d, axis=0)
        az = np.arctan2(d[0], d[2])
        skyline = 0.05 + 0.12 * _sample(self.coarse, az * 60.0, az * 0.0 + 3.0)
        horizon, zenith = _col((200, 220, 245)), _col((120, 160, 230))
        sky = horizon + (np.clip(d[1], 0, 1) * 0.3)[:, None] * (zenith - horizon)
        ground = _col((90, 115, 80)) * (1.0 + 0.2 * _sample(self.fine, az * 300, d[1] * 300))[:, None]
        cv.rgb[rows, cols] = np.where((d[1] > skyline)[:, None], sky * 1.6, ground * 1.3)

    def finish(self, cv: _Canvas, glass: np.ndarray) -> np.ndarray:
        """Auto exposure, white balance, vignetting, blur and sensor noise → H×W×3 uint8."""
        rgb = cv.rgb
        lum = rgb.mean(2)
        ref = float(np.percentile(lum[~glass], 92)) if (~glass).any() else 1.0
        rgb = rgb * np.float32(self.exposure * 0.85 / max(ref, 1e-3)) * self.wb
        yy, xx = np.mgrid[0:self.h, 0:self.w].astype(np.float32)
        r2 = ((xx - self.w / 2) / (self.w / 2)) ** 2 + ((yy - self.h / 2) / (self.h / 2)) ** 2
        rgb = rgb * (1.0 - 0.12 * r2)[:, :, None]
        rgb = cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), 0.6)
        rgb = rgb + self.rng.normal(0.0, 0.012, rgb.shape).astype(np.float32)
        return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def check_size(height, width) -> tuple[int, int]:
    """``(height, width)`` as ints, or XTaskError unless both are integers >= 8 divisible by 8."""
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise XTaskError(f"indoor image {name} must be an integer, got {v!r}")
    if height < 8 or width < 8 or height % 8 or width % 8:
        raise XTaskError(f"indoor images must be at least 8×8 with sides divisible by 8, got {height}×{width}")
    return int(height), int(width)


def _render(seed: int, height: int, width: int, furniture: bool = True):
    """Render room ``seed``; also returns the raw canvas depth (window panes included).

    ``furniture=False`` draws the same room empty (floor, walls, ceiling, window, door only).
    Returns ``(rgb, label, depth, z)``; see :func:`render_indoor`; ``z`` H×W float32 metres.
    """
    height, width = check_size(height, width)
    rng = np.random.default_rng(int(seed))
    room = _Room(rng, height, width)
    cv = _RoomCanvas(height, width, room.cam, room.yaw, room.pitch, room.roll, room.sun, room.sun_int,
                     room.ambient, fx=KINECT_FX_640 * width / 640.0, background=NOTHING, lamps=room.lamps)
    room.render_shell(cv)
    if furniture:
        for kind, args in room.prims:
            getattr(cv, kind)(*args)
    room.render_outside(cv)
    glass = cv.lab == GLASS
    rgb = room.finish(cv, glass)
    depth = np.where(glass | ~np.isfinite(cv.z), 0.0, cv.z).astype(np.float32)
    return rgb, _LUT[cv.lab], depth, cv.z.copy()


def render_indoor(seed: int, height: int = 288, width: int = 384) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one synthetic indoor room, deterministically from ``seed``.

    Args:
        seed: any integer. height, width: pixels, multiples of 8 (NYUv2's MTAN copy: 288×384).

    Returns:
        rgb: H×W×3 uint8 RGB.
        label: H×W int64 NYUv2 13-class labels 0..12 (order of ``labels.NYUV2_13``), -1 = ignore.
        depth: H×W float32 camera Z in metres; 0 (invalid) exactly on window panes.
    """
    rgb, label, depth, _ = _render(seed, height, width)
    return rgb, label, depth
