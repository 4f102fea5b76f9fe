"""Statistics on scipy: A/B design and analysis, intervals, tests, and the gate's evidence.

Pure functions: no pytest, no I/O. Every p-value and quantile comes from an exact distribution
function (no hard-coded z values, no bucketed p-values): scipy's, or, for what a gate run with
history needs (normal and binomial tails, the Student-t quantile), the standard-library ones in
:mod:`.exact`, checked against scipy's, so that a gate run does not pay for importing
``scipy.stats`` (1-2 s and about 90 MiB). Each function documents
its formula and a reference. Results are frozen dataclasses with ``to_dict()`` returning plain
builtins (non-finite floats become ``None`` so the output is valid JSON).

Conventions shared by every function here:

* "arm 1" is the reference (control, baseline, history) and "arm 2" the new one (treatment,
  candidate, current run). Differences are ``p2 - p1`` and ``z`` is positive when arm 2 is
  higher.
* ``alternative`` is ``"two-sided"``, ``"greater"`` (H1: arm 2 is higher) or ``"less"``
  (H1: arm 2 is lower), the names scipy uses.
* A result is significant when ``p_value <= alpha`` (reject at level alpha).
* Out-of-range input raises :class:`ValueError` naming the argument and the reason.

scipy and numpy are imported inside the functions that use them, so that importing this module
(from the plugin or the ``llmeval`` command) stays cheap. What a gate run with history computes
(the grid prior, its predictive tables, the discrete Bonferroni threshold, the CMH test and the
run dispersion) is plain Python over lists and imports neither: numpy alone would add about
0.1 s and 15 MiB to the run; ``grid_predictive_cdf_table`` is the numpy view of
``grid_predictive_cdf_rows`` for other callers.

Modules, by section: :mod:`.intervals` (Wilson, Clopper-Pearson, Newcombe paired), :mod:`.tests`
(two-proportion z, McNemar, sign, Fisher, flip count), :mod:`.design` (sample size, SRM, variant
assignment), :mod:`.experiment` (A/B analysis, ``ABTestDesigner``), :mod:`.history` (history
bounds, prediction bound), :mod:`.empirical_bayes` (beta-binomial prior), :mod:`.multiplicity`
(Holm, Benjamini-Hochberg, Tarone, discrete Bonferroni), :mod:`.stratified` (CMH, dispersion).
Every public name is re-exported here.
"""

from __future__ import annotations

from pytest_llmeval.stats.design import SRMResult, assign_variant, sample_size, srm_check
from pytest_llmeval.stats.empirical_bayes import (
    DEFAULT_GRID,
    BetaBinomialFit,
    GridPrior,
    beta_binomial_cdf,
    fit_beta_binomial,
    fit_grid_prior,
    grid_predictive_cdf_rows,
    grid_predictive_cdf_table,
    predictive_cdf_table,
)
from pytest_llmeval.stats.experiment import (
    LOWER_IS_BETTER,
    ABTestDesigner,
    ExperimentAnalysis,
    GuardrailResult,
    analyze_experiment,
)
from pytest_llmeval.stats.history import (
    HistoryBounds,
    PredictionBound,
    history_bounds,
    prediction_bound,
)
from pytest_llmeval.stats.intervals import paired_difference_ci, proportion_ci
from pytest_llmeval.stats.multiplicity import (
    DiscreteBonferroni,
    benjamini_hochberg,
    discrete_bonferroni,
    holm,
    tarone,
)
from pytest_llmeval.stats.stratified import CMHResult, Dispersion, cmh_drop_test, run_dispersion
from pytest_llmeval.stats.tests import (
    FisherResult,
    McNemarResult,
    TwoProportionResult,
    binomial_drop_test,
    fisher_exact,
    flip_count_test,
    mcnemar,
    repeat_drop_test,
    sign_test,
    two_proportion_test,
)

__all__ = [
    "DEFAULT_GRID",
    "LOWER_IS_BETTER",
    "ABTestDesigner",
    "BetaBinomialFit",
    "CMHResult",
    "DiscreteBonferroni",
    "Dispersion",
    "ExperimentAnalysis",
    "FisherResult",
    "GridPrior",
    "GuardrailResult",
    "HistoryBounds",
    "McNemarResult",
    "PredictionBound",
    "SRMResult",
    "TwoProportionResult",
    "analyze_experiment",
    "assign_variant",
    "benjamini_hochberg",
    "beta_binomial_cdf",
    "binomial_drop_test",
    "cmh_drop_test",
    "discrete_bonferroni",
    "fisher_exact",
    "fit_beta_binomial",
    "fit_grid_prior",
    "flip_count_test",
    "grid_predictive_cdf_rows",
    "grid_predictive_cdf_table",
    "history_bounds",
    "holm",
    "mcnemar",
    "paired_difference_ci",
    "prediction_bound",
    "predictive_cdf_table",
    "proportion_ci",
    "repeat_drop_test",
    "run_dispersion",
    "sample_size",
    "sign_test",
    "srm_check",
    "tarone",
    "two_proportion_test",
]
