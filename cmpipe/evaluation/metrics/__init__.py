"""Evaluation metrics (SPEC section 6): spectra, profiles, masses, posterior summaries, calibration.

Plain numpy: no Ray, no torch. Maps are ``(..., N, N)`` arrays on a grid whose halo centre is
the geometric centre of the map (pixel centres at ``(i + 0.5 - N / 2) * pixel_mpc`` [Mpc]).
"""

from cmpipe.evaluation.metrics.calibration import (
    DEFAULT_LEVELS,
    coverage,
    max_coverage_deviation,
    rank_bin_probabilities,
    rank_histogram,
    rank_statistic,
    tarp_coverage,
)
from cmpipe.evaluation.metrics.mass import aperture_mask, mass_fractional_error, total_mass
from cmpipe.evaluation.metrics.posterior import (
    Z_EDGES,
    mean_convergence,
    sample_variance_convergence,
    samples_to_converge,
    standardized_error_histogram,
    standardized_errors,
)
from cmpipe.evaluation.metrics.profiles import (
    fractional_error,
    pixel_radii_mpc,
    profile_summary,
    radial_bin_edges,
    radial_profile,
)
from cmpipe.evaluation.metrics.spectra import (
    bias_and_correlation,
    cross_spectrum,
    k_bins,
    large_small_means,
    log_k_weights,
    power_spectrum,
    scale_split_k,
)

__all__ = [
    "DEFAULT_LEVELS",
    "Z_EDGES",
    "aperture_mask",
    "bias_and_correlation",
    "coverage",
    "cross_spectrum",
    "fractional_error",
    "k_bins",
    "large_small_means",
    "log_k_weights",
    "mass_fractional_error",
    "mean_convergence",
    "max_coverage_deviation",
    "pixel_radii_mpc",
    "power_spectrum",
    "profile_summary",
    "radial_bin_edges",
    "radial_profile",
    "rank_bin_probabilities",
    "rank_histogram",
    "rank_statistic",
    "sample_variance_convergence",
    "samples_to_converge",
    "scale_split_k",
    "standardized_error_histogram",
    "standardized_errors",
    "tarp_coverage",
]
