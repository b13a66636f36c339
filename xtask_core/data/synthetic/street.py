"""Procedural street scenes: the product's default data. SYNTHETIC, not real photos.

Cityscapes itself cannot be downloaded or shipped with xtask, so the default data is rendered:
a street under a sky with a road, sidewalks, building facades, poles, signs, vegetation, people
and vehicles, written in the Cityscapes directory layout so that the same loader, class
mappings, masks and metrics run on it, and real Cityscapes is a drop-in replacement.

Each scene is laid out from a seeded ``np.random.Generator`` (no global state) and rendered by
geometry with a pinhole camera: every pixel's ray is intersected with the ground plane, with
axis-aligned boxes (buildings, walls, poles, vehicles, people's limbs), ellipsoids (tree crowns,
bushes, heads, torsos) and vertical planes with a cut-out mask (signs, fences, bicycle wheels),
keeping the nearest hit. Colour, label and depth come from the same hit, so depth and
segmentation are consistent by construction.

World frame: x to the right, y up, z along the street (forward). Camera frame: x right, y down,
z forward; a ray is parameterised with camera-z = 1, so the hit parameter *is* the camera depth Z.

Outputs follow the Cityscapes conventions:
- labels are raw Cityscapes ids (road 7, sidewalk 8, building 11, wall 12, fence 13, pole 17,
  traffic light 19, traffic sign 20, vegetation 21, terrain 22, sky 23, person 24, rider 25,
  car 26, truck 27, bus 28, bicycle 33);
- disparity PNG p = round(disparity_px·256) + 1 (uint16), sky p = 0 (invalid, as in Cityscapes).
  ``disparity_px = CITYSCAPES_FX · baseline / Z`` is expressed in pixels of a 2048-wide image
  (the Cityscapes camera), whatever the rendered width: the image is treated as a downscaled
  Cityscapes frame, exactly what the loader does to real data. So the model-unit values
  (p-1)/256², the 0.4922 clip and :func:`~xtask_core.data.cityscapes.disparity_to_metres` mean
  the same on synthetic and real data. Depth is clipped to :data:`MAX_RANGE` metres.
  The only pixels with p = 0 are sky.

The layout, ground, sky and buildings live here; road users in
:mod:`~xtask_core.data.synthetic.street_agents`; the ray caster in
:mod:`~xtask_core.data.synthetic.canvas`.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

from xtask_core.data.synthetic.canvas import _Canvas, _col, _const, _frac, _hash01, _noise_tile, _sample
from xtask_core.data.synthetic.street_agents import _StreetAgents
from xtask_core.data.synthetic.street_ids import (
    BASELINE,
    BUILDING,
    FENCE,
    FX_2048,
    LIGHT,
    MAX_RANGE,
    MIN_RANGE,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    VEG,
    WALL,
)
from xtask_core.errors import XTaskError


# ----------------------------------------------------------------------------- scene content
class _Scene(_StreetAgents):
    """Random layout of one street (all lengths in metres) and its rendering."""

    def __init__(self, rng: np.random.Generator, h: int, w: int):
        self.rng, self.h, self.w = rng, h, w
        R = rng
        # textures shared by the whole scene
        self.fine = _noise_tile(R, 128, 1.0)
        self.coarse = _noise_tile(R, 128, 6.0)
        # street cross-section
        self.lanes = int(R.choice([1, 1, 2]))
        self.lane_w = float(R.uniform(3.0, 3.6))
        self.park = float(R.choice([0.0, 2.2, 2.3])) if self.lanes == 1 else float(R.choice([0.0, 2.2]))
        self.road_hw = self.lanes * self.lane_w + self.park
        self.sw = [float(R.uniform(2.0, 5.0)), float(R.uniform(2.0, 5.0))]     # sidewalk width left, right
        self.z_end = float(R.uniform(90.0, 220.0))
        self.cross = None
        if R.random() < 0.5:
            z0 = float(R.uniform(25.0, 70.0))
            self.cross = (z0, z0 + float(R.uniform(9.0, 14.0)))
        # camera: in a right-hand lane, Cityscapes-like height and a slight pitch
        lane = int(R.integers(self.lanes))
        self.cam_x = (lane + 0.5) * self.lane_w + float(R.uniform(-0.4, 0.4))
        self.cam_h = float(R.uniform(1.2, 1.6))
        self.yaw = math.radians(float(R.uniform(-4.0, 4.0)))
        self.pitch = math.radians(float(R.uniform(-0.5, 3.5)))
        self.roll = math.radians(float(R.uniform(-1.0, 1.0)))
        # light: sunny or overcast
        self.overcast = R.random() < 0.35
        az, el = R.uniform(0, 2 * math.pi), math.radians(R.uniform(20.0, 60.0))
        self.sun = np.array([math.cos(el) * math.cos(az), math.sin(el), math.cos(el) * math.sin(az)], np.float32)
        self.sun_int = float(R.uniform(0.15, 0.3) if self.overcast else R.uniform(0.55, 0.8))
        self.ambient = float(R.uniform(0.6, 0.75) if self.overcast else R.uniform(0.35, 0.5))
        self.haze = _col((200, 205, 212)) if self.overcast else _col((190, 205, 225))
        self.fog = float(R.uniform(120.0, 350.0))
        self.exposure = float(R.uniform(0.85, 1.15))
        self.buildings = [self._buildings(side) for side in (0, 1)]
        self.shadow_boxes = []      # ground footprints darkened under vehicles

    # -- layout ---------------------------------------------------------------------------
    def side_x(self, side: int, offset: float) -> float:
        """World x at ``offset`` metres outward from the road edge on ``side`` (0 left, 1 right)."""
        return (self.road_hw + offset) * (1.0 if side else -1.0)

    def _buildings(self, side: int) -> list[dict]:
        R, segs, z = self.rng, [], -15.0
        while z < self.z_end:
            length = float(R.uniform(8.0, 30.0))
            z1 = min(z + length, self.z_end)
            if self.cross and z < self.cross[1] and z1 > self.cross[0]:       # leave the cross street open
                if z < self.cross[0] - 3.0:
                    z1 = self.cross[0] - 1.0
                else:
                    z, z1 = self.cross[1] + 1.0, self.cross[1] + 1.0 + length
            gap = R.random() < 0.12
            setback = 0.0 if R.random() < 0.6 else float(R.uniform(1.5, 9.0))
            segs.append(dict(z0=z, z1=z1, gap=gap, setback=setback,
                             yard=int(R.random() < 0.55),                          # 1 = grass, 0 = paved
                             height=float(R.uniform(7.0, 28.0)), depth=float(R.uniform(10.0, 20.0)),
                             color=self._facade_color(), floor=float(R.uniform(2.9, 3.6)),
                             spacing=float(R.uniform(2.2, 4.0)), win_w=float(R.uniform(0.35, 0.6)),
                             win_h=float(R.uniform(0.4, 0.6)), shop=R.random() < 0.4,
                             hseed=int(R.integers(1 << 30)), wall=(setback > 0 and R.random() < 0.4),
                             fence=(setback > 0 and R.random() < 0.35)))
            z = z1
        return segs

    def _facade_color(self) -> np.ndarray:
        R = self.rng
        palette = [(196, 180, 150), (170, 90, 70), (150, 150, 150), (215, 210, 200), (185, 160, 120),
                   (120, 110, 105), (200, 190, 170), (160, 120, 95), (140, 150, 165), (225, 200, 160)]
        base = np.array(palette[int(R.integers(len(palette)))], np.float32)
        return np.clip(base * R.uniform(0.85, 1.1) + R.normal(0, 8, 3), 20, 250).astype(np.float32) / 255.0

    # -- ground ----------------------------------------------------------------------------
    def render_ground(self, cv: _Canvas):
        Dy = cv.D[1]
        rows, cols = np.nonzero(Dy < -1e-5)
        t = np.float32(-cv.O[1]) / Dy[rows, cols]
        front = t < cv.z[rows, cols]             # drawn last: only where nothing nearer stands
        rows, cols, t = rows[front], cols[front], t[front]
        X = np.float32(cv.O[0]) + t * cv.D[0, rows, cols]
        Z = np.float32(cv.O[2]) + t * cv.D[2, rows, cols]
        aX = np.abs(X)
        right = X > 0
        sw_out = self.road_hw + np.where(right, self.sw[1], self.sw[0]).astype(np.float32)
        # yard type behind the sidewalk from the building segment at that z
        yard = np.zeros(len(t), np.int64)
        for side in (0, 1):
            segs = self.buildings[side]
            edges = np.array([s["z0"] for s in segs] + [segs[-1]["z1"]], np.float32)
            kinds = np.array([s["yard"] for s in segs] + [segs[-1]["yard"]])
            idx = np.clip(np.searchsorted(edges, Z) - 1, 0, len(segs))
            sel = right == bool(side)
            yard[sel] = kinds[idx[sel]]
        lab = np.where(aX < self.road_hw, ROAD, np.where(aX < sw_out, SIDEWALK, np.where(yard == 1, TERRAIN, SIDEWALK)))
        if self.cross:
            z0, z1 = self.cross
            lab = np.where((Z > z0) & (Z < z1) & (aX >= self.road_hw), ROAD, lab)
        lab = lab.astype(np.uint8)

        R = self.rng
        fine = _sample(self.fine, X * 40.0, Z * 40.0)
        coarse = _sample(self.coarse, X * 6.0, Z * 6.0)
        rgb = np.empty((len(t), 3), np.float32)
        # asphalt with lane markings
        road = lab == ROAD
        asphalt = _col((88, 88, 92)) * float(R.uniform(0.75, 1.25))
        g = 1.0 + 0.09 * fine[road] + 0.07 * coarse[road]
        rgb[road] = asphalt * g[:, None]
        mark = self._markings(X[road], Z[road], R)
        paint = _col((225, 225, 215)) * (0.9 + 0.05 * fine[road])[:, None]
        rgb[road] = np.where(mark[:, None], paint, rgb[road])
        # sidewalk slabs, kerb stones lighter
        sw = lab == SIDEWALK
        slab = float(R.uniform(0.5, 1.2))
        swc = _col(((170, 165, 160), (180, 160, 150), (150, 150, 155), (190, 175, 150))[int(R.integers(4))])
        joints = (_frac(X[sw] / slab) < 0.05) | (_frac(Z[sw] / slab) < 0.05)
        g = (1.0 + 0.07 * fine[sw] + 0.06 * coarse[sw]) * np.where(joints, 0.8, 1.0)
        kerb = (aX[sw] < self.road_hw + 0.25) & (aX[sw] >= self.road_hw)
        rgb[sw] = np.where(kerb[:, None], _col((200, 200, 195)), swc) * g[:, None]
        # grass / dirt
        te = lab == TERRAIN
        mix = np.clip(0.5 + 0.35 * coarse[te], 0, 1)[:, None]
        grass = _col((95, 135, 55)) * (1 - mix) + _col((140, 130, 80)) * mix
        rgb[te] = grass * (1.0 + 0.18 * fine[te])[:, None]

        light = np.full(len(t), cv.ambient, np.float32) + cv.sun_int * max(float(cv.sun[1]), 0.0) * self._lit(X, Z, cv)
        for (x0, x1, z0_, z1_) in self.shadow_boxes:                         # soft contact shadows
            inside = (X > x0) & (X < x1) & (Z > z0_) & (Z < z1_)
            light = np.where(inside, light * 0.45, light)
        r, c = rows, cols
        cv.z[r, c] = t
        cv.lab[r, c] = lab
        cv.rgb[r, c] = rgb * light[:, None]

    def _markings(self, X, Z, R) -> np.ndarray:
        """Boolean mask of painted pixels on the road (centre, lane, edge lines, zebra)."""
        if not hasattr(self, "_mark_cfg"):
            self._mark_cfg = dict(dash=float(R.uniform(2.5, 4.0)), period=float(R.uniform(8.0, 12.0)),
                                  solid_centre=R.random() < 0.4, width=float(R.uniform(0.12, 0.18)),
                                  zebra=self.cross is not None or R.random() < 0.3,
                                  zebra_z=(self.cross[0] - 4.0) if self.cross else float(R.uniform(15, 50)))
        m = self._mark_cfg
        hw = m["width"] / 2
        dashed = _frac(Z / m["period"]) < m["dash"] / m["period"]
        centre = (np.abs(X) < hw) & (True if m["solid_centre"] else dashed)
        out = centre
        for k in range(1, self.lanes):                                        # lane dividers
            out = out | ((np.abs(np.abs(X) - k * self.lane_w) < hw) & dashed)
        edge = self.lanes * self.lane_w
        out = out | (np.abs(np.abs(X) - edge) < hw)
        if m["zebra"]:
            zz = m["zebra_z"]
            out = out | ((Z > zz) & (Z < zz + 3.0) & (_frac(X / 1.0) < 0.5) & (np.abs(X) < edge))
        return out

    def _lit(self, X, Z, cv: _Canvas) -> np.ndarray:
        """1 where a ground point sees the sun past the building rows, else 0 (cast shadows)."""
        L = cv.sun
        lit = np.ones(len(X), np.float32)
        if L[1] <= 0.05 or abs(L[0]) < 1e-3:
            return lit
        side = 1 if L[0] > 0 else 0                                           # row between point and sun
        segs = self.buildings[side]
        xf = self.side_x(side, self.sw[side])
        s = (xf - X) / L[0]                                                   # ray length to the facade plane
        zs = Z + s * L[2]
        edges = np.array([g["z0"] for g in segs] + [segs[-1]["z1"]], np.float32)
        heights = np.array([0.0 if g["gap"] else g["height"] for g in segs] + [0.0], np.float32)
        idx = np.searchsorted(edges, zs) - 1
        hgt = np.where((idx >= 0) & (idx < len(segs)), heights[np.clip(idx, 0, len(segs))], 0.0)
        shadow = (s > 0) & (s * L[1] < hgt)
        lit[shadow] = 0.0
        return lit

    # -- objects ---------------------------------------------------------------------------
    def facade_albedo(self, seg) -> Callable:
        color, floor, spacing, top = seg["color"], seg["floor"], seg["spacing"], seg["height"]
        win_w, win_h, shop, hs = seg["win_w"], seg["win_h"], seg["shop"], seg["hseed"]
        fine, coarse = self.fine, self.coarse
        glass = _col((60, 75, 95))

        def albedo(P, n):
            x, y, z = P
            along = np.where(np.abs(n[0]) > 0.5, z, x)
            tex = 1.0 + 0.05 * _sample(fine, along * 20.0, y * 20.0) + 0.06 * _sample(coarse, along * 3.0, y * 3.0)
            out = color[None, :] * tex[:, None]
            fl = y / floor
            fi = np.floor(fl)
            fy = fl - fi
            cs = along / spacing
            ci = np.floor(cs)
            fs = cs - ci
            vertical = np.abs(n[1]) < 0.5
            win = vertical & (fs > 0.5 - win_w / 2) & (fs < 0.5 + win_w / 2) & (fy > 0.3) & (fy < 0.3 + win_h) \
                & (fi >= 1) & (y < top - 1.0)
            tint = _hash01(ci, fi, hs)
            wcol = glass[None, :] * (0.6 + 0.9 * tint)[:, None] + 0.12 * tint[:, None]
            out = np.where(win[:, None], wcol, out)
            frame = vertical & (fi >= 1) & (y < top - 1.0) & ~win & (np.abs(fs - 0.5) < win_w / 2 + 0.04) \
                & (fy > 0.26) & (fy < 0.34 + win_h)
            out = np.where(frame[:, None], out * 0.8, out)
            if shop:
                sw = vertical & (y > 0.4) & (y < floor * 0.8) & (_frac(along / 6.0) < 0.7)
                out = np.where(sw[:, None], glass[None, :] * (0.8 + 0.3 * tint[:, None]), out)
            out = np.where(((y > top - 0.6) & vertical)[:, None], out * 0.75, out)   # cornice
            out = np.where((~vertical)[:, None], _col((80, 78, 76)), out)             # roof
            return out
        return albedo

    def leaf_albedo(self, base) -> Callable:
        fine, coarse = self.fine, self.coarse

        def albedo(P, n):
            x, y, z = P
            v = (0.75 + 0.22 * _sample(fine, (x + 0.7 * z) * 9.0, y * 9.0)
                 + 0.15 * _sample(coarse, (z - 0.5 * x) * 2.0, y * 2.0))
            return base[None, :] * np.clip(v, 0.3, 1.4)[:, None]
        return albedo

    def add_buildings(self, cv: _Canvas):
        R = self.rng
        for side in (0, 1):
            sgn = 1.0 if side else -1.0
            for seg in self.buildings[side]:
                front = self.road_hw + self.sw[side] + seg["setback"]
                if not seg["gap"]:
                    x0, x1 = sorted((sgn * front, sgn * (front + seg["depth"])))
                    cv.box((x0, 0.0, seg["z0"]), (x1, seg["height"], seg["z1"]), BUILDING, self.facade_albedo(seg))
                edge = self.road_hw + self.sw[side]
                if seg["wall"]:
                    hw = float(R.uniform(0.6, 1.6))
                    x0, x1 = sorted((sgn * edge, sgn * (edge + 0.3)))
                    cv.box((x0, 0, seg["z0"]), (x1, hw, seg["z1"]), WALL, _const(self._wall_color()))
                elif seg["fence"] or (seg["gap"] and R.random() < 0.5):
                    self.add_fence(cv, sgn * (edge + 0.15), seg["z0"], seg["z1"], float(R.uniform(1.0, 2.0)))
                if seg["setback"] > 3.0 and seg["yard"] == 1 and R.random() < 0.7:   # hedge / bushes
                    for _ in range(int(R.integers(1, 4))):
                        zc = float(R.uniform(seg["z0"], seg["z1"]))
                        xc = sgn * (edge + float(R.uniform(1.0, seg["setback"] - 0.5)))
                        r = float(R.uniform(0.6, 1.5))
                        cv.ellipsoid((xc, r * 0.6, zc), (r, r * 0.8, r * 1.3), VEG,
                                     self.leaf_albedo(_col((60, 100, 40)) * float(R.uniform(0.7, 1.2))))
                if seg["gap"] and R.random() < 0.7:                         # second-row building behind the gap
                    back = dict(seg, color=self._facade_color(), height=float(R.uniform(10.0, 35.0)),
                                hseed=int(R.integers(1 << 30)))
                    xb = front + seg["depth"] + float(R.uniform(5.0, 20.0))
                    x0, x1 = sorted((sgn * xb, sgn * (xb + 15.0)))
                    cv.box((x0, 0.0, seg["z0"] - 10.0), (x1, back["height"], seg["z1"] + 10.0), BUILDING,
                           self.facade_albedo(back))
                if seg["gap"] and R.random() < 0.7:                         # big tree in the gap
                    zc = 0.5 * (seg["z0"] + seg["z1"])
                    self.add_tree(cv, sgn * (front + float(R.uniform(2, 8))), zc, scale=float(R.uniform(1.3, 2.0)))
        # distant buildings closing the street view
        if R.random() < 0.7:
            z = self.z_end + float(R.uniform(5.0, 40.0))
            x = -80.0
            while x < 80.0:
                wdt = float(R.uniform(10.0, 30.0))
                seg = dict(color=self._facade_color(), floor=3.2, spacing=3.0, height=float(R.uniform(10, 45)),
                           win_w=0.45, win_h=0.5, shop=False, hseed=int(R.integers(1 << 30)))
                if R.random() < 0.85:
                    cv.box((x, 0.0, z), (x + wdt, seg["height"], z + 20.0), BUILDING, self.facade_albedo(seg))
                x += wdt

    def _wall_color(self):
        R = self.rng
        return np.clip(np.array((150, 140, 130), np.float32) * R.uniform(0.7, 1.2) + R.normal(0, 10, 3), 30, 240)

    def add_fence(self, cv: _Canvas, x, z0, z1, height):
        R = self.rng
        color = _col((110, 100, 90)) * float(R.uniform(0.6, 1.4))
        pitch, bar = float(R.uniform(0.12, 0.3)), float(R.uniform(0.25, 0.5))

        def albedo(P, n):
            _, y, z = P
            keep = (_frac(z / pitch) < bar) | (y > height - 0.08) | (np.abs(y - 0.15) < 0.05)
            return np.broadcast_to(color, (P.shape[1], 3)), keep
        cv.plane(0, x, (0, 0, z0), (0, height, z1), FENCE, albedo)

    def add_tree(self, cv: _Canvas, x, z, scale=1.0):
        R = self.rng
        trunk_h = float(R.uniform(2.0, 3.5)) * scale
        tw = 0.14 * scale
        bark = _col((85, 65, 45)) * float(R.uniform(0.8, 1.2))
        cv.box((x - tw, 0, z - tw), (x + tw, trunk_h + 0.5, z + tw), VEG, _const(bark))
        base = _col((70, 110, 45)) * np.float32(R.uniform(0.7, 1.2)) + np.float32(R.normal(0, 0.03, 3))
        alb = self.leaf_albedo(np.clip(base, 0, 1).astype(np.float32))
        for _ in range(int(R.integers(2, 4))):
            r = float(R.uniform(1.4, 2.4)) * scale
            cv.ellipsoid((x + R.uniform(-0.8, 0.8) * scale, trunk_h + r * 0.7 + R.uniform(-0.3, 0.8),
                          z + R.uniform(-0.8, 0.8) * scale), (r, r * R.uniform(0.8, 1.1), r), VEG, alb)

    def add_street_furniture(self, cv: _Canvas):
        R = self.rng
        metal = _col((105, 108, 112))
        # street lamps
        for side in (0, 1):
            if R.random() < 0.75:
                sgn = 1.0 if side else -1.0
                spacing = float(R.uniform(18.0, 35.0))
                z = float(R.uniform(3.0, spacing))
                hgt = float(R.uniform(6.5, 9.0))
                while z < min(self.z_end, 140.0):
                    x = sgn * (self.road_hw + 0.5)
                    cv.box((x - 0.09, 0, z - 0.09), (x + 0.09, hgt, z + 0.09), POLE, _const(metal))
                    xa = x - sgn * 1.6
                    cv.box((min(x, xa), hgt - 0.12, z - 0.06), (max(x, xa), hgt, z + 0.06), POLE, _const(metal))
                    cv.box((min(xa, xa - sgn * 0.6), hgt - 0.25, z - 0.2),
                           (max(xa, xa - sgn * 0.6), hgt - 0.05, z + 0.2),
                           POLE, _const(metal * 0.8))
                    z += spacing
        # signs and traffic lights near the curb
        for _ in range(int(R.integers(1, 5))):
            side = int(R.integers(2))
            sgn = 1.0 if side else -1.0
            x = sgn * (self.road_hw + float(R.uniform(0.3, 0.9)))
            z = float(R.uniform(8.0, 70.0))
            if self.cross and R.random() < 0.6:
                z = self.cross[0] - float(R.uniform(0.5, 2.0))
            if R.random() < 0.4:
                self.add_traffic_light(cv, x, z, sgn)
            else:
                self.add_sign(cv, x, z)

    def add_sign(self, cv: _Canvas, x, z):
        R = self.rng
        hgt = float(R.uniform(2.0, 2.8))
        cv.box((x - 0.04, 0, z - 0.04), (x + 0.04, hgt + 0.3, z + 0.04), POLE, _const(_col((120, 122, 125))))
        kind = int(R.integers(4))
        s = float(R.uniform(0.3, 0.45))
        cy = hgt + s * 0.5 + 0.3
        colors = [((200, 30, 30), (245, 245, 245)), ((30, 70, 170), (240, 240, 240)),
                  ((240, 200, 30), (30, 30, 30)), ((250, 250, 250), (200, 30, 30))]
        outer, inner = (_col(c) for c in colors[kind])

        def albedo(P, n):
            x_, y, _ = P
            u, v = (x_ - x) / s, (y - cy) / s
            if kind in (0, 1):                                       # round sign with a ring
                rr = np.sqrt(u * u + v * v)
                keep, core = rr < 1.0, rr < (0.72 if kind == 0 else 0.35)
            elif kind == 2:                                          # diamond
                rr = np.abs(u) + np.abs(v)
                keep, core = rr < 1.0, rr < 0.6
            else:                                                    # rectangle with a border
                keep, core = (np.abs(u) < 1.0) & (np.abs(v) < 0.7), (np.abs(u) < 0.8) & (np.abs(v) < 0.5)
            return np.where(core[:, None], inner, outer), keep
        cv.plane(2, z - 0.06, (x - s, cy - s, 0), (x + s, cy + s, 0), SIGN, albedo)

    def add_traffic_light(self, cv: _Canvas, x, z, sgn):
        R = self.rng
        hgt = float(R.uniform(2.4, 3.2))
        metal = _col((70, 72, 75))
        cv.box((x - 0.06, 0, z - 0.06), (x + 0.06, hgt, z + 0.06), POLE, _const(metal))
        lit = int(R.integers(3))
        y0, y1 = hgt, hgt + 0.95
        housing = _col((35, 35, 35))
        lamps = [_col((255, 60, 40)), _col((255, 190, 30)), _col((60, 240, 120))]

        def albedo(P, n):
            x_, y, z_ = P
            k = np.clip(((y1 - y) / (y1 - y0) * 3).astype(np.int64), 0, 2)
            cyl = y1 - (k + 0.5) * (y1 - y0) / 3
            on_face = n[2] < -0.5
            disc = on_face & ((x_ - x) ** 2 + (y - cyl) ** 2 < 0.11 ** 2)
            col = np.where((k == lit)[:, None], np.stack(lamps)[k] * 1.6, np.stack(lamps)[k] * 0.25)
            return np.where(disc[:, None], col, housing)
        cv.box((x - 0.17, y0, z - 0.12), (x + 0.17, y1, z + 0.12), LIGHT, albedo)
        if R.random() < 0.4:                                          # second head hanging over the road
            arm = float(R.uniform(2.5, 4.5))
            xa = x - sgn * arm
            cv.box((min(x, xa), y1 + 0.3, z - 0.05), (max(x, xa), y1 + 0.4, z + 0.05), POLE, _const(metal))
            x2 = xa
            cv.box((x2 - 0.17, y0 + 0.4, z - 0.12), (x2 + 0.17, y1 + 0.3, z + 0.12), LIGHT,
                   lambda P, n: np.broadcast_to(housing, (P.shape[1], 3)))

    def add_trees(self, cv: _Canvas):
        R = self.rng
        for side in (0, 1):
            if R.random() < 0.6:
                sgn = 1.0 if side else -1.0
                spacing = float(R.uniform(8.0, 16.0))
                z = float(R.uniform(4.0, spacing))
                while z < min(self.z_end, 120.0):
                    if not (self.cross and self.cross[0] - 2 < z < self.cross[1] + 2):
                        x = sgn * (self.road_hw + min(1.2, self.sw[side] - 0.6) + float(R.uniform(-0.2, 0.2)))
                        self.add_tree(cv, x, z, scale=float(R.uniform(0.8, 1.3)))
                    z += spacing * float(R.uniform(0.8, 1.2))

    def render_sky(self, cv: _Canvas):
        rows, cols = np.nonzero(np.isinf(cv.z))
        if not len(rows):
            return
        d = cv.D[:, rows, cols]
        elev = d[1] / np.linalg.norm(d, axis=0)
        R = self.rng
        if self.overcast:
            top, hor = _col((175, 180, 190)), _col((215, 218, 222))
        else:
            top, hor = _col((70, 120, 200)) * np.float32(R.uniform(0.85, 1.1)), _col((185, 205, 230))
        a = np.clip(elev / 0.5, 0, 1)[:, None]
        col = hor * (1 - a) + top * a
        # clouds: noise projected on a high plane
        k = np.maximum(d[1], 0.02)
        cl = _sample(self.coarse, d[0] / k * 25.0 + 500.0, d[2] / k * 25.0 + 500.0)
        amount = float(R.uniform(0.0, 0.8))
        cloud = np.clip((cl - 1.0 + amount * 1.5) * 0.7, 0, 1)[:, None] * amount
        col = col * (1 - cloud) + _col((240, 240, 245)) * cloud
        cv.rgb[rows, cols] = col

    def finish(self, cv: _Canvas):
        z = cv.z
        finite = np.isfinite(z)
        fog = np.where(finite, 1.0 - np.exp(-np.where(finite, z, 0.0) / self.fog), 0.0)[:, :, None]
        rgb = cv.rgb * (1.0 - fog) + self.haze * fog
        rgb = cv2.GaussianBlur(rgb, (0, 0), 0.6) * self.exposure
        rgb = rgb + self.rng.normal(0.0, 0.012, rgb.shape).astype(np.float32)   # sensor noise
        return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_scene(seed: int, height: int = 256, width: int = 512) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one synthetic street scene, deterministically from ``seed``.

    Returns:
        rgb: H×W×3 uint8 RGB.
        label_ids: H×W uint8 raw Cityscapes label ids (see module docstring).
        disparity: H×W uint16 Cityscapes disparity PNG values, p = round(disp_px·256)+1 with
            disp_px = 2262.52·0.209313 / Z (2048-wide pixel units), 0 for sky.
    """
    if height < 8 or width < 8:
        raise XTaskError(f"synthetic images must be at least 8×8, got {height}×{width}")
    rng = np.random.default_rng(int(seed))
    sc = _Scene(rng, int(height), int(width))
    cv = _Canvas(sc.h, sc.w, (sc.cam_x, sc.cam_h, 0.0), sc.yaw, sc.pitch, sc.roll,
                 sc.sun, sc.sun_int, sc.ambient, fx=FX_2048 * sc.w / 2048.0, background=SKY)
    sc._markings(np.zeros(1, np.float32), np.zeros(1, np.float32), rng)   # fix marking layout first
    sc.add_vehicles(cv)           # vehicles first: they register contact shadows for the ground
    sc.add_buildings(cv)
    sc.add_trees(cv)
    sc.add_street_furniture(cv)
    sc.add_people(cv)
    sc.render_ground(cv)
    sc.render_sky(cv)
    rgb = sc.finish(cv)
    z = np.clip(cv.z, MIN_RANGE, MAX_RANGE)
    disp_px = FX_2048 * BASELINE / z
    p = np.where(np.isfinite(cv.z), np.round(disp_px * 256.0) + 1.0, 0.0)
    return rgb, cv.lab.copy(), np.clip(p, 0, 65535).astype(np.uint16)
