"""The Wendland C2 SPH kernel in 3D and its exact line-of-sight integral.

Conventions (Dehnen & Aly 2012; ``../shared/NOTES-SPH.md``): ``H`` is the kernel's compact
support radius, ``W(r, H) = 0`` for ``r >= H``. Files that store SWIFT's ``h`` are converted at
the reader (``H = 1.936492 h`` for 3D C2); inside cmpipe every smoothing length is ``H``.

* 3D: ``W(r, H) = 21 / (2 pi H^3) (1 - q)^4 (1 + 4 q)``, ``q = r / H < 1`` [1 / length^3].
* Projected: ``W2(R, H) = F(R / H) / H^2`` [1 / length^2] with the closed form
  ``F(R) = 7 / (4 pi) [s (4 - 28 R^2 - 81 R^4) + 15 R^4 (6 + R^2) ln((1 + s) / R)]``,
  ``s = sqrt(1 - R^2)``, peak ``F(0) = 7 / pi``. The closed form cancels catastrophically as
  ``R -> 1``, so the hot loops use a table uniform in ``q^2`` (:func:`projected_table`) with
  linear interpolation, built from the closed form where it is accurate and from a series
  expansion of the integral near the edge.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "SWIFT_H_TO_SUPPORT",
    "PYNBODY_H_TO_SUPPORT",
    "PROJECTED_TABLE_SIZE",
    "wendland_c2_3d",
    "wendland_c2_projected",
    "projected_table",
    "projected_from_table",
    "marginal_cdf_coefficients",
    "projected_laplacian_table",
    "wendland_c2_marginal_cdf",
]

#: SWIFT / swiftsimio store h = 2 sigma; the 3D C2 kernel's support radius is H = 1.936492 h.
SWIFT_H_TO_SUPPORT = 1.936492
#: pynbody stores h = H / 2.
PYNBODY_H_TO_SUPPORT = 2.0
#: Entries of the projected-kernel table, uniform in q^2 = (R / H)^2 on [0, 1].
PROJECTED_TABLE_SIZE = 4096

_C3D = 21.0 / (2.0 * np.pi)
_C2D = 7.0 / (4.0 * np.pi)


def wendland_c2_3d(r: np.ndarray | float, support: np.ndarray | float) -> np.ndarray:
    """3D Wendland C2 kernel ``W(r, H)`` [1 / length^3], zero for ``r >= H``.

    Parameters
    ----------
    r : array_like
        Distance from the particle [any length unit].
    support : array_like
        Compact support radius ``H`` [same unit as ``r``], broadcast against ``r``.
    """
    r = np.asarray(r, dtype=np.float64)
    support = np.asarray(support, dtype=np.float64)
    q = r / support
    w = np.where(q < 1.0, (1.0 - q) ** 4 * (1.0 + 4.0 * q), 0.0)
    return _C3D * w / support**3


def _projected_closed_form(radius: np.ndarray) -> np.ndarray:
    """Closed-form ``F(R)`` for ``0 <= R < 1`` (unit support), float64."""
    r2 = radius * radius
    s = np.sqrt(1.0 - r2)
    out = s * (4.0 - 28.0 * r2 - 81.0 * r2 * r2)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_term = np.where(radius > 0, 15.0 * r2 * r2 * (6.0 + r2) * np.log((1.0 + s) / np.where(radius > 0, radius, 1.0)), 0.0)
    return _C2D * (out + log_term)


def _projected_quadrature(radius: np.ndarray, n: int = 64) -> np.ndarray:
    """``F(R)`` by Gauss-Legendre quadrature of the 3D kernel along the sightline.

    Accurate everywhere (the integrand is a polynomial in ``sqrt(R^2 + l^2)`` on
    ``0 <= l <= sqrt(1 - R^2)``); used near ``R = 1`` where the closed form cancels.
    """
    x, wq = np.polynomial.legendre.leggauss(n)
    half = np.sqrt(np.clip(1.0 - radius * radius, 0.0, None))[:, None]
    ell = 0.5 * half * (x[None, :] + 1.0)
    q = np.sqrt(radius[:, None] ** 2 + ell * ell)
    w3 = np.where(q < 1.0, (1.0 - q) ** 4 * (1.0 + 4.0 * q), 0.0)
    # integral over l in (-half, half) = 2 * integral over (0, half)
    return 2.0 * _C3D * np.sum(w3 * wq[None, :], axis=1) * 0.5 * half[:, 0]


def wendland_c2_projected(r_perp: np.ndarray | float, support: np.ndarray | float) -> np.ndarray:
    """Exact line-of-sight integral of the 3D Wendland C2 kernel [1 / length^2].

    Parameters
    ----------
    r_perp : array_like
        Projected distance from the particle [any length unit].
    support : array_like
        Compact support radius ``H`` [same unit].

    Returns
    -------
    ndarray
        ``F(R / H) / H^2``, zero for ``R >= H``. Uses the closed form for ``R / H < 0.9`` and
        64-point Gauss-Legendre quadrature of the 3D kernel beyond, where the closed form loses
        precision.
    """
    r_perp = np.asarray(r_perp, dtype=np.float64)
    support = np.asarray(support, dtype=np.float64)
    rr, hh = np.broadcast_arrays(r_perp / support, support)
    rr = np.ascontiguousarray(rr).ravel()
    out = np.zeros_like(rr)
    inner = rr < 0.9
    outer = (rr >= 0.9) & (rr < 1.0)
    out[inner] = _projected_closed_form(rr[inner])
    if np.any(outer):
        out[outer] = _projected_quadrature(rr[outer])
    return (out / np.ascontiguousarray(hh).ravel() ** 2).reshape(np.shape(hh))


@lru_cache(maxsize=4)
def projected_table(size: int = PROJECTED_TABLE_SIZE) -> np.ndarray:
    """``F`` tabulated uniformly in ``q^2`` on ``[0, 1]`` (unit support), read-only.

    Entry ``i`` holds ``F(sqrt(i / (size - 1)))``; the last entry is 0.
    """
    q2 = np.linspace(0.0, 1.0, size)
    table = wendland_c2_projected(np.sqrt(q2), 1.0)
    table[-1] = 0.0
    table.setflags(write=False)
    return table


def projected_from_table(q2: np.ndarray | float, table: np.ndarray | None = None) -> np.ndarray:
    """Linear interpolation of the projected-kernel table at ``q^2 = (R / H)^2``; 0 beyond 1."""
    table = projected_table() if table is None else table
    q2 = np.asarray(q2, dtype=np.float64)
    return np.interp(q2, np.linspace(0.0, 1.0, table.size), table, right=0.0)


@lru_cache(maxsize=1)
def marginal_cdf_coefficients() -> np.ndarray:
    """Power-series coefficients ``a_k`` of the 3D C2 kernel's 1D marginal CDF (unit support).

    The marginal density along one axis is ``p(x) = 2 pi int_|x|^1 W(r) r dr``, a polynomial in
    ``|x|``; its CDF is ``0.5 + sign(x) sum_k a_k |x|^k`` for ``|x| <= 1``. Derived here with exact
    polynomial algebra, not typed in.
    """
    P = np.polynomial.polynomial
    integrand = P.polymul(P.polymul(P.polypow([1.0, -1.0], 4), [1.0, 4.0]), [0.0, 1.0])  # (1-r)^4 (1+4r) r
    anti = P.polyint(integrand)
    density = -_C3D * 2.0 * np.pi * anti  # p(x) = 2 pi C3D [A(1) - A(|x|)]
    density[0] += _C3D * 2.0 * np.pi * P.polyval(1.0, anti)
    coeffs = P.polyint(density)  # int_0^|x| p
    coeffs.setflags(write=False)
    return np.ascontiguousarray(coeffs)


def wendland_c2_marginal_cdf(x: np.ndarray | float, support: np.ndarray | float) -> np.ndarray:
    """Fraction of a 3D C2 kernel's mass at coordinate below ``x`` along one axis.

    Parameters
    ----------
    x : array_like
        Coordinate relative to the particle [any length unit].
    support : array_like
        Support radius ``H`` [same unit].
    """
    t = np.clip(np.asarray(x, dtype=np.float64) / np.asarray(support, dtype=np.float64), -1.0, 1.0)
    half = np.polynomial.polynomial.polyval(np.abs(t), marginal_cdf_coefficients())
    return 0.5 + np.sign(t) * half


@lru_cache(maxsize=4)
def projected_laplacian_table(size: int = PROJECTED_TABLE_SIZE) -> np.ndarray:
    """2D Laplacian of the projected kernel, ``(d2/dX2 + d2/dY2) F`` in units of ``1/H^4``
    (unit support), tabulated uniformly in ``q^2`` on ``[0, 1]`` like :func:`projected_table`.

    With ``s = q^2``, ``lap F = 4 F'(s) + 4 s F''(s)``; the derivatives come from the closed form
    sampled 64 times finer than the table (second-order finite differences). It feeds the
    midpoint rule's leading correction: the mean of ``F`` over a pixel of side ``d`` (in units of
    ``H``) is ``F(centre) + d^2 / 24 lap F(centre) + O(d^4)``.
    """
    fine = np.linspace(0.0, 1.0, 64 * (size - 1) + 1)
    f = wendland_c2_projected(np.sqrt(fine), 1.0)
    d1 = np.gradient(f, fine, edge_order=2)
    d2 = np.gradient(d1, fine, edge_order=2)
    lap = (4.0 * d1 + 4.0 * fine * d2)[::64].copy()
    lap[-1] = 0.0
    lap.setflags(write=False)
    return lap
