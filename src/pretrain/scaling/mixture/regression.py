"""The target's components as functions of the mix, fitted on the proxies, and how well that predicts.

Two models per component:

- `LogLinearLaw` (Data Mixing Laws, Ye et al. 2024): L(w) = c + exp(k + t·w), least squares from a few starts
  (a small ridge on t: with the shares summing to 1 a common shift of t is a change of k);
- `GradientBoosted` (RegMix): LightGBM with small-data settings (shallow trees, few samples per leaf).

`MixtureModel` fits both on every component, keeps for each the one with the smaller leave-one-out error (the
mixture research: per-component fits predict well, LOO Spearman 0.66-0.98, the aggregate fitted directly does
not), and predicts the target as the recipe's weighted mean of the predicted components. `cross_validate` is the
leave-one-out check reported as `cv_spearman`: the rank correlation between each proxy's measured target and the
one predicted by models fitted without it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

LAW, GBM = "loglinear", "lightgbm"
KINDS = (LAW, GBM)


class LogLinearLaw:
    """L(w) = c + exp(k + t·w) for one component."""

    smooth = True

    def __init__(self, ridge: float = 1e-3, starts: int = 3, seed: int = 0):
        self.ridge, self.starts, self.seed = ridge, starts, seed
        self.params: np.ndarray | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogLinearLaw:
        rng = np.random.default_rng(self.seed)
        n, d = X.shape
        spread = float(y.max() - y.min()) + 1e-3
        lam = np.sqrt(self.ridge * max(float(y.var()), 1e-12))  # the ridge in units of the component's spread

        def residuals(p):
            return np.concatenate([p[0] + np.exp(p[1] + X @ p[2:]) - y, lam * p[2:]])

        def jacobian(p):
            e = np.exp(p[1] + X @ p[2:])
            J = np.zeros((n + d, 2 + d))
            J[:n, 0], J[:n, 1], J[:n, 2:] = 1.0, e, e[:, None] * X
            J[n:, 2:] = lam * np.eye(d)
            return J

        best = None
        for start in range(self.starts):
            c0 = y.min() - (0.5 if start % 2 == 0 else 0.1) * spread - 0.2 * (start // 2)
            p0 = np.concatenate([[c0, np.log(max(y.mean() - c0, 1e-3))], rng.normal(0, 0.5, d)])
            lower, upper = [-np.inf, -20.0] + [-30.0] * d, [float(y.min()), 5.0] + [30.0] * d
            p0 = np.clip(p0, np.array(lower) + 1e-9, np.array(upper) - 1e-9)
            fit = optimize.least_squares(
                residuals, p0, jac=jacobian, method="trf", max_nfev=300, bounds=(lower, upper)
            )
            if best is None or fit.cost < best.cost:
                best = fit
        self.params = best.x
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        p = self.params
        return p[0] + np.exp(p[1] + np.atleast_2d(X) @ p[2:])


class GradientBoosted:
    """LightGBM regression of one component on the shares (small-data settings)."""

    smooth = False

    def __init__(self, seed: int = 0, n_estimators: int = 200):
        self.kwargs = dict(
            n_estimators=n_estimators,
            learning_rate=0.05,
            num_leaves=4,
            min_child_samples=3,
            min_data_in_bin=1,
            reg_lambda=1.0,
            verbose=-1,
            random_state=seed,
            n_jobs=1,
        )

    def fit(self, X: np.ndarray, y: np.ndarray) -> GradientBoosted:
        import lightgbm  # 0.5 s to import: only a mixture search needs it

        self.model = lightgbm.LGBMRegressor(**self.kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.model.predict(np.atleast_2d(X))


def make(kind: str):
    return LogLinearLaw() if kind == LAW else GradientBoosted()


def loo_predictions(kind: str, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each proxy's component predicted by a `kind` model fitted on the other proxies."""
    out = np.empty(len(X))
    for i in range(len(X)):
        keep = np.arange(len(X)) != i
        out[i] = make(kind).fit(X[keep], y[keep]).predict(X[i : i + 1])[0]
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(stats.spearmanr(a, b).statistic)


@dataclass
class MixtureModel:
    """One fitted model per component (the kind with the smaller LOO error), and the cross-validation."""

    weights: np.ndarray  # the target's component weights
    kinds: list[str] = field(default_factory=list)
    models: list = field(default_factory=list)
    cv: dict = field(default_factory=dict)

    @property
    def smooth(self) -> bool:
        return all(m.smooth for m in self.models)

    def predict_components(self, X: np.ndarray) -> np.ndarray:
        return np.stack([m.predict(X) for m in self.models], axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The predicted target of each row of `X` (n x sources)."""
        return self.predict_components(X) @ self.weights


def fit_mixture_model(
    X: np.ndarray, Y: np.ndarray, weights: np.ndarray, components: list[str], kinds: tuple[str, ...] = KINDS
) -> MixtureModel:
    """Fit every component of `Y` (proxies x components) on the shares `X` (proxies x sources) with each of
    `kinds`, keep the best by leave-one-out MAE per component, and record the cross-validation:
    `cv = {"spearman", "mae", "per_kind": {kind: spearman}, "components": {name: {"kind", "spearman", "mae"}},
    "loo_target": [...]}`."""
    target = Y @ weights
    loo = {
        kind: np.stack([loo_predictions(kind, X, Y[:, j]) for j in range(Y.shape[1])], 1) for kind in kinds
    }
    model = MixtureModel(weights)
    chosen = np.empty_like(Y)
    per_component = {}
    for j, name in enumerate(components):
        errors = {kind: float(np.mean(np.abs(loo[kind][:, j] - Y[:, j]))) for kind in kinds}
        kind = min(errors, key=errors.get)
        chosen[:, j] = loo[kind][:, j]
        model.kinds.append(kind)
        model.models.append(make(kind).fit(X, Y[:, j]))
        per_component[name] = {"kind": kind, "spearman": spearman(chosen[:, j], Y[:, j]), "mae": errors[kind]}
    predicted = chosen @ weights
    model.cv = {
        "spearman": spearman(predicted, target),
        "mae": float(np.mean(np.abs(predicted - target))),
        "per_kind": {kind: spearman(loo[kind] @ weights, target) for kind in kinds},
        "components": per_component,
        "loo_target": predicted.tolist(),
    }
    return model
