"""People, bicycles and vehicles of the synthetic street scenes (a mixin of the street ``_Scene``).

Kept apart from the street layout only to keep files short: the methods read the scene's
layout attributes (``rng``, ``road_hw``, ``lanes``, ``lane_w``, ``park``, ``sw``, ``cam_x``,
``cross``, ``shadow_boxes`` ...) that :class:`~xtask_core.data.synthetic.street._Scene` sets.
Lengths are metres in the street's world frame (x right, y up, z along the street).
"""
from __future__ import annotations

import numpy as np

from xtask_core.data.synthetic.canvas import _Canvas, _col, _const
from xtask_core.data.synthetic.street_ids import BICYCLE, BUS, CAR, PERSON, RIDER, TRUCK


class _StreetAgents:
    """Road users: pedestrians, riders, bicycles, cars, trucks and buses."""

    def add_person(self, cv: _Canvas, x, z, facing_z=True, label=PERSON, seated=None):
        """Simple figure standing at (x, 0, z); ``seated`` = saddle height for riders."""
        R = self.rng
        hgt = float(R.uniform(1.55, 1.9))
        shirt = _col(R.integers(20, 230, 3))
        pants = _col(R.integers(15, 120, 3))
        skin = _col(((230, 190, 160), (190, 140, 100), (120, 85, 60))[int(R.integers(3))])
        wx, wz = (0.22, 0.13) if facing_z else (0.13, 0.22)
        leg = 0.47 * hgt
        base = 0.0 if seated is None else seated - leg * 0.55
        if seated is None:
            sep = float(R.uniform(-0.12, 0.12))                      # stride
            for dx, dz in ((-0.09, sep), (0.09, -sep)):
                ox, oz = (dx, dz) if facing_z else (dz, dx)
                cv.box((x + ox - 0.07, 0, z + oz - 0.07), (x + ox + 0.07, leg, z + oz + 0.07), label, _const(pants))
        else:
            for dx in (-0.1, 0.1):
                ox, oz = (dx, 0.0) if facing_z else (0.0, dx)
                cv.box((x + ox - 0.06, base, z + oz - 0.2), (x + ox + 0.06, seated + 0.1, z + oz + 0.15),
                       label, _const(pants))
            leg = seated + 0.05
        torso_c = leg + 0.17 * hgt
        cv.ellipsoid((x, torso_c, z), (wx, 0.2 * hgt, wz), label, _const(shirt))
        for s in (-1, 1):                                              # arms
            ox, oz = (s * (wx + 0.04), 0) if facing_z else (0, s * (wz + 0.04))
            cv.box((x + ox - 0.045, torso_c - 0.3 * hgt * 0.9, z + oz - 0.045),
                   (x + ox + 0.045, torso_c + 0.1 * hgt, z + oz + 0.045), label, _const(shirt))
        cv.ellipsoid((x, torso_c + 0.2 * hgt + 0.12, z), (0.1, 0.12, 0.11), label, _const(skin))

    def add_bicycle(self, cv: _Canvas, x, z, label=BICYCLE, along_z=True):
        """Bicycle in the plane x = const (wheels as rings) seen obliquely."""
        R = self.rng
        color = _col(R.integers(20, 220, 3))
        wr, wb = 0.34, 1.05
        z0, z1 = z - wb / 2, z + wb / 2

        def albedo(P, n):
            _, y, zz = P
            d0 = np.sqrt((zz - z0) ** 2 + (y - wr) ** 2)
            d1 = np.sqrt((zz - z1) ** 2 + (y - wr) ** 2)
            ring = (np.abs(d0 - wr) < 0.045) | (np.abs(d1 - wr) < 0.045)
            # frame: two tubes from the rear hub to the saddle area and the front fork
            fz = (zz - z0) / wb
            tube = (fz > 0.1) & (fz < 0.95) & (np.abs(y - (wr + 0.35 * np.minimum(fz, 1 - fz) * 2)) < 0.05)
            seat = (np.abs(zz - (z0 + 0.35)) < 0.05) & (y > wr) & (y < wr + 0.5)
            fork = (np.abs(zz - z1 + 0.1) < 0.05) & (y > wr) & (y < wr + 0.6)
            keep = ring | tube | seat | fork
            col = np.where(ring[:, None], _col((30, 30, 30)), color)
            return col, keep
        cv.plane(0, x, (0, 0, z0 - wr), (0, 1.0, z1 + wr), label, albedo)

    def add_people(self, cv: _Canvas):
        R = self.rng
        for _ in range(int(R.integers(1, 9))):
            side = int(R.integers(2))
            sgn = 1.0 if side else -1.0
            x = sgn * (self.road_hw + float(R.uniform(0.5, self.sw[side] - 0.3)))
            z = float(R.uniform(5.0, 60.0))
            self.add_person(cv, x, z, facing_z=R.random() < 0.75)
        if R.random() < 0.4:                                            # pedestrians on the zebra / road
            for _ in range(int(R.integers(1, 3))):
                zz = self._mark_cfg["zebra_z"] + 1.5 if hasattr(self, "_mark_cfg") else float(R.uniform(12, 40))
                self.add_person(cv, float(R.uniform(-self.road_hw, self.road_hw)), zz, facing_z=False)
        if R.random() < 0.45:                                           # cyclist in the right lane edge
            x = self.lanes * self.lane_w - float(R.uniform(0.6, 1.2))
            z = float(R.uniform(8.0, 40.0))
            if abs(x - self.cam_x) > 0.9 or z > 12:
                self.add_bicycle(cv, x, z)
                self.add_person(cv, x, z - 0.15, facing_z=True, label=RIDER, seated=0.95)
        for _ in range(int(R.integers(0, 3))):                          # parked bicycles on the sidewalk
            side = int(R.integers(2))
            sgn = 1.0 if side else -1.0
            self.add_bicycle(cv, sgn * (self.road_hw + float(R.uniform(0.4, 1.0))), float(R.uniform(6.0, 40.0)))

    def add_vehicle(self, cv: _Canvas, x, z, kind, rear_view):
        R = self.rng
        paint = _col(((200, 200, 205), (30, 30, 35), (150, 20, 25), (40, 60, 120), (120, 125, 130),
                      (230, 230, 230), (60, 90, 60), (180, 150, 90))[int(R.integers(8))]
                     ) * np.float32(R.uniform(0.85, 1.1))
        glass = _col((35, 45, 55))
        tyre = _col((25, 25, 25))
        if kind == CAR:
            L, W, h0, h1, h2 = R.uniform(3.9, 4.8), R.uniform(1.7, 1.9), 0.3, R.uniform(0.85, 1.0), R.uniform(1.4, 1.6)
        elif kind == TRUCK:
            L, W, h0, h1, h2 = R.uniform(6.5, 9.0), 2.4, 0.5, R.uniform(2.8, 3.4), 0.0
        else:
            L, W, h0, h1, h2 = R.uniform(10.0, 12.5), 2.5, 0.35, R.uniform(2.9, 3.2), 0.0
        L, W = float(L), float(W)
        x0, x1, z0, z1 = x - W / 2, x + W / 2, z - L / 2, z + L / 2
        self.shadow_boxes.append((x0 - 0.15, x1 + 0.15, z0 - 0.1, z1 + 0.1))
        lamp = _col((220, 30, 30)) if rear_view else _col((250, 250, 220))

        def body(P, n):
            x_, y, z_ = P
            out = np.broadcast_to(paint, (P.shape[1], 3)).copy()
            end = n[2] < -0.5                                        # the face towards the camera
            lights = end & (y > h1 - 0.3) & (y < h1 - 0.1) & (np.abs(np.abs(x_ - x) - (W / 2 - 0.2)) < 0.15)
            plate = end & (np.abs(x_ - x) < 0.26) & (y > h0 + 0.15) & (y < h0 + 0.28)
            out[lights] = lamp
            out[plate] = _col((235, 235, 235))
            if kind == BUS:                                          # window band and door on the side
                band = (np.abs(n[1]) < 0.5) & (y > 1.3) & (y < h1 - 0.35)
                out[band] = glass
            if kind == TRUCK:                                        # separate cab at the front
                cab = (np.abs(n[0]) > 0.5) & (z_ > z1 - 2.0) & (y > 1.7) & (y < h1 - 0.4)
                out[cab] = glass
            if kind != CAR:
                out[end & (y > h1 - 1.2) & (y < h1 - 0.3) & (np.abs(x_ - x) < W / 2 - 0.2)
                    & (not rear_view or kind == BUS)] = glass
            return out
        cv.box((x0, h0, z0), (x1, h1, z1), kind, body)
        if kind == CAR:
            inset = 0.12
            cz0, cz1 = z0 + L * float(R.uniform(0.2, 0.3)), z1 - L * float(R.uniform(0.2, 0.3))

            def cabin(P, n):
                x_, y, z_ = P
                out = np.broadcast_to(paint, (P.shape[1], 3)).copy()
                side = np.abs(n[1]) < 0.5
                pane = side & (y < h2 - 0.07) & (np.abs(x_ - x) < W / 2 - inset - 0.08 + 10 * (np.abs(n[0]) > 0.5))
                out[pane] = glass
                return out
            cv.box((x0 + inset, h1, cz0), (x1 - inset, h2, cz1), CAR, cabin)
        wr = 0.33 if kind == CAR else 0.5
        for zw in (z0 + wr + 0.35, z1 - wr - 0.35):
            for xw in (x0 + 0.02, x1 - 0.26):
                cv.box((xw, 0, zw - wr), (xw + 0.24, 2 * wr, zw + wr), kind, _const(tyre))

    def add_vehicles(self, cv: _Canvas):
        R = self.rng
        lanes = [((k + 0.5) * self.lane_w, True) for k in range(self.lanes)]       # same direction
        lanes += [(-(k + 0.5) * self.lane_w, False) for k in range(self.lanes)]   # oncoming
        if self.park:
            edge = self.lanes * self.lane_w + self.park / 2
            lanes += [(edge, True), (-edge, False)]
        for x, same_dir in lanes:
            parked = abs(x) > self.lanes * self.lane_w
            z = float(R.uniform(6.0, 20.0))
            if abs(x - self.cam_x) < 1.5:
                z += 4.0                                                # keep clear of the camera
            while z < 110.0:
                if self.cross and self.cross[0] - 4 < z < self.cross[1] + 4 and not parked:
                    z = self.cross[1] + 6.0
                    continue
                u = R.random()
                kind = CAR if (parked or u < 0.78) else (TRUCK if u < 0.9 else BUS)
                if R.random() < (0.75 if parked else 0.45):
                    self.add_vehicle(cv, x + float(R.uniform(-0.25, 0.25)), z + 6.0, kind, rear_view=same_dir)
                z += ((6.5 if parked else 14.0) + float(R.uniform(0, 25.0 if not parked else 6.0))
                      + (8 if kind != CAR else 0))
