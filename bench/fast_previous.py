"""The ``fast`` projection backend as it was before issue 22 (commit 2661c1e), kept for
``bench/projection.py`` only: corrected-midpoint pixel means (two table lerps per pixel, then a
renormalised deposit) for kernels of H >= 3 px, separable exact-marginal fractions below.
Not registered; not used by cmpipe.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cmpipe.sph.kernels import marginal_cdf_coefficients, projected_laplacian_table, projected_table

FAST_SEPARABLE_BELOW_PIX = 3.0
FAST_BUFFER_MAX_PIX = 256.0


def _with_threads_prev(num_threads, fn):
    if num_threads <= 0:
        return fn()
    previous = numba.get_num_threads()
    numba.set_num_threads(min(num_threads, int(numba.config.NUMBA_NUM_THREADS)))
    try:
        return fn()
    finally:
        numba.set_num_threads(previous)


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _marginal_cdf(x, coeffs):  # pragma: no cover - compiled
    """Fraction of a unit-support 3D C2 kernel's mass at coordinate < x, branch-free.

    ``coeffs`` is the 9-tuple of :func:`~cmpipe.sph.kernels.marginal_cdf_coefficients`; the
    polynomial is evaluated in full (a tuple keeps it in registers). Branch-free clamping and
    ``copysign`` matter: the sign and the saturation are unpredictable per particle, and
    branches on them cost 3x in throughput.
    """
    t = min(max(x, -1.0), 1.0)
    a = abs(t)
    acc = coeffs[8]
    acc = acc * a + coeffs[7]
    acc = acc * a + coeffs[6]
    acc = acc * a + coeffs[5]
    acc = acc * a + coeffs[4]
    acc = acc * a + coeffs[3]
    acc = acc * a + coeffs[2]
    acc = acc * a + coeffs[1]
    acc = acc * a + coeffs[0]
    return 0.5 + math.copysign(acc, t)


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _deposit_separable(out, tid, w, i, ix0, iy0, fx, fy, nx, ny, npix):  # pragma: no cover - compiled
    """Add w[:, i] * fy[a] * fx[b] to pixel (iy0 + a, ix0 + b), skipping pixels off the map."""
    nch = w.shape[0]
    a0 = max(0, -iy0)
    a1 = min(ny, npix - iy0)
    b0 = max(0, -ix0)
    b1 = min(nx, npix - ix0)
    for ch in range(nch):
        wc = w[ch, i]
        for a in range(a0, a1):
            wy = wc * fy[a]
            row = out[tid, ch, iy0 + a]
            for b in range(b0, b1):
                row[ix0 + b] += wy * fx[b]


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _pixel_mean(ix, iy, ui, vi, inv_h2, table, lap_table):  # pragma: no cover - compiled
    """Mean of the projected kernel over pixel (ix, iy) up to O(pixel^4): the midpoint value plus
    the midpoint rule's correction ``lap F / (24 H^2)`` (coordinates in pixels), floored at 0."""
    ntab = table.size - 1
    dx = ix + 0.5 - ui
    dy = iy + 0.5 - vi
    q2 = min((dx * dx + dy * dy) * inv_h2, 1.0)
    f = q2 * ntab
    k = min(int(f), ntab - 1)
    frac = f - k
    value = table[k] + frac * (table[k + 1] - table[k])
    lap = lap_table[k] + frac * (lap_table[k + 1] - lap_table[k])
    return max(value + lap * inv_h2 * (1.0 / 24.0), 0.0)


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _fast_kernel(x, y, z, support, w, npix, pixel, half_depth, table, lap_table, cdf_coeffs, h_sep, nbuf_large, nslots):  # pragma: no cover
    # long: a numba prange kernel; the per-particle loop stays one function so that each thread's
    # buffers stay local to its prange body (splitting it would pass arrays between jitted calls).
    # slot t owns particles t, t + nslots, ... (interleaved: balanced when particles are sorted
    # by radius) and its own map, so no two threads ever write the same memory
    nch = w.shape[0]
    n = x.size
    out = np.zeros((nslots, nch, npix, npix))
    inv_pix = 1.0 / pixel
    centre = 0.5 * npix
    ntab = table.size - 1
    # fraction buffers for the separable path: at most ceil(2 h_sep) + 1 pixels per axis
    nbuf = int(math.ceil(2.0 * h_sep)) + 2
    for tid in numba.prange(nslots):
        fx = np.empty(nbuf)
        fy = np.empty(nbuf)
        buf = np.empty(nbuf_large)
        for i in range(tid, n, nslots):
            if abs(z[i]) > half_depth:
                continue
            ui = x[i] * inv_pix + centre
            vi = y[i] * inv_pix + centre
            hi = support[i] * inv_pix
            if ui + hi <= 0.0 or ui - hi >= npix or vi + hi <= 0.0 or vi - hi >= npix:
                continue
            if hi < h_sep:
                # pixel fractions = differences of the kernel's exact 1D marginal CDF per axis;
                # the 2D fraction is their product (exact across any single pixel edge, ~0.2 %
                # of the particle off near pixel corners). H < 0.5 px spans at most 2 x 2 pixels.
                inv_h = 1.0 / hi
                ix0 = int(math.floor(ui - hi))
                iy0 = int(math.floor(vi - hi))
                if hi < 0.5:
                    fx0 = _marginal_cdf((ix0 + 1 - ui) * inv_h, cdf_coeffs)
                    fy0 = _marginal_cdf((iy0 + 1 - vi) * inv_h, cdf_coeffs)
                    fx1 = 1.0 - fx0
                    fy1 = 1.0 - fy0
                    if ix0 >= 0 and iy0 >= 0 and ix0 + 2 <= npix and iy0 + 2 <= npix:
                        for ch in range(nch):
                            wc = w[ch, i]
                            out[tid, ch, iy0, ix0] += wc * (fx0 * fy0)
                            out[tid, ch, iy0, ix0 + 1] += wc * (fx1 * fy0)
                            out[tid, ch, iy0 + 1, ix0] += wc * (fx0 * fy1)
                            out[tid, ch, iy0 + 1, ix0 + 1] += wc * (fx1 * fy1)
                        continue
                    fx[0] = fx0
                    fx[1] = fx1
                    fy[0] = fy0
                    fy[1] = fy1
                    nx = 2
                    ny = 2
                else:
                    nx = int(math.floor(ui + hi)) - ix0 + 1
                    ny = int(math.floor(vi + hi)) - iy0 + 1
                    # the last pixel's right edge lies beyond the support: its CDF is 1
                    prev = 0.0
                    for k in range(nx - 1):
                        c = _marginal_cdf((ix0 + k + 1 - ui) * inv_h, cdf_coeffs)
                        fx[k] = c - prev
                        prev = c
                    fx[nx - 1] = 1.0 - prev
                    prev = 0.0
                    for k in range(ny - 1):
                        c = _marginal_cdf((iy0 + k + 1 - vi) * inv_h, cdf_coeffs)
                        fy[k] = c - prev
                        prev = c
                    fy[ny - 1] = 1.0 - prev
                _deposit_separable(out, tid, w, i, ix0, iy0, fx, fy, nx, ny, npix)
                continue
            # larger kernels: the mean of the projected kernel over each pixel (corrected midpoint
            # rule), renormalised over the whole stencil (one evaluation pass, then the deposit)
            inv_h2 = 1.0 / (hi * hi)
            ix0 = int(math.floor(ui - hi))
            iy0 = int(math.floor(vi - hi))
            nx = int(math.floor(ui + hi)) - ix0 + 1
            ny = int(math.floor(vi + hi)) - iy0 + 1
            # only pixels whose centre lies inside the support contribute: per row, the chord
            buffered = nx * ny <= buf.size
            total = 0.0
            for a in range(ny):
                dy = iy0 + a + 0.5 - vi
                half = math.sqrt(max(hi * hi - dy * dy, 0.0))
                lo = max(int(math.ceil(ui - half - 0.5)) - ix0, 0)
                hi_b = min(int(math.floor(ui + half - 0.5)) - ix0, nx - 1)
                for b in range(lo, hi_b + 1):
                    acc = _pixel_mean(ix0 + b, iy0 + a, ui, vi, inv_h2, table, lap_table)
                    if buffered:
                        buf[a * nx + b] = acc
                    total += acc
            inv_total = 1.0 / total
            for a in range(max(0, -iy0), min(ny, npix - iy0)):
                dy = iy0 + a + 0.5 - vi
                half = math.sqrt(max(hi * hi - dy * dy, 0.0))
                lo = max(int(math.ceil(ui - half - 0.5)) - ix0, 0, -ix0)
                hi_b = min(int(math.floor(ui + half - 0.5)) - ix0, nx - 1, npix - 1 - ix0)
                for ch in range(nch):
                    wc = w[ch, i] * inv_total
                    row = out[tid, ch, iy0 + a]
                    if buffered:
                        for b in range(lo, hi_b + 1):
                            row[ix0 + b] += wc * buf[a * nx + b]
                    else:
                        for b in range(lo, hi_b + 1):
                            row[ix0 + b] += wc * _pixel_mean(ix0 + b, iy0 + a, ui, vi, inv_h2, table, lap_table)
    res = np.zeros((nch, npix, npix))
    for t in range(nslots):
        res += out[t]
    return res



def project_fast_previous(x, y, z, support, weights, grid, num_threads=0):
    """Separable exact-marginal fractions below ``FAST_SEPARABLE_BELOW_PIX``, corrected midpoint
    rule per pixel above; see the module docstring."""
    table = np.ascontiguousarray(projected_table(), dtype=np.float64)
    lap_table = np.ascontiguousarray(projected_laplacian_table(), dtype=np.float64)
    coeffs = tuple(float(c) for c in marginal_cdf_coefficients())
    if len(coeffs) != 9:
        raise RuntimeError("the C2 marginal CDF is a degree-8 polynomial; the fast backend unrolls 9 terms")
    w = np.ascontiguousarray(weights, dtype=np.float64)
    # per-thread stencil buffer for large kernels, (2 H + 2)^2 pixels of the largest one up to
    # FAST_BUFFER_MAX_PIX; still larger kernels evaluate their stencil twice instead
    h_max = min(float(support.max()) / grid.pixel_mpc if support.size else 0.0, FAST_BUFFER_MAX_PIX)
    side = int(math.ceil(2.0 * h_max)) + 2
    nbuf_large = side * side if h_max >= FAST_SEPARABLE_BELOW_PIX else 1

    def run() -> np.ndarray:
        return _fast_kernel(
            x, y, z, support, w, grid.npix, grid.pixel_mpc, 0.5 * grid.depth_mpc, table, lap_table, coeffs,
            FAST_SEPARABLE_BELOW_PIX, nbuf_large, numba.get_num_threads(),
        )

    return _with_threads_prev(num_threads, run) / grid.pixel_area_mpc2
