"""Seeded procedural textures for the built-in demo scene: value noise, wooden planks, bricks, a painted checker.

Every texture is a pure function of continuous surface coordinates (in scene units), so the renderer can
evaluate it exactly at each ray hit; anti-aliasing comes from the renderer's supersampling. The textures mix
several scales on purpose: large tiles/planks with sharp seams (structure an inpainter must continue behind the
removed object), per-tile colour variation, and fractal value noise (fine detail that shows blur).
All randomness comes from one ``numpy.random.Generator`` so a scene is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np

_PERIOD = 256
"""Side of the periodic random lattice; textures repeat every 256 lattice cells (far outside the demo scene)."""


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """Hermite step from 0 (at ``edge0``) to 1 (at ``edge1``), clamped outside."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Linear interpolation; ``t`` broadcasts against ``a`` and ``b``."""
    return a + (b - a) * t


class ValueNoise:
    """2D value noise on a seeded periodic lattice, its fractal sum, and per-cell random numbers."""

    def __init__(self, rng: np.random.Generator):
        self.flat_table = rng.random(_PERIOD * _PERIOD)
        """Random lattice values in [0, 1), cell (i, j) at index i * period + j."""

    def cell(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """A random number in [0, 1) for integer lattice cell (i, j): the same cell always gets the same value."""
        return self._lookup(np.asarray(i).astype(np.int64), np.asarray(j).astype(np.int64))

    def _lookup(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Table values at int64 cells, wrapped periodically (``& (period - 1)`` is a modulo for powers of 2)."""
        return np.take(self.flat_table, ((i & (_PERIOD - 1)) * _PERIOD) + (j & (_PERIOD - 1)))

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Smoothly interpolated noise in [0, 1] at continuous coordinates (one lattice cell per unit)."""
        fu, fv = np.floor(u), np.floor(v)
        iu, iv = fu.astype(np.int64), fv.astype(np.int64)
        su, sv = smoothstep(0.0, 1.0, u - fu), smoothstep(0.0, 1.0, v - fv)
        c00, c10 = self._lookup(iu, iv), self._lookup(iu + 1, iv)
        c01, c11 = self._lookup(iu, iv + 1), self._lookup(iu + 1, iv + 1)
        return _lerp(_lerp(c00, c10, su), _lerp(c01, c11, su), sv)

    def fbm(self, u: np.ndarray, v: np.ndarray, octaves: int, gain: float = 0.5) -> np.ndarray:
        """Fractal sum of ``octaves`` noise layers, each twice the frequency of the last; normalised to [0, 1]."""
        total = np.zeros_like(u)
        amplitude, norm = 1.0, 0.0
        for octave in range(octaves):
            scale = 2.0**octave
            shift = 17.31 * octave  # decorrelates the octaves' lattices
            total += amplitude * self(u * scale + shift, v * scale - shift)
            norm += amplitude
            amplitude *= gain
        return total / norm


def _seam(distance_to_edge: np.ndarray, half_width: float) -> np.ndarray:
    """1 on a seam line (distance below ``half_width``), 0 away from it, with a short smooth ramp."""
    return 1.0 - smoothstep(half_width, 1.6 * half_width, distance_to_edge)


def plank_floor(noise: ValueNoise, x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Wooden floor boards (long axis along z, 0.22 wide, 1.3 long, staggered), grain, dark seams; RGB [n, 3]."""
    width, length = 0.22, 1.3
    row = np.floor(x / width)
    stagger = noise.cell(row, 11) * length
    along = z + stagger
    col = np.floor(along / length)
    tint = noise.cell(row * 7 + 3, col)[:, None]
    light, dark = np.array([0.78, 0.58, 0.36]), np.array([0.47, 0.30, 0.16])
    albedo = _lerp(dark, light, 0.25 + 0.75 * tint)
    grain = noise.fbm(x * 14.0 + row * 5.0, z * 1.2, octaves=2)  # streaks along the board
    blotch = noise.fbm(x * 0.7 + 40.0, z * 0.7, octaves=3)  # large-scale staining across boards
    albedo = albedo * (0.72 + 0.45 * grain)[:, None] * (0.8 + 0.35 * blotch)[:, None]
    u, v = x / width - row, along / length - col
    side_gap = np.minimum(u, 1.0 - u) * width
    end_gap = np.minimum(v, 1.0 - v) * length
    seam = np.maximum(_seam(side_gap, 0.008), _seam(end_gap, 0.008))[:, None]
    return _lerp(albedo, albedo * 0.3, seam)


def brick_wall(noise: ValueNoise, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Running-bond bricks (0.34 x 0.15) with light mortar, per-brick colour, speckle and grime; RGB [n, 3]."""
    width, height, mortar = 0.34, 0.15, 0.012
    row = np.floor(y / height)
    shifted = x + 0.5 * width * np.mod(row, 2)
    col = np.floor(shifted / width)
    palette = np.array([[0.62, 0.25, 0.17], [0.72, 0.42, 0.24], [0.50, 0.20, 0.16], [0.78, 0.60, 0.40]])
    pick = noise.cell(row + 101, col * 3)
    choice = np.minimum((pick * len(palette)).astype(np.int64), len(palette) - 1)
    albedo = palette[choice] * (0.85 + 0.3 * noise.cell(col + 57, row * 5))[:, None]
    speckle = noise.fbm(x * 9.0 + 70.0, y * 9.0, octaves=3)
    grime = noise.fbm(x * 0.6 - 30.0, y * 0.6, octaves=3)
    albedo = albedo * (0.7 + 0.5 * speckle)[:, None] * (0.65 + 0.5 * grime)[:, None]
    mortar_colour = np.array([0.80, 0.78, 0.72]) * (0.75 + 0.3 * grime)[:, None]
    u, v = shifted / width - col, y / height - row
    gap = np.minimum(np.minimum(u, 1.0 - u) * width, np.minimum(v, 1.0 - v) * height)
    return _lerp(albedo, mortar_colour, _seam(gap, mortar)[:, None])


def painted_checker(noise: ValueNoise, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Teal-and-cream checker (0.12 squares) with worn paint, for the background prop; RGB [n, 3]."""
    size = 0.12
    parity = np.mod(np.floor(a / size) + np.floor(b / size), 2)[:, None]
    teal, cream = np.array([0.12, 0.48, 0.50]), np.array([0.88, 0.84, 0.70])
    wear = noise.fbm(a * 6.0 + 13.0, b * 6.0, octaves=3)
    return _lerp(teal, cream, parity) * (0.75 + 0.35 * wear)[:, None]
