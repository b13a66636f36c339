"""Furniture and small objects of the synthetic indoor rooms (a mixin of the indoor ``_Room``).

Every piece is built from axis-aligned boxes and ellipsoids in a :class:`_Frame` (its own
width / depth axes, parallel to the room's walls) and recorded as a primitive by the room's
``_box`` / ``_ellipsoid``; nothing is drawn here. All random draws happen while the room is laid
out, so a room renders identically with or without its furniture. Lengths are metres in the
room's world frame (x right, y up, z forward); typical sizes are those of real furniture.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xtask_core.data.synthetic.canvas import _col, _frac, _sample
from xtask_core.data.synthetic.indoor_ids import BED, BOOKS, CHAIR, FURNITURE, OBJECTS, SOFA, TABLE, TV

WOODS = ((150, 105, 70), (190, 150, 105), (110, 75, 50), (210, 185, 150), (80, 55, 40), (235, 230, 220))
FABRICS = ((120, 125, 135), (150, 60, 55), (70, 90, 120), (190, 175, 150), (60, 100, 80), (95, 85, 80),
           (200, 200, 195), (140, 110, 150))


class _Frame:
    """Floor frame of one piece: u along its width, v along its depth from its back (a wall,
    say) towards its front, y up. ``a`` and ``o`` are the unit xz directions of u and v, both
    parallel to a room axis, so a local box maps to a world axis-aligned box."""

    def __init__(self, x: float, z: float, a: tuple, o: tuple):
        self.x, self.z, self.a, self.o = float(x), float(z), a, o

    @classmethod
    def centred(cls, cx: float, cz: float, o: tuple, width: float, depth: float) -> _Frame:
        """Frame of a width×depth piece centred at (cx, cz) whose front faces ``o``."""
        a = (o[1], -o[0])
        return cls(cx - width / 2 * a[0] - depth / 2 * o[0], cz - width / 2 * a[1] - depth / 2 * o[1], a, o)

    def shifted(self, u: float, v: float) -> _Frame:
        return _Frame(*self.xz(u, v), self.a, self.o)

    def xz(self, u: float, v: float) -> tuple[float, float]:
        return self.x + u * self.a[0] + v * self.o[0], self.z + u * self.a[1] + v * self.o[1]

    def box(self, u0, u1, y0, y1, v0, v1) -> tuple[tuple, tuple]:
        """World (lo, hi) corners of the local box [u0, u1]×[y0, y1]×[v0, v1]."""
        (xa, za), (xb, zb) = self.xz(u0, v0), self.xz(u1, v1)
        return (min(xa, xb), y0, min(za, zb)), (max(xa, xb), y1, max(za, zb))

    def rect(self, u0, u1, v0, v1) -> tuple[float, float, float, float]:
        """World floor rectangle (x0, x1, z0, z1) of the local [u0, u1]×[v0, v1]."""
        lo, hi = self.box(u0, u1, 0.0, 0.0, v0, v1)
        return lo[0], hi[0], lo[2], hi[2]

    def u_of(self, P: np.ndarray) -> np.ndarray:
        return (P[0] - self.x) * self.a[0] + (P[2] - self.z) * self.a[1]

    def v_of(self, P: np.ndarray) -> np.ndarray:
        return (P[0] - self.x) * self.o[0] + (P[2] - self.z) * self.o[1]

    def is_front(self, n: np.ndarray) -> np.ndarray:
        """Which of the 3×n normals face the piece's front (+v)."""
        return n[0] * self.o[0] + n[2] * self.o[1] > 0.5


class _Furnishing:
    """Builders of furniture pieces. Needs from the room: ``rng``, ``fine``, ``coarse`` (noise
    tiles), ``lamps`` (list of (position, intensity)), ``_box``, ``_ellipsoid``,
    ``_claim_floor``, ``_claim_wall``, ``_against_wall`` and ``_free_spot``."""

    # -- materials -----------------------------------------------------------------------
    def _pick(self, palette, jitter: float = 0.12) -> np.ndarray:
        R = self.rng
        base = _col(palette[int(R.integers(len(palette)))]) * np.float32(R.uniform(1 - jitter, 1 + jitter))
        return np.clip(base + np.float32(R.normal(0, 0.03, 3)), 0.02, 1.0).astype(np.float32)

    def _matte(self, base: np.ndarray, k: float = 0.05) -> Callable:
        fine, coarse = self.fine, self.coarse

        def albedo(P, n):
            x, y, z = P
            t = 1.0 + k * _sample(fine, (x + 0.6 * z) * 40.0, (y + 0.3 * z) * 40.0) \
                + k * _sample(coarse, (x - 0.4 * z) * 4.0, (y + z) * 4.0)
            return base[None, :] * t[:, None]
        return albedo

    def _wood(self, base: np.ndarray) -> Callable:
        fine, coarse = self.fine, self.coarse

        def albedo(P, n):
            x, y, z = P
            grain = _sample(fine, (x + z) * 5.0, (y + 0.7 * x - 0.7 * z) * 90.0)
            t = 1.0 + 0.07 * grain + 0.06 * _sample(coarse, (x + z) * 2.0, y * 2.0)
            return base[None, :] * t[:, None]
        return albedo

    def _fabric(self, base: np.ndarray) -> Callable:
        fine, coarse = self.fine, self.coarse

        def albedo(P, n):
            x, y, z = P
            weave = _sample(fine, (x + z) * 150.0, y * 150.0)
            t = 1.0 + 0.06 * weave + 0.08 * _sample(coarse, (x - z) * 3.0, y * 3.0)
            return base[None, :] * t[:, None]
        return albedo

    def _cabinet(self, base: np.ndarray, f: _Frame, width: float, height: float, drawers: int) -> Callable:
        """Wood or paint with drawer gaps and knobs on the front face."""
        wood = self._wood(base)

        def albedo(P, n):
            out = wood(P, n)
            front = f.is_front(n)
            u, y = f.u_of(P), P[1]
            row = _frac(y / height * drawers)
            gap = front & ((row < 0.03) | (np.abs(u - width / 2) < 0.006)) & (y > 0.05)
            knob = front & (np.abs(row - 0.55) < 0.08) & (np.abs(np.abs(u - width / 2) - width / 4) < 0.03)
            out = np.where(gap[:, None], out * 0.45, out)
            return np.where(knob[:, None], _col((200, 195, 180)), out)
        return albedo

    # -- small pieces --------------------------------------------------------------------------
    def _leg_box(self, f, u, v, y1, s, label, albedo):
        self._box(f, u, u + s, 0.0, y1, v, v + s, label, albedo)

    def _legs(self, f, width, depth, y1, s, inset, label, albedo):
        for u in (inset, width - inset - s):
            for v in (inset, depth - inset - s):
                self._leg_box(f, u, v, y1, s, label, albedo)

    def add_lamp(self, f: _Frame, u: float, v: float, y: float) -> None:
        """Table lamp standing at local (u, v) on a surface at height y; also a light source."""
        R = self.rng
        stem = float(R.uniform(0.22, 0.35))
        self._box(f, u - 0.06, u + 0.06, y, y + 0.03, v - 0.06, v + 0.06, OBJECTS, self._matte(_col((60, 60, 60))))
        self._box(f, u - 0.012, u + 0.012, y, y + stem, v - 0.012, v + 0.012, OBJECTS,
                  self._matte(_col((180, 170, 150))))
        shade = _col((250, 235, 200)) * np.float32(R.uniform(1.2, 1.6))        # lit from inside: bright
        r = float(R.uniform(0.12, 0.18))
        self._ellipsoid(f, u, y + stem + 0.08, v, r, 0.11, r, OBJECTS, self._matte(shade, 0.02))
        x, z = f.xz(u, v)
        self.lamps.append((np.array([x, y + stem + 0.08, z], np.float32), float(R.uniform(0.15, 0.3))))

    def add_clutter(self, f: _Frame, u0: float, u1: float, v0: float, v1: float, y: float, n: int) -> None:
        """``n`` small things (book stacks, cups, vases, bowls) on the surface [u0,u1]×[v0,v1] at y."""
        R = self.rng
        for _ in range(n):
            if u1 - u0 < 0.3 or v1 - v0 < 0.3:
                return
            u, v = float(R.uniform(u0 + 0.15, u1 - 0.15)), float(R.uniform(v0 + 0.15, v1 - 0.15))
            kind = int(R.integers(4))
            if kind == 0:                                                       # stack of books
                top = y
                for _ in range(int(R.integers(1, 4))):
                    bw, bd = float(R.uniform(0.14, 0.22)), float(R.uniform(0.2, 0.28))
                    bh = float(R.uniform(0.02, 0.045))
                    du, dv = float(R.uniform(-0.02, 0.02)), float(R.uniform(-0.02, 0.02))
                    self._box(f, u - bw / 2 + du, u + bw / 2 + du, top, top + bh, v - bd / 2 + dv, v + bd / 2 + dv,
                              BOOKS, self._matte(self._book_colour(), 0.04))
                    top += bh
            elif kind == 1:                                                     # cup / jar
                s, hgt = float(R.uniform(0.035, 0.05)), float(R.uniform(0.08, 0.14))
                self._box(f, u - s, u + s, y, y + hgt, v - s, v + s, OBJECTS, self._matte(self._pick(FABRICS, 0.3)))
            elif kind == 2:                                                     # vase
                r, hgt = float(R.uniform(0.05, 0.09)), float(R.uniform(0.1, 0.2))
                self._ellipsoid(f, u, y + hgt, v, r, hgt, r, OBJECTS, self._matte(self._pick(FABRICS, 0.3), 0.03))
            else:                                                               # bowl
                r = float(R.uniform(0.08, 0.14))
                self._ellipsoid(f, u, y + 0.02, v, r, 0.05, r, OBJECTS, self._matte(self._pick(WOODS), 0.03))

    def _book_colour(self) -> np.ndarray:
        R = self.rng
        return np.clip(_col(R.integers(30, 230, 3)) * np.float32(R.uniform(0.6, 1.0)), 0.03, 1).astype(np.float32)

    # -- furniture -----------------------------------------------------------------------------
    def add_bed(self) -> tuple | None:
        R = self.rng
        w = float(R.uniform(1.4, 1.8) if R.random() < 0.7 else R.uniform(0.9, 1.05))
        length = float(R.uniform(1.95, 2.1))
        f = self._against_wall(w, length, 1.15)
        if f is None:
            return None
        wood = self._wood(self._pick(WOODS))
        self._box(f, 0, w, 0.0, 0.32, 0.06, length, BED, wood)
        self._box(f, 0, w, 0.0, float(R.uniform(0.8, 1.15)), 0.0, 0.06, BED, wood)             # headboard
        cover, stripe = self._pick(FABRICS), self._pick(FABRICS)
        fold, period = float(R.uniform(0.5, 0.7)), float(R.uniform(0.08, 0.3))
        fab = self._fabric(cover)

        def blanket(P, n):
            out = fab(P, n)
            v = f.v_of(P)
            pattern = (_frac(f.u_of(P) / period) < 0.5) & (v > fold + 0.25)
            out = np.where(pattern[:, None], out * 0.6 + stripe * 0.4, out)
            sheet = v < fold                                                   # white sheet at the pillow end
            return np.where(sheet[:, None], _col((235, 235, 230)) * (out / (cover + 1e-3)).mean(1, keepdims=True), out)
        self._box(f, 0.02, w - 0.02, 0.32, 0.56, 0.08, length - 0.02, BED, blanket)
        npil = 1 if w < 1.2 else 2
        for i in range(npil):
            self._ellipsoid(f, (i + 0.5) * w / npil, 0.62, 0.3, w / npil * 0.4, 0.08, 0.17, OBJECTS,
                            self._fabric(self._pick(FABRICS[-2:] + FABRICS[:1])))
        for side in (-1, 1):                                                   # nightstands
            if R.random() < 0.6:
                ns = f.shifted(-0.5 if side < 0 else w + 0.05, 0.0)
                if self._claim_floor(ns.rect(0, 0.45, 0, 0.42)):
                    hgt = float(R.uniform(0.5, 0.62))
                    self._box(ns, 0, 0.45, 0, hgt, 0, 0.42, FURNITURE,
                              self._cabinet(self._pick(WOODS), ns, 0.45, hgt, 2))
                    if R.random() < 0.6:
                        self.add_lamp(ns, 0.22, 0.2, hgt)
                    else:
                        self.add_clutter(ns, 0, 0.45, 0, 0.42, hgt, 1)
        return f, w, length

    def add_sofa(self) -> tuple | None:
        R = self.rng
        w, d = float(R.uniform(1.6, 2.3)), float(R.uniform(0.85, 0.95))
        f = self._against_wall(w, d, 0.9)
        if f is None:
            return None
        fab = self._fabric(self._pick(FABRICS))
        self._legs(f, w, d, 0.09, 0.05, 0.03, SOFA, self._matte(_col((50, 40, 30))))
        self._box(f, 0, w, 0.09, 0.4, 0, d, SOFA, fab)                            # base
        self._box(f, 0, w, 0.4, float(R.uniform(0.8, 0.9)), 0, 0.22, SOFA, fab)   # back
        arm = float(R.uniform(0.14, 0.22))
        for u0 in (0.0, w - arm):
            self._box(f, u0, u0 + arm, 0.4, 0.62, 0, d, SOFA, fab)
        seats = int(R.integers(2, 4))
        sw = (w - 2 * arm) / seats
        for i in range(seats):                                                 # seat cushions, small gaps
            u0 = arm + i * sw
            self._box(f, u0 + 0.008, u0 + sw - 0.008, 0.4, 0.48, 0.22, d - 0.01, SOFA, fab)
        for _ in range(int(R.integers(0, 3))):                                 # throw pillows
            u = float(R.uniform(arm + 0.2, w - arm - 0.2))
            self._ellipsoid(f, u, 0.62, 0.3, 0.2, 0.18, 0.07, OBJECTS, self._fabric(self._pick(FABRICS)))
        return f, w, d

    def add_table(self, f: _Frame, w: float, d: float, h: float, label: int = TABLE) -> None:
        wood = self._wood(self._pick(WOODS))
        self._box(f, 0, w, h - 0.035, h, 0, d, label, wood)
        self._legs(f, w, d, h - 0.035, 0.05, 0.04, label, wood)

    def add_chair(self, cx: float, cz: float, o: tuple) -> bool:
        """Chair centred at (cx, cz) facing ``o``, if the floor there is free."""
        R = self.rng
        s = float(R.uniform(0.42, 0.48))
        f = _Frame.centred(cx, cz, o, s, s)
        if not self._claim_floor(f.rect(0, s, 0, s), margin=0.03):
            return False
        alb = self._wood(self._pick(WOODS)) if R.random() < 0.6 else self._matte(self._pick(FABRICS, 0.3))
        self._legs(f, s, s, 0.43, 0.035, 0.01, CHAIR, alb)
        self._box(f, 0, s, 0.43, 0.47, 0, s, CHAIR, alb)
        top = float(R.uniform(0.82, 0.95))
        self._box(f, 0, s, 0.47, top, 0, 0.035, CHAIR, alb)
        return True

    def add_dining_set(self) -> None:
        R = self.rng
        w, d, h = float(R.uniform(1.1, 1.7)), float(R.uniform(0.75, 0.95)), float(R.uniform(0.72, 0.77))
        f = self._free_spot(w, d, border=0.75)
        if f is None:
            return
        self.add_table(f, w, d, h)
        per_side = max(1, int(w / 0.6))
        for i in range(per_side):
            u = (i + 0.5) * w / per_side
            for v, o in ((-0.3, f.o), (d + 0.3, (-f.o[0], -f.o[1]))):
                if R.random() < 0.8:
                    self.add_chair(*f.xz(u, v), o)
        if R.random() < 0.4:
            self.add_chair(*f.xz(w + 0.3, d / 2), (-f.a[0], -f.a[1]))
        self.add_clutter(f, 0, w, 0, d, h, int(R.integers(0, 4)))

    def add_desk(self) -> None:
        R = self.rng
        w, d = float(R.uniform(1.0, 1.5)), float(R.uniform(0.55, 0.7))
        f = self._against_wall(w, d, 0.78)
        if f is None:
            return
        self.add_table(f, w, d, 0.75)
        self.add_chair(*f.xz(w / 2, d + 0.3), (-f.o[0], -f.o[1]))
        if R.random() < 0.5:
            self.add_lamp(f, w - 0.2, 0.15, 0.75)
        self.add_clutter(f, 0, w - 0.3, 0, d, 0.75, int(R.integers(1, 4)))

    def add_coffee_table(self, sofa: tuple) -> None:
        R = self.rng
        f, w, d = sofa
        cw, cd = min(w * 0.6, float(R.uniform(0.8, 1.2))), float(R.uniform(0.45, 0.6))
        t = f.shifted((w - cw) / 2, d + float(R.uniform(0.3, 0.45)))
        if self._claim_floor(t.rect(0, cw, 0, cd)):
            hgt = float(R.uniform(0.38, 0.46))
            self.add_table(t, cw, cd, hgt)
            self.add_clutter(t, 0, cw, 0, cd, hgt, int(R.integers(1, 4)))

    def add_cabinet(self) -> None:
        """Dresser / sideboard against a wall, with things (or a small TV) on top."""
        R = self.rng
        w, d, h = float(R.uniform(0.8, 1.6)), float(R.uniform(0.42, 0.55)), float(R.uniform(0.75, 1.1))
        f = self._against_wall(w, d, h)
        if f is None:
            return
        self._box(f, 0, w, 0, h, 0, d, FURNITURE, self._cabinet(self._pick(WOODS), f, w, h, int(R.integers(2, 5))))
        if R.random() < 0.25:
            self.add_tv(f, w, h, small=True)
        else:
            if R.random() < 0.4:
                self.add_lamp(f, float(R.uniform(0.2, w - 0.2)), d / 2, h)
            self.add_clutter(f, 0, w, 0, d, h, int(R.integers(0, 4)))

    def add_tv(self, f: _Frame, w: float, y: float, small: bool = False, v0: float = 0.12) -> None:
        """Television standing on a surface of width ``w`` at height ``y`` (v0: distance from the wall)."""
        R = self.rng
        tw = min(w - 0.1, float(R.uniform(0.45, 0.7) if small else R.uniform(0.8, 1.3)))
        th = tw * 0.58
        u0 = (w - tw) / 2
        black = _col((18, 18, 20))
        self._box(f, w / 2 - 0.12, w / 2 + 0.12, y, y + 0.05, v0 - 0.05, v0 + 0.1, TV, self._matte(black))
        self._box(f, u0, u0 + tw, y + 0.05, y + 0.05 + th, v0, v0 + 0.05, TV, self._screen(f, u0, tw, y + 0.05, th))

    def _screen(self, f: _Frame, u0: float, tw: float, y0: float, th: float) -> Callable:
        """Black TV body; on its front a bezel and a screen that is off (dark, a faint
        reflection) or on (a colourful blurred picture)."""
        R = self.rng
        on = R.random() < 0.35
        tint = self._pick(FABRICS, 0.4)
        coarse = self.coarse

        def albedo(P, n):
            u, y = (f.u_of(P) - u0) / tw, (P[1] - y0) / th
            out = np.broadcast_to(_col((18, 18, 20)), (P.shape[1], 3)).copy()
            screen = f.is_front(n) & (u > 0.03) & (u < 0.97) & (y > 0.05) & (y < 0.96)
            if on:
                pic = _sample(coarse, u * 60.0, y * 40.0)
                shift = 0.2 * np.stack([pic, -pic, 0 * pic], 1)                  # hue varies over the picture
                col = np.clip(tint[None, :] * (1.3 + 0.5 * pic[:, None]) + shift, 0, 2)
            else:
                glare = 1.0 + 0.8 * np.clip(1.0 - np.abs(u - y - 0.1) * 3.0, 0, 1)   # a diagonal reflection
                col = _col((25, 28, 33))[None, :] * glare[:, None]
            return np.where(screen[:, None], col, out)
        return albedo

    def add_tv_stand(self) -> None:
        R = self.rng
        w, d, h = float(R.uniform(1.0, 1.6)), 0.4, float(R.uniform(0.42, 0.55))
        f = self._against_wall(w, d, h + 0.9)
        if f is None:
            return
        self._box(f, 0, w, 0, h, 0, d, FURNITURE, self._cabinet(self._pick(WOODS), f, w, h, 1))
        self.add_tv(f, w, h)

    def add_bookshelf(self) -> None:
        R = self.rng
        w, d, h = float(R.uniform(0.7, 1.2)), float(R.uniform(0.28, 0.35)), float(R.uniform(1.4, 2.1))
        f = self._against_wall(w, d, h)
        if f is None:
            return
        wood = self._wood(self._pick(WOODS))
        t = 0.02
        for u0 in (0.0, w - t):
            self._box(f, u0, u0 + t, 0, h, 0, d, FURNITURE, wood)
        self._box(f, 0, w, h - t, h, 0, d, FURNITURE, wood)
        self._box(f, 0, w, 0, 0.06, 0, d, FURNITURE, wood)
        self._box(f, t, w - t, 0.06, h - t, 0, 0.012, FURNITURE, wood)          # back panel
        spacing = float(R.uniform(0.3, 0.4))
        y = 0.06
        while y + spacing < h - 0.05:
            if y > 0.06:
                self._box(f, t, w - t, y - t, y, 0.012, d, FURNITURE, wood)
            u = t + 0.01
            while u < w - t - 0.06:
                bt = float(R.uniform(0.02, 0.05))
                u1 = min(u + bt, w - t - 0.005)
                r = R.random()
                if r < 0.12:                                                       # a gap
                    u += float(R.uniform(0.03, 0.15))
                    continue
                if r < 0.18:                                                       # an ornament
                    s = float(R.uniform(0.04, 0.07))
                    if u + 2 * s < w - t:
                        self._ellipsoid(f, u + s, y + s * 1.2, d / 2, s, s * 1.2, s, OBJECTS,
                                        self._matte(self._pick(FABRICS, 0.3), 0.03))
                    u += 2 * s + 0.02
                    continue
                bh = min(spacing - 0.04, float(R.uniform(0.17, 0.3)))
                bd = min(d - 0.03, float(R.uniform(0.15, 0.24)))
                self._box(f, u, u1, y, y + bh, 0.015, 0.015 + bd, BOOKS, self._matte(self._book_colour(), 0.04))
                u = u1 + 0.002
            y += spacing

    def add_plant(self) -> None:
        R = self.rng
        s, ph = float(R.uniform(0.25, 0.4)), float(R.uniform(0.25, 0.4))
        f = self._against_wall(s, s, 1.2)
        if f is None:
            return
        self._box(f, 0, s, 0, ph, 0, s, OBJECTS, self._matte(_col((165, 85, 55)) * np.float32(R.uniform(0.7, 1.1))))
        leaf = self._fabric(_col((55, 105, 45)) * np.float32(R.uniform(0.6, 1.1)))
        for _ in range(int(R.integers(2, 5))):
            r = float(R.uniform(0.15, 0.3))
            self._ellipsoid(f, s / 2 + float(R.uniform(-0.1, 0.1)), ph + r * float(R.uniform(0.6, 1.6)),
                            s / 2 + float(R.uniform(-0.1, 0.1)), r, r * 1.2, r, OBJECTS, leaf)

    def add_floor_box(self) -> None:
        """A cardboard box or basket on the floor."""
        R = self.rng
        w, d, h = float(R.uniform(0.25, 0.6)), float(R.uniform(0.25, 0.5)), float(R.uniform(0.2, 0.45))
        f = self._against_wall(w, d, h) if R.random() < 0.6 else self._free_spot(w, d, border=0.1)
        if f is not None:
            self._box(f, 0, w, 0, h, 0, d, OBJECTS, self._matte(_col((175, 140, 95)) * np.float32(R.uniform(0.7, 1.1))))
