"""cmpipe.evaluation.metrics against analytic answers and independent implementations (SPEC section 6).

Every test names its oracle and tolerance. Statistical tests use fixed seeds and tolerances of
several standard deviations of the estimator, derived in the test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from cmpipe.evaluation.metrics import (
    Z_EDGES,
    aperture_mask,
    bias_and_correlation,
    coverage,
    cross_spectrum,
    fractional_error,
    k_bins,
    large_small_means,
    log_k_weights,
    mean_convergence,
    mass_fractional_error,
    max_coverage_deviation,
    power_spectrum,
    profile_summary,
    radial_bin_edges,
    radial_profile,
    rank_bin_probabilities,
    rank_histogram,
    rank_statistic,
    sample_variance_convergence,
    samples_to_converge,
    scale_split_k,
    standardized_error_histogram,
    standardized_errors,
    tarp_coverage,
    total_mass,
)

NPIX, PIX = 128, 0.05  # a 6.4 Mpc map


def _mode_indices(npix: int) -> np.ndarray:
    """Signed integer mode index of each FFT position, written out by hand (not fftfreq)."""
    return np.array([i if i < npix - npix // 2 else i - npix for i in range(npix)])


# --------------------------------------------------------------------------- spectra: binning


@pytest.mark.parametrize("npix", [8, 16, 17, 128])
def test_k_bins_counts_modes_inside_the_last_ring(npix: int) -> None:
    """Oracle: direct count of the grid modes with 0 < |m|^2 < (N//2 + 1/2)^2 (exact integers).

    Also: every ring's mean |k| lies within its ring [b - 1/2, b + 1/2) k_F, DC is -1.
    """
    k, bin_index, n_modes = k_bins(npix, PIX)
    m = _mode_indices(npix)
    k2 = m[:, None] ** 2 + m[None, :] ** 2
    n_bins = npix // 2
    inside = (k2 > 0) & (4 * k2 < (2 * n_bins + 1) ** 2)
    assert n_modes.sum() == inside.sum()
    assert np.array_equal(bin_index >= 0, inside)
    assert bin_index[0, 0] == -1
    k_fund = 2 * math.pi / (npix * PIX)
    b = np.arange(1, n_bins + 1)
    assert np.all((k / k_fund >= b - 0.5) & (k / k_fund < b + 0.5))


def _loop_power_spectrum(x: np.ndarray, pixel_mpc: float) -> np.ndarray:
    """Reference: explicit DFT matrix and a python loop over modes and rings (no np.fft)."""
    npix = x.shape[0]
    length = npix * pixel_mpc
    n = np.arange(npix)
    dft = np.exp(-2j * np.pi * np.outer(n, n) / npix)
    f = dft @ (x - x.mean()) @ dft.T
    m = _mode_indices(npix)
    n_bins = npix // 2
    sums = [0.0] * n_bins
    counts = [0] * n_bins
    for iy in range(npix):
        for ix in range(npix):
            k2 = int(m[iy]) ** 2 + int(m[ix]) ** 2
            for b in range(1, n_bins + 1):
                if (b - 0.5) ** 2 <= k2 < (b + 0.5) ** 2:  # exact in binary floats
                    sums[b - 1] += abs(f[iy, ix]) ** 2
                    counts[b - 1] += 1
    return np.array([s / c for s, c in zip(sums, counts)]) * length**2 / npix**4


def test_power_spectrum_matches_loop_reference() -> None:
    """Oracle: explicit-DFT python-loop spectrum of a 16 x 16 map; rtol 1e-12."""
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(16, 16))
    _, p = power_spectrum(x, 0.2)
    np.testing.assert_allclose(p, _loop_power_spectrum(x, 0.2), rtol=1e-12, atol=0)


def test_parseval_over_the_full_plane() -> None:
    """Oracle: Parseval, sum over non-DC modes of |F|^2 L^2 / N^4 = L^2 var(map) (ddof 0).

    Binned rings contribute sum_b P_b n_b; the corner modes beyond the last ring are computed
    here unbinned. rtol 1e-12.
    """
    rng = np.random.default_rng(1)
    x = rng.lognormal(size=(3, NPIX, NPIX))
    length = NPIX * PIX
    _, p = power_spectrum(x, PIX)
    _, bin_index, n_modes = k_bins(NPIX, PIX)
    f = np.fft.fft2(x)
    corner = (bin_index == -1)
    corner[0, 0] = False
    corner_power = (np.abs(f) ** 2 * corner).sum(axis=(-2, -1)) * length**2 / NPIX**4
    total = (p * n_modes).sum(axis=-1) + corner_power
    np.testing.assert_allclose(total, length**2 * x.var(axis=(-2, -1)), rtol=1e-12)


def test_white_noise_is_flat_at_variance_times_pixel_area() -> None:
    """Oracle: white noise of variance s^2 has P = s^2 pixel^2 in every ring.

    Ring b averages n_b modes in conjugate pairs: relative std sqrt(2 / n_b) per map. Mean over
    rings and 20 maps within 4 sigma; each ring within 5 sigma.
    """
    s, n_maps = 2.0, 20
    x = np.random.default_rng(2).normal(0.0, s, size=(n_maps, NPIX, NPIX))
    _, p = power_spectrum(x, PIX)
    _, _, n_modes = k_bins(NPIX, PIX)
    expected = s**2 * PIX**2
    rel_sigma = np.sqrt(2.0 / (n_modes * n_maps))
    per_ring = p.mean(axis=0) / expected - 1
    assert np.all(np.abs(per_ring) < 5 * rel_sigma)
    sigma_mean = np.sqrt((rel_sigma**2).sum()) / n_modes.size
    assert abs(per_ring.mean()) < 4 * sigma_mean


@pytest.mark.parametrize("mode", [1, 5, 30])
def test_plane_wave_puts_all_power_in_its_ring(mode: int) -> None:
    """Oracle: A cos(2 pi m x / L) has F = A N^2 / 2 at (+-m, 0), so P_m = A^2 L^2 / (2 n_m).

    Other rings: zero to 1e-20 relative. rtol 1e-12 on ring m.
    """
    amp = 1.7
    ix = np.arange(NPIX)
    x = np.broadcast_to(amp * np.cos(2 * np.pi * mode * ix / NPIX), (NPIX, NPIX))
    _, p = power_spectrum(x, PIX)
    _, _, n_modes = k_bins(NPIX, PIX)
    length = NPIX * PIX
    expected = amp**2 * length**2 / (2 * n_modes[mode - 1])
    np.testing.assert_allclose(p[mode - 1], expected, rtol=1e-12)
    others = np.delete(p, mode - 1)
    assert np.all(np.abs(others) < 1e-20 * p[mode - 1])


def test_cross_spectrum_of_a_map_with_itself_is_its_power() -> None:
    """Oracle: P_aa = P_a by definition; rtol 1e-12. Broadcasting (2, N, N) x (N, N)."""
    x = np.random.default_rng(3).normal(size=(2, 32, 32))
    _, p = power_spectrum(x, PIX)
    _, pxx = cross_spectrum(x, x, PIX)
    np.testing.assert_allclose(pxx, p, rtol=1e-12)
    _, pb = cross_spectrum(x, x[0], PIX)
    assert pb.shape == (2, 16)
    np.testing.assert_allclose(pb[0], p[0], rtol=1e-12)


def test_bias_and_correlation_exact_cases() -> None:
    """Oracles (1e-12): b(c x, x) = c; r(x, x) = 1; r(-x, x) = -1 with b = 1.

    Broadcast: gen (S, B, N, N) against true (B, N, N) gives (S, B, nbins).
    """
    rng = np.random.default_rng(4)
    true = rng.lognormal(size=(3, 64, 64))
    _, b, r = bias_and_correlation(2.5 * true, true, PIX)
    np.testing.assert_allclose(b, 2.5, rtol=1e-12)
    np.testing.assert_allclose(r, 1.0, rtol=1e-12)
    _, b, r = bias_and_correlation(-true, true, PIX)
    np.testing.assert_allclose(b, 1.0, rtol=1e-12)
    np.testing.assert_allclose(r, -1.0, rtol=1e-12)
    gen = true[None] + rng.normal(size=(5, 3, 64, 64))
    _, b, r = bias_and_correlation(gen, true, PIX)
    assert b.shape == r.shape == (5, 3, 32)
    assert np.all(np.abs(r) <= 1 + 1e-12)


def test_independent_fields_are_uncorrelated() -> None:
    """Oracle: r of independent Gaussian fields has mean 0 and std ~ sqrt(2 / n_modes)
    (modes come in conjugate pairs); each ring within 5 sigma (rings with >= 20 modes)."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, NPIX, NPIX))
    _, _, r = bias_and_correlation(a, b, PIX)
    _, _, n_modes = k_bins(NPIX, PIX)
    sel = n_modes >= 20
    assert np.all(np.abs(r[sel]) < 5 * np.sqrt(2.0 / n_modes[sel]))


def test_scale_split_and_large_small_means() -> None:
    """Oracles: k_s = sqrt(2 pi / L * pi / pixel) (1e-15); means of a step function exact."""
    assert scale_split_k(NPIX, PIX) == pytest.approx(
        math.sqrt(2 * math.pi / (NPIX * PIX) * math.pi / PIX), rel=1e-15
    )
    k = np.array([1.0, 2.0, 3.0, 4.0])
    values = np.array([[1.0, 3.0, 10.0, 20.0], [0.0, 0.0, 1.0, 1.0]])
    large, small = large_small_means(k, values, 3.0, weighting="uniform")
    np.testing.assert_array_equal(large, [2.0, 0.0])
    np.testing.assert_array_equal(small, [15.0, 1.0])
    large, small = large_small_means(k, values, 10.0)
    assert np.all(np.isnan(small)) and large.shape == (2,)
    # Log weighting: each ring weighs its width in ln k (edges at the ln-k midpoints), so a
    # ring at high k, among many, weighs less than one at low k.
    w = log_k_weights(k)
    lk = np.log(k)
    mid = 0.5 * (lk[1:] + lk[:-1])
    np.testing.assert_allclose(w, np.diff(np.concatenate([[2 * lk[0] - mid[0]], mid, [2 * lk[-1] - mid[-1]]])))
    large, small = large_small_means(k, values, 3.0)
    np.testing.assert_allclose(large, values[:, :2] @ w[:2] / w[:2].sum(), rtol=1e-14)
    np.testing.assert_allclose(small, values[:, 2:] @ w[2:] / w[2:].sum(), rtol=1e-14)
    assert w[0] > w[-1]


def test_power_spectrum_of_a_paper_sized_batch_runs() -> None:
    """Performance sanity (not timed): a (50, 2, 128, 128) batch; oracle: shapes."""
    x = np.random.default_rng(6).normal(size=(50, 2, NPIX, NPIX))
    k, p = power_spectrum(x, PIX)
    assert k.shape == (NPIX // 2,) and p.shape == (50, 2, NPIX // 2)
    assert np.all(np.isfinite(p))


# --------------------------------------------------------------------------- profiles


def _loop_profile(x: np.ndarray, pixel_mpc: float, edges: np.ndarray) -> np.ndarray:
    """Reference: python loop over pixels and annuli (centre i + 0.5 - N/2 pixels)."""
    npix = x.shape[0]
    sums = np.zeros(edges.size - 1)
    counts = np.zeros(edges.size - 1)
    for iy in range(npix):
        for ix in range(npix):
            r = math.hypot((ix + 0.5 - npix / 2) * pixel_mpc, (iy + 0.5 - npix / 2) * pixel_mpc)
            for b in range(edges.size - 1):
                if edges[b] <= r < edges[b + 1]:
                    sums[b] += x[iy, ix]
                    counts[b] += 1
    return sums / counts


def test_radial_profile_of_a_gaussian() -> None:
    """Oracles: the python-loop annulus mean (rtol 1e-12); f(r_mid) for a smooth f = exp(-r^2 /
    2 s^2) with s = 8 pixels (atol 0.01, f(0) = 1: curvature and pixel sampling)."""
    npix, pix, s = 64, 0.1, 0.8
    c = (np.arange(npix) + 0.5 - npix / 2) * pix
    r = np.hypot(c[:, None], c[None, :])
    f = np.exp(-(r**2) / (2 * s**2))
    edges = radial_bin_edges(npix, pix)
    assert edges.shape == (npix // 2 + 1,) and edges[-1] == pytest.approx(npix / 2 * pix)
    r_mid, prof = radial_profile(f, pix, edges)
    np.testing.assert_allclose(prof, _loop_profile(f, pix, edges), rtol=1e-12)
    np.testing.assert_allclose(prof, np.exp(-(r_mid**2) / (2 * s**2)), atol=0.01)


def test_radial_profile_constant_batch_and_empty_annuli() -> None:
    """Oracles: a constant map has a constant profile (1e-12) over a (3, 2) batch; an annulus
    with no pixel centre (inside the innermost centre at 0.707 pixel) is NaN."""
    x = np.full((3, 2, 32, 32), 4.0)
    r_mid, prof = radial_profile(x, 0.1)
    assert prof.shape == (3, 2, 16) and r_mid.shape == (16,)
    np.testing.assert_allclose(prof, 4.0, rtol=1e-12)
    _, prof = radial_profile(x[0, 0], 0.1, np.array([0.0, 0.05, 0.1, 0.5]))
    assert np.isnan(prof[0]) and np.allclose(prof[1:], 4.0)


def test_profile_summary_and_fractional_error() -> None:
    """Oracles: numpy mean and percentiles of a ramp (exact); (p - t)/t with NaN at t = 0 and
    no warning (warnings are errors)."""
    profiles = np.arange(101, dtype=float)[:, None] * np.ones((1, 4))
    summary = profile_summary(profiles)
    np.testing.assert_allclose(summary["mean"], 50.0)
    np.testing.assert_allclose(summary["p16"], 16.0)
    np.testing.assert_allclose(summary["p84"], 84.0)
    err = fractional_error(np.array([1.1, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(err[0], 0.1, rtol=1e-12)
    assert np.isnan(err[1]) and np.isnan(err[2])


# --------------------------------------------------------------------------- mass


def test_total_mass_of_uniform_map_and_aperture() -> None:
    """Oracles: uniform v gives v N^2 pixel^2 (1e-12); an aperture of R = 1 Mpc on a 0.01 Mpc
    grid gives pi R^2 v (1 %)."""
    v, npix, pix = 3.0, 512, 0.01
    x = np.full((2, npix, npix), v)
    np.testing.assert_allclose(total_mass(x, pix**2), v * npix**2 * pix**2, rtol=1e-12)
    mask = aperture_mask(npix, pix, 1.0)
    np.testing.assert_allclose(total_mass(x, pix**2, mask), math.pi * v, rtol=0.01)


def test_mass_fractional_error_with_per_map_radii() -> None:
    """Oracles: pred = 1.1 true gives 0.1 for any aperture (1e-12); per-map radii equal one
    scalar-radius call per map (exact); samples (S, B) broadcast against truths (B,)."""
    rng = np.random.default_rng(7)
    true = rng.lognormal(size=(3, 64, 64))
    np.testing.assert_allclose(mass_fractional_error(1.1 * true, true, 0.1), 0.1, rtol=1e-12)
    pred = true * rng.uniform(0.5, 1.5, size=true.shape)
    radii = np.array([0.5, 1.0, 2.0])
    per_map = mass_fractional_error(pred, true, 0.1, radii)
    one_by_one = [mass_fractional_error(pred[i], true[i], 0.1, radii[i]) for i in range(3)]
    np.testing.assert_array_equal(per_map, one_by_one)
    samples = np.stack([pred, 1.1 * true])
    err = mass_fractional_error(samples, true, 0.1, radii)
    assert err.shape == (2, 3)
    np.testing.assert_array_equal(err[0], per_map)


# --------------------------------------------------------------------------- posterior


def test_standardized_errors_of_a_calibrated_posterior() -> None:
    """Oracle: truth and S samples exchangeable N(mu, sigma) draws give z = sqrt(1 + 1/S)
    t_{S-1}: mean 0, std sqrt((1 + 1/S)(S - 1)/(S - 3)) (1.031 for S = 50). 40000 pixels:
    mean within 0.03 (~6 sigma), std within 0.03 (~8 sigma)."""
    rng = np.random.default_rng(8)
    n_s = 50
    mu = rng.normal(0.0, 5.0, size=(200, 200))
    sigma = rng.uniform(0.5, 2.0, size=mu.shape)
    truth = mu + sigma * rng.normal(size=mu.shape)
    samples = mu + sigma * rng.normal(size=(n_s, *mu.shape))
    z = standardized_errors(samples, truth)
    assert z.shape == mu.shape
    assert abs(z.mean()) < 0.03
    assert z.std() == pytest.approx(math.sqrt((1 + 1 / n_s) * (n_s - 1) / (n_s - 3)), abs=0.03)


def test_standardized_errors_mask_and_histogram() -> None:
    """Oracles: constant pixels (std 0 <= min_std) are NaN; the histogram ignores NaN and clips
    out-of-range values into the outer bins (exact counts)."""
    samples = np.zeros((4, 2, 2))
    samples[:, 0, 0] = [0.0, 1.0, 2.0, 3.0]
    z = standardized_errors(samples, np.zeros((2, 2)))
    assert np.isfinite(z[0, 0]) and np.isnan(z[1:, :]).all() and np.isnan(z[0, 1])
    counts = standardized_error_histogram(np.array([-9.0, 0.05, np.nan, 7.0, 4.99]))
    assert counts.sum() == 4 and counts[0] == 1 and counts[-1] == 2 and counts[50] == 1
    assert standardized_error_histogram(np.array([-9.0, 0.05]), clip=False).sum() == 1
    assert Z_EDGES.shape == (101,)


def test_sample_variance_convergence() -> None:
    """Oracles: the deviation is exactly 0 at n = S; for Gaussian pixels var_n / var_S has
    relative spread ~ sqrt(2 / n), so the 95th-percentile deviation decreases (n = 5 > 20 > 45)
    and the mean ratio is 1 within 0.05 (4096 pixels)."""
    rng = np.random.default_rng(9)
    samples = 10.0 + rng.normal(size=(50, 64, 64))
    n, dev, mean_ratio = sample_variance_convergence(samples)
    assert n[0] == 2 and n[-1] == 50
    assert dev[-1] == pytest.approx(0.0, abs=1e-12)
    assert dev[n == 5][0] > dev[n == 20][0] > dev[n == 45][0]
    np.testing.assert_allclose(mean_ratio[n >= 10], 1.0, atol=0.05)
    # the running-sum variance equals numpy's (rtol 1e-10)
    n2, _, ratio2 = sample_variance_convergence(samples, n_values=[7])
    expected = (samples[:7].var(axis=0, ddof=1) / samples.var(axis=0, ddof=1)).mean()
    assert n2.tolist() == [7] and ratio2[0] == pytest.approx(expected, rel=1e-10)


def test_mean_convergence_does_not_converge_by_construction() -> None:
    """Oracles: the old criterion is 0 at n = S whatever the posterior; the new one is not. A
    calibrated Gaussian posterior (truth and samples from N(mu, 1)) has median ratio about
    1.48 / sqrt(n) (median |N(0, 1)| = 0.674): with S = 8 and a 0.2 threshold it never converges;
    with S = 400 it converges near n = 55 (between 25 and 150). A posterior whose mean misses the
    truth by 5 sigma converges at once (more samples cannot help); the ratio is not 0 at n = S."""
    rng = np.random.default_rng(11)
    mu = rng.normal(size=(48, 48))
    truth = mu + rng.normal(size=mu.shape)
    few = mu + rng.normal(size=(8, *mu.shape))
    _, dev, _ = sample_variance_convergence(few)
    assert dev[-1] == pytest.approx(0.0, abs=1e-12)  # the old criterion: converged at n = S by construction
    n, ratio, mc, err = mean_convergence(few, truth)
    assert ratio[-1] > 0.3 and samples_to_converge(n, ratio, 0.2) is None
    many = mu + rng.normal(size=(400, *mu.shape))
    n, ratio, mc, err = mean_convergence(many, truth)
    assert 25 <= samples_to_converge(n, ratio, 0.2) <= 150
    np.testing.assert_allclose(mc, np.median(many.std(axis=0, ddof=1)) / np.sqrt(n), rtol=1e-12)
    biased = truth + 5.0 + rng.normal(size=(8, *mu.shape))
    n, ratio, _, _ = mean_convergence(biased, truth)
    assert samples_to_converge(n, ratio, 0.2) == 2 and ratio[-1] > 0
    # a mask selects pixels (e.g. within R200m)
    mask = np.zeros(mu.shape, bool)
    mask[:4] = True
    _, _, _, err_mask = mean_convergence(few, truth, mask, n_values=[8])
    assert err_mask[0] == pytest.approx(np.median(np.abs(few.mean(0) - truth)[mask]), rel=1e-12)


def test_samples_to_converge() -> None:
    """Oracle: hand-made deviation curves (exact)."""
    n = np.array([2, 3, 4, 5, 6])
    assert samples_to_converge(n, np.array([0.5, 0.1, 0.3, 0.05, 0.02]), 0.2) == 5
    assert samples_to_converge(n, np.array([0.1, 0.1, 0.1, 0.1, 0.0]), 0.2) == 2
    assert samples_to_converge(n, np.array([0.1, 0.1, 0.1, 0.1, 0.3]), 0.2) is None


# --------------------------------------------------------------------------- calibration


def _gaussian_posteriors(scale: float, n_cases: int = 2000, n_samples: int = 99, dim: int = 0):
    """Truths and samples of a known Gaussian model: mu ~ N(0, 3), truth ~ N(mu, 1), samples
    ~ N(mu, scale). scale = 1 is the true posterior."""
    rng = np.random.default_rng(10)
    shape = (n_cases,) if dim == 0 else (n_cases, dim)
    mu = rng.normal(0.0, 3.0, size=shape)
    truth = mu + rng.normal(size=shape)
    samples = mu + scale * rng.normal(size=(n_samples, *shape))
    return samples, truth


def test_coverage_and_ranks_of_the_true_posterior() -> None:
    """Oracles: Weibull quantiles make coverage unbiased, so each level is within 4 binomial
    sigma sqrt(a (1 - a) / B); ranks are uniform on 0..S: chi-square p > 0.001 (seed fixed)."""
    samples, truth = _gaussian_posteriors(1.0)
    levels = np.linspace(0.1, 0.9, 9)
    observed = coverage(samples, truth, levels)
    tol = 4 * np.sqrt(levels * (1 - levels) / truth.size)
    assert np.all(np.abs(observed - levels) < tol)
    assert max_coverage_deviation(levels, observed) < tol.max()
    ranks = rank_statistic(samples, truth)
    assert ranks.min() >= 0 and ranks.max() <= samples.shape[0]
    counts = rank_histogram(ranks, samples.shape[0], 10)
    expected = rank_bin_probabilities(samples.shape[0], 10) * ranks.size
    assert counts.sum() == ranks.size
    assert stats.chisquare(counts, expected).pvalue > 0.001


@pytest.mark.parametrize(("scale", "sign"), [(2.0, 1), (0.5, -1)])
def test_coverage_detects_mis_dispersed_posteriors(scale: float, sign: int) -> None:
    """Oracle: samples 2x too wide cover more than nominal at every level, 0.5x less
    (analytic gaps 2 Phi(z_a s) - 1 - a are >= 0.05 at every level; required > 0.03)."""
    samples, truth = _gaussian_posteriors(scale)
    levels = np.linspace(0.1, 0.9, 9)
    gap = coverage(samples, truth, levels) - levels
    assert np.all(sign * gap > 0.03)


def test_rank_histogram_bins() -> None:
    """Oracle: rank j goes to bin j * n_bins // (S + 1); probabilities sum to 1 (exact)."""
    counts = rank_histogram(np.arange(6), 5, 3)
    np.testing.assert_array_equal(counts, [2, 2, 2])
    probs = rank_bin_probabilities(50, 4)
    assert probs.sum() == pytest.approx(1.0) and probs.shape == (4,)


def test_tarp_on_calibrated_and_under_dispersed_posteriors() -> None:
    """Oracle: TARP (Lemos et al. 2023) ecp = alpha for the true posterior: max deviation
    < 0.08 (B = 400, one-sample std of ecp <= 0.025, averaged over 10 references); 0.5x
    under-dispersed samples give a max deviation > 0.15 (measured 0.23)."""
    samples, truth = _gaussian_posteriors(1.0, n_cases=400, n_samples=100, dim=16)
    alpha, ecp = tarp_coverage(samples, truth, n_refs=10, seed=0)
    assert alpha.shape == ecp.shape == (101,)
    assert ecp[0] == 0.0 and ecp[-1] == pytest.approx(1.0, abs=0.02)
    assert max_coverage_deviation(alpha, ecp) < 0.08
    samples, truth = _gaussian_posteriors(0.5, n_cases=400, n_samples=100, dim=16)
    alpha, ecp = tarp_coverage(samples, truth, n_refs=10, seed=0)
    assert max_coverage_deviation(alpha, ecp) > 0.15


def test_tarp_accepts_map_shaped_inputs() -> None:
    """Oracle: maps (S, B, C, N, N) flatten to D = C N N; same result as pre-flattened (1e-12)."""
    rng = np.random.default_rng(11)
    samples = rng.normal(size=(20, 30, 2, 4, 4))
    truth = rng.normal(size=(30, 2, 4, 4))
    _, ecp = tarp_coverage(samples, truth, n_refs=3, seed=1)
    _, ecp_flat = tarp_coverage(samples.reshape(20, 30, -1), truth.reshape(30, -1), 3, 1)
    np.testing.assert_allclose(ecp, ecp_flat, atol=1e-12)
