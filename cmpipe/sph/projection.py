"""Projection of SPH particles onto 2D maps: one registry, three backends.

Every backend computes, for each weight channel ``c``, the surface density

    map[c, iy, ix] = sum_j w[c, j] * (pixel-averaged projected kernel of particle j) ,

in units of ``w`` per Mpc^2, on a square grid centred on the origin (:class:`MapGrid`). With
``w = m`` the map is a surface density; with ``w = A_j m_j / rho_j`` it is the line-of-sight
integral of the SPH field ``A``.

Geometry (the map contract)
---------------------------
* The map covers ``[-L/2, L/2]^2`` with ``L = npix * pixel_mpc``; pixel ``(iy, ix)`` is centred at
  ``x = (ix + 0.5) * pixel - L/2``, ``y = (iy + 0.5) * pixel - L/2``; arrays are
  ``(channel, iy, ix)``, so ``imshow(..., origin="lower")`` shows +y up.
* The slab is ``|z| <= depth_mpc / 2``. ``exact`` and ``fast`` take every particle whose centre
  lies in the slab and integrate its kernel over the whole sightline; ``mesh3d`` deposits on a
  3D mesh spanning the slab and keeps only the part of each kernel inside it, as the paper does.

Mass conservation (all backends)
--------------------------------
Each particle's weights are renormalised over its whole stencil, pixels beyond the map's edge
included, and only the in-map part is deposited: a particle inside the map deposits exactly
``w``; one straddling the edge deposits exactly the part of its (discretised) kernel that falls
inside. A kernel too small to cover any sample point goes wholly to the nearest pixel (``exact``
only; ``fast`` and ``mesh3d`` give small kernels exact separable fractions instead).

Backends
--------
``exact``
    The oracle: the exact projected kernel (closed form) averaged over each pixel on sub-cells
    of at most ``H / 8`` and ``pixel / 4``, with 2 x 2 Gauss-Legendre points in each sub-cell.
    Slow.
``mesh3d``
    The paper's method: the 3D kernel on a 3D mesh of cubic cells of one pixel (the slab
    divided into ``round(depth / pixel)`` layers), sampled at cell centres and renormalised,
    then summed along the sightline. Kernels narrower than a cell (no cell centre is certain to
    fall inside them) get exact separable fractions from the kernel's 1D marginal CDF instead.
``fast``
    Straight onto the 2D map, all channels in one pass, parallel over blocks of particles with
    one map per thread. Kernels with ``H < FAST_SEPARABLE_BELOW_PIX`` pixels (most particles of
    a cluster) get the exact fraction of their mass in each pixel column and row from the
    kernel's 1D marginal CDF (a polynomial, exactly 0 and 1 at the support's edges), and the
    product of the two as the pixel's fraction (exact across a single pixel edge; 0.1-1.4 % of
    the particle misplaced, from H = 0.5 to 3 px). Larger kernels take the mean of the projected
    kernel over each pixel by the midpoint rule with its leading correction ``lap F / 24``
    (0.65 % misplaced at 3 px, 0.04 % at 6 px), ``F`` and ``lap F`` as degree-14 polynomials in
    ``1 - R`` (3.8e-6 of the mass misplaced by the fit at 3 px), renormalised over the stencil.
    Compact support holds exactly: a pixel gets a non-zero share only if it meets the disc of
    radius H (the CDF saturates to exactly 0 or 1; the polynomials vanish at ``R >= 1``).
    Speed (issue 22): within a block of FAST_BLOCK particles the particles are taken path by
    path (a counting sort), small kernels wholly inside the map on fixed m x m stencils with a
    literal m, and each large kernel's pixel values in one flat branch-free loop that LLVM
    vectorises; branches on per-particle quantities are what cost most here.

All three are numba kernels; none is compiled at import.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np

from .kernels import marginal_cdf_coefficients, projected_laplacian_table, wendland_c2_projected

#: ``fast``: kernels with H below this many pixels use separable exact-marginal pixel fractions.
FAST_SEPARABLE_BELOW_PIX = 3.0
#: ``fast``: kernels up to this many pixels keep their stencil in a per-thread buffer.
FAST_BUFFER_MAX_PIX = 256.0
#: ``fast``: the largest fixed stencil (pixels per axis) of a small kernel wholly inside the map;
#: paths 0 .. FAST_FIXED_MAX - 2 are the fixed stencils m = 2 .. FAST_FIXED_MAX.
FAST_FIXED_MAX = 7
#: ``fast``: particles per block, sorted by path within a block.
FAST_BLOCK = 2048
#: ``fast``: a large kernel's flat loop over its box is padded to a multiple of this many pixels
#: (LLVM vectorises it 8 doubles wide, interleaved 4 times).
FAST_FLAT_CHUNK = 32

__all__ = [
    "FAST_SEPARABLE_BELOW_PIX",
    "BACKEND_NAMES", "BACKENDS", "MapGrid", "project", "register_backend", "default_num_threads"]


@dataclass(frozen=True)
class MapGrid:
    """A square map centred on the origin.

    Attributes
    ----------
    npix : int
        Pixels per side.
    pixel_mpc : float
        Pixel size [Mpc].
    depth_mpc : float
        Thickness of the projected slab along the sightline [Mpc].
    """

    npix: int = 128
    pixel_mpc: float = 0.1
    depth_mpc: float = 12.8

    def __post_init__(self) -> None:
        if self.npix <= 0 or self.pixel_mpc <= 0 or self.depth_mpc <= 0:
            raise ValueError(f"MapGrid needs npix, pixel_mpc and depth_mpc > 0, got {self}")

    @property
    def extent_mpc(self) -> float:
        """Side length of the map [Mpc]."""
        return self.npix * self.pixel_mpc

    @property
    def pixel_area_mpc2(self) -> float:
        """Area of one pixel [Mpc^2]."""
        return self.pixel_mpc**2

    def pixel_centres_mpc(self) -> np.ndarray:
        """Pixel-centre coordinates along one axis [Mpc], shape (npix,)."""
        return (np.arange(self.npix) + 0.5) * self.pixel_mpc - 0.5 * self.extent_mpc


#: The backends' names, the reference ``exact`` first: what ``maps.backend`` accepts. The single
#: list of them: :mod:`cmpipe.config` reads this literal without importing numba, and a test
#: checks that :data:`BACKENDS` registers exactly these.
BACKEND_NAMES: tuple[str, ...] = ("exact", "mesh3d", "fast")

Backend = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, MapGrid, int], np.ndarray]
#: name -> backend(x, y, z, support, weights, grid, num_threads) -> (C, npix, npix)
BACKENDS: dict[str, Backend] = {}


def register_backend(name: str) -> Callable[[Backend], Backend]:
    """Decorator adding a projection backend to :data:`BACKENDS` under ``name``."""

    def deco(fn: Backend) -> Backend:
        BACKENDS[name] = fn
        return fn

    return deco


def default_num_threads() -> int:
    """Threads numba may use here: its configured maximum (``NUMBA_NUM_THREADS``)."""
    return int(numba.config.NUMBA_NUM_THREADS)


def _chunks(n: int, nthreads: int) -> np.ndarray:
    """Boundaries of ``nthreads`` contiguous particle chunks."""
    return np.linspace(0, n, nthreads + 1).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# fast: separable pixel fractions for small kernels, sub-sampled projected kernel for large ones
# ----------------------------------------------------------------------------------------------
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
def _cdf_c2(x, tail):  # pragma: no cover - compiled
    """Fraction of a unit-support 3D C2 kernel's mass at coordinate < x, from its tail.

    The marginal CDF's tail beyond ``|x|`` is ``s^6 (t0 + t1 s + t2 s^2)`` with ``s = 1 - |x|``
    (``tail`` = (t0, t1, t2), :func:`_cdf_tail_coefficients`): the same polynomial as
    :func:`_marginal_cdf`, written so that it is exactly 0 and 1 at the support's edges (a
    pixel beyond the support gets exactly nothing) and takes 3 multiply-adds fewer. Branch-free:
    a branch on the sign costs ~2x in throughput (unpredictable per particle).
    """
    s = 1.0 - min(abs(x), 1.0)
    s2 = s * s
    t = s2 * s2 * s2 * (tail[0] + s * (tail[1] + s * tail[2]))
    return 0.5 + math.copysign(0.5 - t, x)


@lru_cache(maxsize=1)
def _cdf_tail_coefficients() -> tuple[float, float, float]:
    """(t0, t1, t2) with ``0.5 - A(1 - s) = s^6 (t0 + t1 s + t2 s^2)``, ``A`` the power series of
    :func:`~cmpipe.sph.kernels.marginal_cdf_coefficients` (derived, not typed in)."""
    series = np.polynomial.Polynomial(marginal_cdf_coefficients())
    tail = (0.5 - series(np.polynomial.Polynomial([1.0, -1.0]))).coef
    if tail.size != 9 or np.abs(tail[:6]).max() > 1e-12:
        raise RuntimeError(f"the C2 marginal CDF's tail is not s^6 (a + b s + c s^2): {tail}")
    return (float(tail[6]), float(tail[7]), float(tail[8]))


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
            for b in range(b0, b1):
                out[tid, ch, iy0 + a, ix0 + b] += wy * fx[b]


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _fractions(start, inv_h, m, tail, frac):  # pragma: no cover - compiled
    """frac[k] (k < m) = the kernel's mass fraction in pixel column k, whose left edge lies
    ``start + k`` pixels from the particle: differences of the exact marginal CDF, exactly 0
    beyond the support. ``start`` is the offset of the first column, at or left of -H."""
    prev = 0.0
    for k in range(m - 1):
        c = _cdf_c2((start + k + 1) * inv_h, tail)
        frac[k] = c - prev
        prev = c
    frac[m - 1] = 1.0 - prev


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _deposit_fixed(out, flat, tid, w, i, ui, vi, hi, m, tail, fx, fy):  # pragma: no cover - compiled
    """A kernel of H < m / 2 pixels wholly inside the map on an m x m stencil from
    floor(u - H), floor(v - H): separable exact-marginal fractions, exactly 0 in a last column or
    row beyond the support. Called with a literal ``m``, so the loops unroll. ``flat`` is ``out``
    raveled: unsigned offsets into it spare numba's negative-index checks."""
    nch = w.shape[0]
    inv_h = 1.0 / hi
    ix0 = int(math.floor(ui - hi))
    iy0 = int(math.floor(vi - hi))
    _fractions(ix0 - ui, inv_h, m, tail, fx)
    _fractions(iy0 - vi, inv_h, m, tail, fy)
    npix = out.shape[3]
    for ch in range(nch):
        wc = w[ch, i]
        for a in range(m):
            wy = wc * fy[a]
            row = np.uint64(((tid * nch + ch) * npix + iy0 + a) * npix + ix0)
            for b in range(m):
                flat[row + np.uint64(b)] += wy * fx[b]


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _deposit_small_edge(out, tid, w, i, ui, vi, hi, npix, tail, fx, fy):  # pragma: no cover - compiled
    """A small kernel that may straddle the map's edge: separable exact-marginal fractions on its
    own stencil, clipped to the map (the off-map part is dropped, not renormalised)."""
    inv_h = 1.0 / hi
    ix0 = int(math.floor(ui - hi))
    iy0 = int(math.floor(vi - hi))
    nx = int(math.floor(ui + hi)) - ix0 + 1
    ny = int(math.floor(vi + hi)) - iy0 + 1
    _fractions(ix0 - ui, inv_h, nx, tail, fx)
    _fractions(iy0 - vi, inv_h, ny, tail, fy)
    _deposit_separable(out, tid, w, i, ix0, iy0, fx, fy, nx, ny, npix)


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _combined(p, q, corr):  # pragma: no cover - compiled
    """The 14-tuple ``p + corr * q`` (coefficients of F + corr lap F in s = 1 - R)."""
    return (p[0] + corr * q[0], p[1] + corr * q[1], p[2] + corr * q[2], p[3] + corr * q[3], p[4] + corr * q[4], p[5] + corr * q[5], p[6] + corr * q[6], p[7] + corr * q[7], p[8] + corr * q[8], p[9] + corr * q[9], p[10] + corr * q[10], p[11] + corr * q[11], p[12] + corr * q[12], p[13] + corr * q[13])


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _pixel_value(q2, c):  # pragma: no cover - compiled
    """``sum_k c[k - 1] s^k`` (k = 1 .. 14) with ``s = 1 - sqrt(min(q2, 1))``, floored at 0:
    exactly 0 for a pixel centre at or beyond the support (q2 >= 1). Branch-free, so a row of
    pixels vectorises."""
    s = 1.0 - math.sqrt(min(q2, 1.0))
    acc = c[13]
    acc = acc * s + c[12]
    acc = acc * s + c[11]
    acc = acc * s + c[10]
    acc = acc * s + c[9]
    acc = acc * s + c[8]
    acc = acc * s + c[7]
    acc = acc * s + c[6]
    acc = acc * s + c[5]
    acc = acc * s + c[4]
    acc = acc * s + c[3]
    acc = acc * s + c[2]
    acc = acc * s + c[1]
    acc = acc * s + c[0]
    return max(acc * s, 0.0)


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _large_box(ui, vi, hi):  # pragma: no cover - compiled
    """The bounding box of a kernel at ``(ui, vi)`` with support ``hi`` [px]: its first pixel
    ``ix0, iy0`` and its size ``nx, ny`` [px]."""
    ix0 = int(math.floor(ui - hi))
    iy0 = int(math.floor(vi - hi))
    nx = int(math.floor(ui + hi)) - ix0 + 1
    ny = int(math.floor(vi + hi)) - iy0 + 1
    return ix0, iy0, nx, ny


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _deposit_large(flat, tid, w, i, ui, vi, hi, npix, pc, qc, buf, col):  # pragma: no cover - compiled
    """A kernel of H >= FAST_SEPARABLE_BELOW_PIX: the mean of the projected kernel over each pixel
    of its bounding box by the corrected midpoint rule ``F + lap F / (24 H^2)`` at the pixel
    centre (``F`` and ``lap F`` as polynomials in ``1 - R``, :func:`_large_kernel_coefficients`),
    exactly 0 where the centre lies outside the support; renormalised over the box. ``buf``
    first takes each pixel's q^2, then, in one flat branch-free loop over the whole box (long
    enough to vectorise, unlike a row), its value; the in-map part is then added row by row.
    ``col`` holds a row's dx^2 / H^2; ``flat`` is the (slot, channel, y, x) maps raveled, indexed
    with unsigned offsets (no negative-index checks: 2x faster here). Returns False, doing
    nothing, when the box exceeds ``buf``."""
    nch = w.shape[0]
    inv_h2 = 1.0 / (hi * hi)
    c = _combined(pc, qc, inv_h2 * (1.0 / 24.0))
    ix0, iy0, nx, ny = _large_box(ui, vi, hi)
    nbox = nx * ny
    # the flat loop runs over a multiple of FAST_FLAT_CHUNK pixels (the padding holds q^2 = 1,
    # so value 0): a vectorised loop then never falls into its slow scalar remainder
    nflat = (nbox + FAST_FLAT_CHUNK - 1) // FAST_FLAT_CHUNK * FAST_FLAT_CHUNK
    if nflat > buf.size or nx > col.size:
        return False
    x0 = ix0 + 0.5 - ui
    for b in range(nx):
        dx = x0 + b
        col[b] = dx * dx * inv_h2
    for a in range(ny):
        dy = iy0 + a + 0.5 - vi
        dy2 = dy * dy * inv_h2
        base = np.uint64(a * nx)
        for b in range(np.uint64(nx)):
            buf[base + b] = col[b] + dy2
    for j in range(nbox, nflat):
        buf[j] = 1.0
    total = 0.0
    for j in range(nflat):
        f = _pixel_value(buf[j], c)
        buf[j] = f
        total += f
    inv_total = 1.0 / total
    a0 = max(0, -iy0)
    a1 = min(ny, npix - iy0)
    b0 = max(0, -ix0)
    b1 = min(nx, npix - ix0)
    for ch in range(nch):
        wc = w[ch, i] * inv_total
        for a in range(a0, a1):
            src = np.uint64(a * nx)
            dst = np.uint64(((tid * nch + ch) * npix + iy0 + a) * npix + ix0)
            for b in range(np.uint64(b0), np.uint64(b1)):
                flat[dst + b] += wc * buf[src + b]
    return True


@numba.njit(cache=True, nogil=True, fastmath=True)
def _deposit_huge(out, tid, w, i, ui, vi, hi, npix, pc, qc):  # pragma: no cover - compiled
    """:func:`_deposit_large` for a box larger than the buffer: the pixel values are evaluated
    twice (for the total, then for the in-map deposit) instead of buffered."""
    nch = w.shape[0]
    inv_h2 = 1.0 / (hi * hi)
    c = _combined(pc, qc, inv_h2 * (1.0 / 24.0))
    ix0, iy0, nx, ny = _large_box(ui, vi, hi)
    x0 = ix0 + 0.5 - ui
    total = 0.0
    for a in range(ny):
        dy = iy0 + a + 0.5 - vi
        dy2 = dy * dy * inv_h2
        for b in range(nx):
            dx = x0 + b
            total += _pixel_value(dx * dx * inv_h2 + dy2, c)
    inv_total = 1.0 / total
    for a in range(max(0, -iy0), min(ny, npix - iy0)):
        dy = iy0 + a + 0.5 - vi
        dy2 = dy * dy * inv_h2
        for b in range(max(0, -ix0), min(nx, npix - ix0)):
            dx = x0 + b
            f = _pixel_value(dx * dx * inv_h2 + dy2, c) * inv_total
            for ch in range(nch):
                out[tid, ch, iy0 + a, ix0 + b] += w[ch, i] * f


#: ``p_k`` (k = 1 .. 14) of ``F(R) ~ sum_k p_k s^k``, ``s = 1 - R`` (unit support), written out
#: from :func:`fit_large_kernel_coefficients` run with one BLAS thread. Typed in, not fitted per
#: process: LAPACK's least squares differs in the last bits with the number of BLAS threads
#: (1e-10 relative in these coefficients), which made a serial store's maps differ from a Ray
#: store's (one BLAS thread per task) in a few pixels. ``tests/test_sph.py`` checks them against
#: a fresh fit.
LARGE_KERNEL_P = (
    -4.655141247388227e-05, 0.004269707978292292, -0.1613828342707206, 5.080037630009326,
    19.724822798777563, -44.61516937312603, -5.065747474331737, 198.01479239668106,
    -562.2352018739588, 915.7471649931165, -952.1386446272192, 625.526010855835,
    -237.55878470971902, 39.90603461424895,
)
#: ``q_k`` of ``lap F(R) ~ sum_k q_k s^k`` (unit support), as :data:`LARGE_KERNEL_P`.
LARGE_KERNEL_Q = (
    -0.22427378462628425, 39.84757990717594, 662.4393878368049, -3420.825090350156,
    5816.11107513337, 19304.643187678743, -183730.9854808877, 685365.6920068603,
    -1558329.6007072136, 2335694.046509027, -2324868.121016616, 1482891.4650582522,
    -549634.4630409399, 90143.00456969686,
)


def _large_kernel_coefficients() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(:data:`LARGE_KERNEL_P`, :data:`LARGE_KERNEL_Q`): the same bits in every process."""
    return LARGE_KERNEL_P, LARGE_KERNEL_Q


def fit_large_kernel_coefficients() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Coefficients ``p_k``, ``q_k`` (k = 1 .. 14) of ``F(R) ~ sum_k p_k s^k`` and
    ``lap F(R) ~ sum_k q_k s^k`` with ``s = 1 - R`` (unit support): least squares on 40001
    radii, weighted by sqrt(R) (the pixels at radius R number ~R), against the closed form
    and :func:`~cmpipe.sph.kernels.projected_laplacian_table`. No constant term: both vanish at
    the support's edge exactly. The misplaced mass, int |error| dA, is 3.8e-6 at H = 3 px and
    1.1e-6 at 6 px (the table of F in q^2 that this replaces: 2.6e-7, plus its laplacian's).
    The source of :data:`LARGE_KERNEL_P` and :data:`LARGE_KERNEL_Q`; its last bits depend on
    the BLAS thread count."""
    radius = np.linspace(0.0, 1.0, 40001)
    s = 1.0 - radius
    design = np.stack([s**k for k in range(1, 15)], axis=1)
    weight = np.sqrt(radius + 1e-4)[:, None]
    lap_table = projected_laplacian_table()
    lap = np.interp(radius**2, np.linspace(0.0, 1.0, lap_table.size), lap_table)
    p = np.linalg.lstsq(design * weight, wendland_c2_projected(radius, 1.0) * weight[:, 0], rcond=None)[0]
    q = np.linalg.lstsq(design * weight, lap * weight[:, 0], rcond=None)[0]
    return tuple(float(v) for v in p), tuple(float(v) for v in q)


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _fast_path(zi, ui, vi, hi, npix, half_depth, h_sep):  # pragma: no cover - compiled
    """A particle's path in :func:`_fast_kernel`: -1 skipped (outside the slab or the map);
    m - 2 for a small kernel wholly inside the map on a fixed m x m stencil,
    ``m = int(2 H) + 2`` (the most pixels it can span per axis, m <= FAST_FIXED_MAX); then
    FAST_FIXED_MAX - 1 for a small kernel at the map's edge, FAST_FIXED_MAX for a large one."""
    if abs(zi) > half_depth or ui + hi <= 0.0 or ui - hi >= npix or vi + hi <= 0.0 or vi - hi >= npix:
        return -1
    if hi >= h_sep:
        return FAST_FIXED_MAX
    m = int(2.0 * hi) + 2
    ix0 = int(math.floor(ui - hi))
    iy0 = int(math.floor(vi - hi))
    if m <= FAST_FIXED_MAX and ix0 >= 0 and iy0 >= 0 and ix0 + m <= npix and iy0 + m <= npix:
        return m - 2
    return FAST_FIXED_MAX - 1


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _fast_kernel(x, y, z, support, w, npix, pixel, half_depth, pc, qc, tail, h_sep, nbuf_large, nslots):  # pragma: no cover
    # long: a numba prange kernel; each thread's buffers stay local to its prange body.
    # Slot t owns blocks t, t + nslots, ... of FAST_BLOCK consecutive particles (interleaved:
    # balanced when particles are sorted by radius) and its own map, so no two threads ever
    # write the same memory. Within a block the particles are taken path by path (a counting
    # sort on the path), so that branches and loop counts stay predictable; each fixed stencil
    # size is its own call with a literal m (unrolled loops).
    nch = w.shape[0]
    n = x.size
    out = np.zeros((nslots, nch, npix, npix))
    flat = out.reshape(-1)
    inv_pix = 1.0 / pixel
    centre = 0.5 * npix
    npath = FAST_FIXED_MAX + 1
    nbuf = int(math.ceil(2.0 * h_sep)) + 2
    nblocks = (n + FAST_BLOCK - 1) // FAST_BLOCK
    for tid in numba.prange(nslots):
        fx = np.empty(max(nbuf, FAST_FIXED_MAX))
        fy = np.empty(max(nbuf, FAST_FIXED_MAX))
        buf = np.empty(nbuf_large)
        col = np.empty(int(math.sqrt(nbuf_large)) + 2)
        path = np.empty(FAST_BLOCK, np.int64)
        order = np.empty(FAST_BLOCK, np.int64)
        start_of = np.empty(npath + 2, np.int64)
        for blk in range(tid, nblocks, nslots):
            first = blk * FAST_BLOCK
            last = min(n, first + FAST_BLOCK)
            start_of[:] = 0
            for i in range(first, last):
                p = _fast_path(z[i], x[i] * inv_pix + centre, y[i] * inv_pix + centre, support[i] * inv_pix,
                               npix, half_depth, h_sep)
                path[i - first] = p
                start_of[p + 2] += 1
            for p in range(1, npath + 2):
                start_of[p] += start_of[p - 1]
            # start_of[p + 1] is now the first slot of path p (skipped particles first)
            for j in range(last - first):
                p = path[j] + 1
                order[start_of[p]] = first + j
                start_of[p] += 1
            # start_of[p + 1] is now the end of path p, start_of[p] its first slot
            for p in range(npath):
                for j in range(start_of[p], start_of[p + 1]):
                    i = order[j]
                    ui = x[i] * inv_pix + centre
                    vi = y[i] * inv_pix + centre
                    hi = support[i] * inv_pix
                    if p == 0:
                        _deposit_fixed(out, flat, tid, w, i, ui, vi, hi, 2, tail, fx, fy)
                    elif p == 1:
                        _deposit_fixed(out, flat, tid, w, i, ui, vi, hi, 3, tail, fx, fy)
                    elif p == 2:
                        _deposit_fixed(out, flat, tid, w, i, ui, vi, hi, 4, tail, fx, fy)
                    elif p == 3:
                        _deposit_fixed(out, flat, tid, w, i, ui, vi, hi, 5, tail, fx, fy)
                    elif p == 4:
                        _deposit_fixed(out, flat, tid, w, i, ui, vi, hi, 6, tail, fx, fy)
                    elif p == 5:
                        _deposit_fixed(out, flat, tid, w, i, ui, vi, hi, 7, tail, fx, fy)
                    elif p == FAST_FIXED_MAX - 1:
                        _deposit_small_edge(out, tid, w, i, ui, vi, hi, npix, tail, fx, fy)
                    elif not _deposit_large(flat, tid, w, i, ui, vi, hi, npix, pc, qc, buf, col):
                        _deposit_huge(out, tid, w, i, ui, vi, hi, npix, pc, qc)
    res = np.zeros((nch, npix, npix))
    for t in range(nslots):
        res += out[t]
    return res


# ----------------------------------------------------------------------------------------------
# exact: exact projected kernel averaged over sub-pixels
# ----------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def _projected_closed_form_scalar(r):  # pragma: no cover - compiled
    """Closed-form projected kernel F(R) for unit support (see :mod:`cmpipe.sph.kernels`).

    Its cancellation as R -> 1 costs ~1e-12 of the peak in absolute terms: harmless here.
    """
    if r >= 1.0:
        return 0.0
    r2 = r * r
    s = math.sqrt(1.0 - r2)
    val = s * (4.0 - 28.0 * r2 - 81.0 * r2 * r2)
    if r > 0.0:
        val += 15.0 * r2 * r2 * (6.0 + r2) * math.log((1.0 + s) / r)
    if val < 0.0:
        val = 0.0
    return val * (7.0 / (4.0 * math.pi))


@numba.njit(parallel=True, cache=True, nogil=True)
def _exact_kernel(u, v, h, w, npix, bounds, min_sub):  # pragma: no cover - compiled
    nthreads = bounds.size - 1
    nch = w.shape[0]
    out = np.zeros((nthreads, nch, npix, npix))
    gauss = 0.5 / math.sqrt(3.0)  # 2-point Gauss-Legendre nodes in units of the sub-cell
    for t in numba.prange(nthreads):
        for i in range(bounds[t], bounds[t + 1]):
            ui = u[i]
            vi = v[i]
            hi = h[i]
            if ui + hi <= 0.0 or ui - hi >= npix or vi + hi <= 0.0 or vi - hi >= npix:
                continue
            # sub-cells per pixel side: size <= H / 8 and <= pixel / min_sub
            ns = max(min_sub, int(math.ceil(8.0 / hi)))
            su = ui * ns
            sv = vi * ns
            sh = hi * ns
            # sub-cells whose area meets the support's bounding box
            kx0 = int(math.floor(su - sh))
            kx1 = int(math.floor(su + sh))
            ky0 = int(math.floor(sv - sh))
            ky1 = int(math.floor(sv + sh))
            total = 0.0
            for ky in range(ky0, ky1 + 1):
                for kx in range(kx0, kx1 + 1):
                    for gy in range(2):
                        dy = (ky + 0.5 + (gauss if gy else -gauss) - sv) / sh
                        for gx in range(2):
                            dx = (kx + 0.5 + (gauss if gx else -gauss) - su) / sh
                            total += _projected_closed_form_scalar(math.sqrt(dx * dx + dy * dy))
            if total <= 0.0:
                ix = int(math.floor(ui))
                iy = int(math.floor(vi))
                if 0 <= ix < npix and 0 <= iy < npix:
                    for c in range(nch):
                        out[t, c, iy, ix] += w[c, i]
                continue
            inv_total = 1.0 / total
            for ky in range(ky0, ky1 + 1):
                iy = int(math.floor(ky / ns))
                if iy < 0 or iy >= npix:
                    continue
                for kx in range(kx0, kx1 + 1):
                    ix = int(math.floor(kx / ns))
                    if ix < 0 or ix >= npix:
                        continue
                    f = 0.0
                    for gy in range(2):
                        dy = (ky + 0.5 + (gauss if gy else -gauss) - sv) / sh
                        for gx in range(2):
                            dx = (kx + 0.5 + (gauss if gx else -gauss) - su) / sh
                            f += _projected_closed_form_scalar(math.sqrt(dx * dx + dy * dy))
                    if f > 0.0:
                        f *= inv_total
                        for c in range(nch):
                            out[t, c, iy, ix] += w[c, i] * f
    res = np.zeros((nch, npix, npix))
    for t in range(nthreads):
        res += out[t]
    return res


# ----------------------------------------------------------------------------------------------
# mesh3d: 3D kernel on a 3D mesh, summed along the sightline
# ----------------------------------------------------------------------------------------------
@numba.njit(parallel=True, cache=True, nogil=True)
def _mesh3d_kernel(u, v, s, h, w, npix, nz, bounds, cdf_coeffs):  # pragma: no cover - compiled
    """Deposit onto (thread, channel, z, y, x) meshes; return the mesh summed over threads.

    ``s`` and ``h`` are in units of the cell size along every axis (cubic cells). Kernels of at
    least one cell are sampled at cell centres (the paper's method), renormalised; narrower
    ones get exact separable fractions.
    """
    # long: a numba prange kernel; the deposit loop stays in one function for numba's parallel
    # loop fusion and thread-private meshes (see _fast_kernel).
    nthreads = bounds.size - 1
    nch = w.shape[0]
    out = np.zeros((nthreads, nch, nz, npix, npix))
    for t in numba.prange(nthreads):
        fx = np.empty(3)
        fy = np.empty(3)
        fz = np.empty(3)
        for i in range(bounds[t], bounds[t + 1]):
            ui = u[i]
            vi = v[i]
            si = s[i]
            hi = h[i]
            if (
                ui + hi <= 0.0 or ui - hi >= npix or vi + hi <= 0.0 or vi - hi >= npix
                or si + hi <= 0.0 or si - hi >= nz
            ):
                continue
            if hi < 1.0:
                # narrower than a cell: the exact fraction of the kernel in each cell row along
                # each axis from the 1D marginal CDF, their product per cell (at most 3 per axis),
                # so a particle straddling a face keeps exactly its inside part
                inv_h = 1.0 / hi
                jx = int(math.floor(ui - hi))
                jy = int(math.floor(vi - hi))
                jz = int(math.floor(si - hi))
                nx = int(math.floor(ui + hi)) - jx + 1
                ny = int(math.floor(vi + hi)) - jy + 1
                nzz = int(math.floor(si + hi)) - jz + 1
                prev = 0.0
                for k in range(nx):
                    c = _marginal_cdf((jx + k + 1 - ui) * inv_h, cdf_coeffs)
                    fx[k] = c - prev
                    prev = c
                prev = 0.0
                for k in range(ny):
                    c = _marginal_cdf((jy + k + 1 - vi) * inv_h, cdf_coeffs)
                    fy[k] = c - prev
                    prev = c
                prev = 0.0
                for k in range(nzz):
                    c = _marginal_cdf((jz + k + 1 - si) * inv_h, cdf_coeffs)
                    fz[k] = c - prev
                    prev = c
                for cz in range(max(0, -jz), min(nzz, nz - jz)):
                    for cy in range(max(0, -jy), min(ny, npix - jy)):
                        for cx in range(max(0, -jx), min(nx, npix - jx)):
                            frac = fz[cz] * fy[cy] * fx[cx]
                            for c in range(nch):
                                out[t, c, jz + cz, jy + cy, jx + cx] += w[c, i] * frac
                continue
            inv_h = 1.0 / hi
            ix0 = int(math.ceil(ui - hi - 0.5))
            ix1 = int(math.floor(ui + hi - 0.5))
            iy0 = int(math.ceil(vi - hi - 0.5))
            iy1 = int(math.floor(vi + hi - 0.5))
            iz0 = int(math.ceil(si - hi - 0.5))
            iz1 = int(math.floor(si + hi - 0.5))
            total = 0.0
            for iz in range(iz0, iz1 + 1):
                dz = iz + 0.5 - si
                for iy in range(iy0, iy1 + 1):
                    dy = iy + 0.5 - vi
                    for ix in range(ix0, ix1 + 1):
                        dx = ix + 0.5 - ui
                        q = math.sqrt(dx * dx + dy * dy + dz * dz) * inv_h
                        if q < 1.0:
                            a = 1.0 - q
                            total += a * a * a * a * (1.0 + 4.0 * q)
            if total <= 0.0:
                ix = int(math.floor(ui))
                iy = int(math.floor(vi))
                iz = int(math.floor(si))
                if 0 <= ix < npix and 0 <= iy < npix and 0 <= iz < nz:
                    for c in range(nch):
                        out[t, c, iz, iy, ix] += w[c, i]
                continue
            inv_total = 1.0 / total
            for iz in range(max(iz0, 0), min(iz1, nz - 1) + 1):
                dz = iz + 0.5 - si
                for iy in range(max(iy0, 0), min(iy1, npix - 1) + 1):
                    dy = iy + 0.5 - vi
                    for ix in range(max(ix0, 0), min(ix1, npix - 1) + 1):
                        dx = ix + 0.5 - ui
                        q = math.sqrt(dx * dx + dy * dy + dz * dz) * inv_h
                        if q < 1.0:
                            a = 1.0 - q
                            frac = a * a * a * a * (1.0 + 4.0 * q) * inv_total
                            for c in range(nch):
                                out[t, c, iz, iy, ix] += w[c, i] * frac
    res = np.zeros((nch, nz, npix, npix))
    for t in range(nthreads):
        res += out[t]
    return res


# ----------------------------------------------------------------------------------------------
# registry entries
# ----------------------------------------------------------------------------------------------
def _in_slab(z: np.ndarray, grid: MapGrid) -> np.ndarray:
    return np.abs(z) <= 0.5 * grid.depth_mpc


def _to_pixel_units(x: np.ndarray, grid: MapGrid) -> np.ndarray:
    return np.ascontiguousarray(x / grid.pixel_mpc + 0.5 * grid.npix, dtype=np.float64)


def _thread_bounds(n: int, num_threads: int) -> np.ndarray:
    nthreads = num_threads if num_threads > 0 else default_num_threads()
    # a few chunks per thread would balance better, but contiguous chunks keep memory local
    return _chunks(n, max(1, min(nthreads, max(n, 1))))


def _with_threads(num_threads: int, fn: Callable[[], np.ndarray]) -> np.ndarray:
    if num_threads <= 0:
        return fn()
    previous = numba.get_num_threads()
    numba.set_num_threads(min(num_threads, default_num_threads()))
    try:
        return fn()
    finally:
        numba.set_num_threads(previous)


@register_backend("fast")
def project_fast(x, y, z, support, weights, grid, num_threads=0):
    """Separable exact-marginal fractions below ``FAST_SEPARABLE_BELOW_PIX``, corrected midpoint
    rule per pixel above; see the module docstring."""
    pc, qc = _large_kernel_coefficients()
    tail = _cdf_tail_coefficients()
    w = np.ascontiguousarray(weights, dtype=np.float64)
    # per-thread stencil buffer for large kernels, (2 H + 2)^2 pixels of the largest one up to
    # FAST_BUFFER_MAX_PIX; still larger kernels evaluate their stencil twice instead
    h_max = min(float(support.max()) / grid.pixel_mpc if support.size else 0.0, FAST_BUFFER_MAX_PIX)
    side = int(math.ceil(2.0 * h_max)) + 2
    nbuf_large = side * side + FAST_FLAT_CHUNK if h_max >= FAST_SEPARABLE_BELOW_PIX else 1

    def run() -> np.ndarray:
        return _fast_kernel(
            x, y, z, support, w, grid.npix, grid.pixel_mpc, 0.5 * grid.depth_mpc, pc, qc, tail,
            FAST_SEPARABLE_BELOW_PIX, nbuf_large, numba.get_num_threads(),
        )

    return _with_threads(num_threads, run) / grid.pixel_area_mpc2


@register_backend("exact")
def project_exact(x, y, z, support, weights, grid, num_threads=0):
    """Exact projected kernel averaged over sub-pixels (the oracle); see the module docstring."""
    keep = _in_slab(z, grid)
    u = _to_pixel_units(x[keep], grid)
    v = _to_pixel_units(y[keep], grid)
    h = np.ascontiguousarray(support[keep] / grid.pixel_mpc)
    w = np.ascontiguousarray(weights[:, keep], dtype=np.float64)
    bounds = _thread_bounds(u.size, num_threads)
    out = _with_threads(num_threads, lambda: _exact_kernel(u, v, h, w, grid.npix, bounds, 4))
    return out / grid.pixel_area_mpc2


def mesh3d_deposit(x, y, z, support, weights, grid: MapGrid, num_threads: int = 0) -> np.ndarray:
    """Deposit particles on the 3D mesh of the slab (the paper's first step).

    Returns
    -------
    (C, nz, npix, npix) float64
        ``w`` per cell volume [w Mpc^-3], ``nz = round(depth / pixel)`` cubic cells of one pixel.
    """
    nz = max(1, int(round(grid.depth_mpc / grid.pixel_mpc)))
    cell = grid.pixel_mpc
    u = _to_pixel_units(x, grid)
    v = _to_pixel_units(y, grid)
    s = np.ascontiguousarray(z / cell + 0.5 * nz, dtype=np.float64)
    h = np.ascontiguousarray(support / cell, dtype=np.float64)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    bounds = _thread_bounds(u.size, num_threads)
    coeffs = tuple(float(c) for c in marginal_cdf_coefficients())
    mesh = _with_threads(num_threads, lambda: _mesh3d_kernel(u, v, s, h, w, grid.npix, nz, bounds, coeffs))
    return mesh / cell**3


@register_backend("mesh3d")
def project_mesh3d(x, y, z, support, weights, grid, num_threads=0):
    """3D mesh deposit summed along the sightline times the cell length; see the module docstring."""
    nz = max(1, int(round(grid.depth_mpc / grid.pixel_mpc)))
    cell = grid.pixel_mpc
    # particles far outside the slab cannot touch it
    keep = np.abs(z) < 0.5 * nz * cell + support
    mesh = mesh3d_deposit(x[keep], y[keep], z[keep], support[keep], weights[:, keep], grid, num_threads)
    return mesh.sum(axis=1) * cell


def project(
    x_mpc: np.ndarray,
    y_mpc: np.ndarray,
    z_mpc: np.ndarray,
    support_mpc: np.ndarray,
    weights: np.ndarray,
    grid: MapGrid,
    backend: str = "fast",
    num_threads: int = 0,
) -> np.ndarray:
    """Project SPH particles onto a map with the named backend.

    Parameters
    ----------
    x_mpc, y_mpc : (N,) float64
        Positions in the map plane, relative to the map centre [Mpc].
    z_mpc : (N,) float64
        Position along the sightline, relative to the slab's mid-plane [Mpc].
    support_mpc : (N,) float64
        Kernel support radius H [Mpc].
    weights : (C, N) or (N,) float64
        Per-particle quantity to spread (mass [Msun], or ``A_j m_j / rho_j`` for a field A).
    grid : MapGrid
        The map.
    backend : {"fast", "mesh3d", "exact"}
        Registered backend name (:data:`BACKENDS`).
    num_threads : int
        numba threads for this call; 0 keeps numba's current setting.

    Returns
    -------
    (C, npix, npix) float64, or (npix, npix) for 1D ``weights``
        Surface density [weight unit per Mpc^2], indexed ``[channel, iy, ix]``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown projection backend {backend!r}; known: {sorted(BACKENDS)}")
    x = np.ascontiguousarray(x_mpc, dtype=np.float64)
    y = np.ascontiguousarray(y_mpc, dtype=np.float64)
    z = np.ascontiguousarray(z_mpc, dtype=np.float64)
    support = np.ascontiguousarray(support_mpc, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    squeeze = w.ndim == 1
    w2 = w[None, :] if squeeze else w
    n = x.shape[0]
    if x.ndim != 1:
        raise ValueError(f"x_mpc has shape {x.shape}, expected (N,)")
    for name, arr in (("y_mpc", y), ("z_mpc", z), ("support_mpc", support)):
        if arr.shape != (n,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({n},) like x_mpc")
    if w2.ndim != 2 or w2.shape[1] != n:
        raise ValueError(f"weights has shape {w.shape}, expected ({n},) or (C, {n})")
    if n and (not np.all(support > 0)):
        raise ValueError("support_mpc must be > 0 for every particle")
    out = BACKENDS[backend](x, y, z, support, w2, grid, num_threads)
    return out[0] if squeeze else out
