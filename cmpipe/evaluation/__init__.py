"""Evaluation: per-image metrics, halo-level summaries, baselines, the report and the comparison.

- :mod:`.metrics`: spectra, profiles, masses, posterior summaries, calibration (plain numpy);
- :mod:`.image`: every metric of one test image (a row of the Parquet tables);
- :mod:`.halo_stats`: summaries over halos with bootstrap intervals;
- :mod:`.baselines`: the trivial baselines (mass only, per-pixel regression);
- :mod:`.report`: the paper's figures, Table 1 and the summaries of one run;
- :mod:`.compare`: several runs side by side on their common images.
"""
