"""Feature-engineering steps the search may add to a pipeline, fitted per fold like the rest.

Two are our own (scikit-learn has no skew-aware transform and no correlation pruning); they
hold only numbers and numpy arrays, so skops stores them as data, and registry/loading.py
trusts them by name.
"""

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

PREFIX = "fe."  # trial parameters of feature engineering: fe.transform, fe.interactions, fe.selection
TRANSFORMS = ("none", "log", "power")
INTERACTIONS = ("none", "pairs")
SELECTIONS = ("none", "correlated", "importance")
SKEW_THRESHOLD = 0.75  # |sample skewness| above this: the column is transformed
CORRELATION_THRESHOLD = 0.95  # |r| above this with a kept column: the column is dropped


def signed_log(x: np.ndarray) -> np.ndarray:
    """log1p of the magnitude with the sign kept: defined for every real value."""
    return np.sign(x) * np.log1p(np.abs(x))


class SkewCorrection(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """A log (`method="log"`) or Yeo-Johnson power (`method="power"`) transform of the columns
    whose skewness in the fitted rows passes `threshold`; the other columns pass unchanged."""

    def __init__(self, method: str = "log", threshold: float = SKEW_THRESHOLD):
        self.method = method
        self.threshold = threshold

    def fit(self, X, y=None):
        if self.method not in ("log", "power"):
            raise ValueError(f"unknown skew correction '{self.method}'")
        X = validate_data(self, X, dtype=np.float64, reset=True)
        with np.errstate(all="ignore"):
            skew = np.nan_to_num(stats.skew(X, axis=0), nan=0.0)
        self.skewed_ = np.abs(skew) > self.threshold
        self.lambdas_ = np.ones(X.shape[1])
        if self.method == "power" and self.skewed_.any():
            self.lambdas_[self.skewed_] = _yeojohnson_lambdas(X[:, self.skewed_])
        return self

    def transform(self, X):
        check_is_fitted(self, "skewed_")
        X = validate_data(self, X, dtype=np.float64, reset=False, copy=True)
        for column in np.flatnonzero(self.skewed_):
            if self.method == "log":
                X[:, column] = signed_log(X[:, column])
            else:
                with np.errstate(over="ignore"):
                    X[:, column] = stats.yeojohnson(X[:, column], self.lambdas_[column])
        return X


def _yeojohnson_lambdas(X: np.ndarray) -> np.ndarray:
    """Per column, the Yeo-Johnson lambda of highest likelihood on a grid of step 0.05 in
    [-3, 3]: all columns at once, ~15x faster than scipy's search column by column (a fit
    per CV fold of every trial that chooses it), and as good for making a column symmetric."""
    grid = np.linspace(-3, 3, 121)
    positive = X >= 0
    logs = np.where(positive, np.log1p(np.abs(X)), -np.log1p(np.abs(X)))
    jacobian = logs.sum(axis=0)  # d/dx of the transform, logged, is (lambda - 1) * this
    best, best_llf = np.ones(X.shape[1]), np.full(X.shape[1], -np.inf)
    with np.errstate(all="ignore"):
        for lam in grid:
            y = np.where(positive, _power(X + 1, lam), -_power(1 - X, 2 - lam))
            llf = -0.5 * len(X) * np.log(y.var(axis=0)) + (lam - 1) * jacobian
            better = np.isfinite(llf) & (llf > best_llf)
            best[better], best_llf[better] = lam, llf[better]
    return best


def _power(base: np.ndarray, lam: float) -> np.ndarray:
    """(base**lam - 1) / lam, and log(base) at lam = 0; NaN where base is not positive."""
    base = np.where(base > 0, base, np.nan)
    return np.log(base) if abs(lam) < 1e-12 else (base ** lam - 1) / lam


class DropCorrelated(SelectorMixin, BaseEstimator):
    """Keeps a column only if its |correlation| with every column kept before it stays at or
    under `threshold`: of a group of near-copies, the first survives."""

    def __init__(self, threshold: float = CORRELATION_THRESHOLD):
        self.threshold = threshold

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64, reset=True)
        with np.errstate(all="ignore"):
            # A constant column has no correlation (NaN): it is not a copy of anything.
            corr = np.nan_to_num(np.abs(np.corrcoef(X, rowvar=False)), nan=0.0)
        corr = np.atleast_2d(corr)
        keep = np.ones(X.shape[1], dtype=bool)
        for column in range(X.shape[1]):
            if keep[column]:
                later = np.arange(X.shape[1]) > column
                keep[later & (corr[column] > self.threshold)] = False
        self.support_ = keep
        return self

    def _get_support_mask(self):
        check_is_fitted(self, "support_")
        return self.support_
