"""Gradient-boosted tree models: LambdaMART ranking, direction and return models, seed 004's
"dollar profit" objective, the position rules, and the fitted model that checkpoints as text.

Libraries: LightGBM 4.7 (``lightgbm``) and XGBoost 3.2, CPU build (``xgboost-cpu``; 3.4.1 needs
Python >= 3.12 and the kit is on 3.11). The learning-to-rank model is LightGBM's ``lambdarank``
(LambdaMART, Burges 2010): LightGBM is maintained by Microsoft, ships CPU wheels with no extra
system dependency, has a ``deterministic`` mode, and its ranker takes query groups as plain sizes;
XGBoost's ``rank:ndcg`` would do as well, and one library is enough for the ranker.

The models of the catalogue (:data:`TREE_MODELS`; :mod:`kit.models.catalogue` lists them):

======================  ===========  ==============  ===============================================
name                    library      task            position / use
======================  ===========  ==============  ===============================================
``lambdamart``          lightgbm     rank            quantile legs of the score (Poh et al., 2021)
``ranker_regression``   lightgbm     cs_regression   the same rows, L2 on the next-period return
``lgbm_direction``      lightgbm     classification  ``2 p - 1``
``xgb_direction``       xgboost      classification  ``2 p - 1``
``lgbm_return``         lightgbm     regression      ``tanh(y_hat / scale)``
``xgb_return``          xgboost      regression      ``tanh(y_hat / scale)``
``lgbm_dollar_profit``  lightgbm     dollar_profit   ``tanh(score)`` (seed 004's objective)
``xgb_dollar_profit``   xgboost      dollar_profit   ``tanh(score)``
======================  ===========  ==============  ===============================================

Position rules (documented, used by :mod:`kit.training.trees`):

- classification (probability p of an up move): ``position = 2 p - 1`` (:func:`positions_from_probability`);
- regression (prediction y_hat): ``position = tanh(y_hat / scale)`` with ``scale`` the root mean
  square of the model's validation-block predictions (:func:`positions_from_prediction`; the RMS, not
  the std, so that a nearly constant non-zero prediction does not saturate every position at +-1);
- dollar profit (raw score s): ``position = tanh(s)``, the surrogate's own position;
- ranker / cross-sectional regressor: scores go to
  :func:`kit.features.cross_section.quantile_legs` (top quantile +1, bottom -1).

Seeding: LightGBM runs with ``deterministic=True``, ``force_row_wise=True``, fixed ``num_threads``
and ``seed``; XGBoost with ``seed`` and fixed ``nthread`` (``hist`` is deterministic on CPU). The
same inputs and seed give bit-identical scores (tested).

Checkpoints: a :class:`TreeModel` is saved as its booster's own text (LightGBM
``model_to_string``, XGBoost JSON) inside the kit's safe checkpoint format
(:func:`kit.models.checkpoints.save_tree`), never as a pickle.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "TASKS",
    "RANK_TASKS",
    "LIBRARIES",
    "TREE_MODELS",
    "TreeConfig",
    "TreeModel",
    "PositionStack",
    "cuda_available",
    "xgb_device",
    "n_threads",
    "dollar_profit",
    "dollar_profit_grad_hess",
    "lgb_dollar_profit_objective",
    "xgb_dollar_profit_objective",
    "positions_from_probability",
    "positions_from_prediction",
    "lgb_params",
    "xgb_params",
]

TASKS = ("classification", "regression", "dollar_profit")
"""Tasks of the pooled daily models (one row per date and symbol)."""
RANK_TASKS = ("rank", "cs_regression")
"""Tasks of the cross-sectional models (one row per rebalance date and symbol, grouped by date)."""
LIBRARIES = ("lightgbm", "xgboost")

TREE_MODELS = {
    "lambdamart": ("LambdaMART (LightGBM)", "lightgbm", "rank"),
    "ranker_regression": ("Pointwise regression ranker (LightGBM)", "lightgbm", "cs_regression"),
    "lgbm_direction": ("LightGBM direction", "lightgbm", "classification"),
    "xgb_direction": ("XGBoost direction", "xgboost", "classification"),
    "lgbm_return": ("LightGBM return", "lightgbm", "regression"),
    "xgb_return": ("XGBoost return", "xgboost", "regression"),
    "lgbm_dollar_profit": ("LightGBM dollar profit", "lightgbm", "dollar_profit"),
    "xgb_dollar_profit": ("XGBoost dollar profit", "xgboost", "dollar_profit"),
}
"""name -> (report label, library, task) of every tree model of the catalogue."""


@dataclass
class TreeConfig:
    """A tree model's configuration (what a checkpoint's ``config`` holds).

    Attributes
    ----------
    model : catalogue name (:data:`TREE_MODELS`). library : ``lightgbm`` or ``xgboost``.
    task : one of :data:`TASKS` or :data:`RANK_TASKS`. n_features : number of inputs.
    horizon : label horizon in trading days (daily models) or 0 (cross-sectional models: the next
        rebalance date). rebalance_freq : ``"M"`` etc. for cross-sectional models, else ``""``.
    n_quantiles : relevance grades of the ranker and quantiles of its book (0 for daily models).
    params : library parameters after defaults. n_estimators, early_stopping_rounds : boosting
    rounds and patience. hessian_floor : of the dollar-profit objective.
    """

    model: str
    library: str
    task: str
    n_features: int
    horizon: int = 1
    rebalance_freq: str = ""
    n_quantiles: int = 0
    params: dict = field(default_factory=dict)
    n_estimators: int = 500
    early_stopping_rounds: int = 50
    hessian_floor: float = 0.1

    def __post_init__(self):
        if self.library not in LIBRARIES:
            raise ValueError(f"library must be one of {LIBRARIES}, got {self.library!r}")
        if self.task not in TASKS + RANK_TASKS:
            raise ValueError(f"task must be one of {TASKS + RANK_TASKS}, got {self.task!r}")
        if self.task in RANK_TASKS and self.library != "lightgbm":
            raise ValueError(f"the {self.task} task is implemented with lightgbm, got library={self.library!r}")
        for name in ("n_features", "n_estimators", "early_stopping_rounds"):
            v = getattr(self, name)
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.hessian_floor > 0:
            raise ValueError(f"hessian_floor must be > 0, got {self.hessian_floor!r}")

    def to_dict(self) -> dict:
        """Plain dict (JSON-able; the checkpoint's ``config``)."""
        return dataclasses.asdict(self)


class TreeModel:
    """A fitted booster with its configuration; ``predict(X)`` gives the model's scores.

    Scores: P(up) for classification, the predicted target for regression, the raw margin for the
    dollar-profit objective and the ranking score for the ranker (higher = better), using the first
    ``best_iteration`` trees (the early-stopping choice).

    Parameters
    ----------
    booster : ``lightgbm.Booster`` or ``xgboost.Booster``.
    config : :class:`TreeConfig`.
    best_iteration : number of trees used for prediction (>= 1).
    feature_names : the F input names, in column order.
    n_threads : threads for prediction.
    """

    def __init__(self, booster, config: TreeConfig, best_iteration: int, feature_names=(), n_threads: int = 1):
        if int(best_iteration) < 1:
            raise ValueError(f"best_iteration must be >= 1, got {best_iteration!r}")
        self.booster = booster
        self.config = config
        self.best_iteration = int(best_iteration)
        self.feature_names = [str(n) for n in feature_names]
        self.n_threads = int(n_threads)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores ``(R,)`` float64 of rows ``X`` ``(R, F)`` (float32 or float64).

        Raises
        ------
        ValueError
            ``X`` does not have the model's number of features.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.config.n_features:
            raise ValueError(f"X must be (rows, {self.config.n_features}), got {X.shape}")
        if len(X) == 0:
            return np.empty(0)
        if self.config.library == "lightgbm":
            return np.asarray(self.booster.predict(X, num_iteration=self.best_iteration, num_threads=self.n_threads), dtype="float64")
        import xgboost as xgb

        margin = self.config.task == "dollar_profit"
        d = xgb.DMatrix(X, nthread=self.n_threads)
        return np.asarray(self.booster.predict(d, iteration_range=(0, self.best_iteration), output_margin=margin), dtype="float64")

    def to_text(self) -> str:
        """The booster as text: LightGBM ``model_to_string`` (the best iteration's trees), XGBoost
        JSON (``save_raw("json")``, all trees; :attr:`best_iteration` is kept beside it)."""
        if self.config.library == "lightgbm":
            return self.booster.model_to_string(num_iteration=self.best_iteration)
        return bytes(self.booster.save_raw("json")).decode("utf-8")

    @classmethod
    def from_text(cls, text: str, config: TreeConfig, best_iteration: int, feature_names=(), n_threads: int = 1) -> TreeModel:
        """Rebuild from :meth:`to_text` (no pickle: the libraries parse their own text formats).

        Raises
        ------
        ValueError
            The text is not a model of the configured library.
        """
        try:
            if config.library == "lightgbm":
                import lightgbm as lgb

                booster = lgb.Booster(model_str=text)
            else:
                import xgboost as xgb

                booster = xgb.Booster()
                booster.load_model(bytearray(text.encode("utf-8")))
        except Exception as exc:  # the libraries raise their own error types
            raise ValueError(f"not a {config.library} model text: {type(exc).__name__}: {str(exc)[:200]}") from None
        return cls(booster, config, best_iteration, feature_names, n_threads)

    def __repr__(self) -> str:  # pragma: no cover - display only
        return f"TreeModel({self.config.model}: {self.config.library} {self.config.task}, {self.best_iteration} trees)"


@dataclass
class PositionStack:
    """A stacked combination of position models (seed 004's tree + LSTM): ``members`` name -> model
    (a torch position model or a :class:`TreeModel`) and ``weights`` name -> convex weight, fitted on
    validation blocks only (:func:`kit.training.trees.walk_forward_stack`). The members read
    different inputs (windows of DMN features, rows of tabular features), so the stack is a record
    of what was combined, loaded from its checkpoint; positions come from the walk-forward."""

    members: dict
    weights: dict
    method: str = "nnls"


# ------------------------------------------------------------------------------------------------
# devices and threads
# ------------------------------------------------------------------------------------------------


def n_threads(requested: int | None = None) -> int:
    """Thread count for the libraries: ``requested`` if > 0, else ``min(2, cpus)``."""
    return int(requested) if requested else max(1, min(2, os.cpu_count() or 1))


def cuda_available() -> bool:
    """True when the installed XGBoost was built with CUDA and a CUDA device is visible (torch)."""
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA", False):
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - torch is a kit dependency
        return False


def xgb_device(device: str = "auto") -> dict:
    """XGBoost device parameters: ``{"tree_method": "hist", "device": "cuda" | "cpu"}``.

    ``"auto"`` picks ``cuda`` when :func:`cuda_available`, else ``cpu``. (XGBoost >= 2 spells the
    seed's ``tree_method="gpu_hist"`` as ``tree_method="hist", device="cuda"``.) LightGBM always
    runs on the CPU here (its GPU needs a custom build).

    Raises
    ------
    ValueError
        ``device`` unknown, or ``"cuda"`` requested where it is not available.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not cuda_available():
        raise ValueError("device='cuda' requested but XGBoost has no CUDA build or no CUDA device is visible")
    use = device == "cuda" or (device == "auto" and cuda_available())
    return {"tree_method": "hist", "device": "cuda" if use else "cpu"}


# ------------------------------------------------------------------------------------------------
# the dollar-profit objective (seed 004)
# ------------------------------------------------------------------------------------------------


def dollar_profit(score: np.ndarray, returns: np.ndarray) -> float:
    """Mean profit per unit notional of positions ``tanh(score)``: ``mean(tanh(s) * r)``; ``(R,)`` in."""
    return float(np.mean(np.tanh(np.asarray(score, dtype="float64")) * np.asarray(returns, dtype="float64")))


def dollar_profit_grad_hess(score: np.ndarray, returns: np.ndarray, hessian_floor: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and (floored) hessian of the seed-004 "dollar profit" loss per row.

    The seed maximises profit = position x return. With ``position = s`` (the raw score) the loss
    ``-s r`` is linear: hessian 0, and the Newton step of gradient boosting (leaf value
    ``-sum g / sum h``) is undefined. The smooth surrogate used here is ``position = tanh(s)``:

    ``L(s) = -tanh(s) r``,
    ``g = dL/ds = -r (1 - tanh^2 s)``,
    ``h = d^2L/ds^2 = 2 r tanh(s) (1 - tanh^2 s)``.

    ``h`` is negative wherever the position already agrees with the return's sign (the loss is
    concave there), which would make Newton steps ascend; the hessian passed to the booster is
    ``max(h, hessian_floor)`` (a positive floor, i.e. a damped gradient step of size
    ``1 / hessian_floor`` where the curvature is not positive). The gradient is exact (tested
    against finite differences). ``returns`` should be of unit scale (the walk-forward divides them
    by their training-block standard deviation; a positive rescaling leaves the minimiser unchanged)
    so that the floor and the learning rate mean the same thing for any asset.

    Parameters
    ----------
    score : (R,) raw scores; returns : (R,) returns (or scaled returns) of the rows.
    hessian_floor : > 0.

    Returns
    -------
    (grad, hess): two (R,) float64 arrays; ``hess >= hessian_floor``.

    Raises
    ------
    ValueError
        ``hessian_floor <= 0`` or shapes differ.
    """
    if not hessian_floor > 0:
        raise ValueError(f"hessian_floor must be > 0, got {hessian_floor!r}")
    s = np.asarray(score, dtype="float64")
    r = np.asarray(returns, dtype="float64")
    if s.shape != r.shape:
        raise ValueError(f"score shape {s.shape} != returns shape {r.shape}")
    t = np.tanh(s)
    sech2 = 1.0 - t * t
    grad = -r * sech2
    hess = 2.0 * r * t * sech2
    return grad, np.maximum(hess, hessian_floor)


def lgb_dollar_profit_objective(hessian_floor: float = 0.1):
    """The dollar-profit objective as a LightGBM callable ``(preds, dataset) -> (grad, hess)``;
    the dataset's label holds the (scaled) returns. See :func:`dollar_profit_grad_hess`."""

    def objective(preds, dataset):
        return dollar_profit_grad_hess(preds, dataset.get_label(), hessian_floor)

    return objective


def xgb_dollar_profit_objective(hessian_floor: float = 0.1):
    """The dollar-profit objective as an XGBoost callable ``(predt, dmatrix) -> (grad, hess)``;
    the DMatrix label holds the (scaled) returns. See :func:`dollar_profit_grad_hess`."""

    def objective(predt, dmatrix):
        return dollar_profit_grad_hess(predt, dmatrix.get_label(), hessian_floor)

    return objective


# ------------------------------------------------------------------------------------------------
# positions
# ------------------------------------------------------------------------------------------------


def positions_from_probability(p) -> np.ndarray:
    """``2 p - 1``: a probability of an up move to a position in [-1, 1] (any shape, float64).

    Raises
    ------
    ValueError
        A probability outside [0, 1].
    """
    p = np.asarray(p, dtype="float64")
    if (p[np.isfinite(p)] < 0).any() or (p[np.isfinite(p)] > 1).any():
        raise ValueError(f"probabilities must lie in [0, 1]; got range [{np.nanmin(p)}, {np.nanmax(p)}]")
    return 2.0 * p - 1.0


def positions_from_prediction(pred, scale: float) -> np.ndarray:
    """``tanh(pred / scale)``: a predicted return (or normalised return) to a position in (-1, 1).

    Raises
    ------
    ValueError
        ``scale`` not positive and finite.
    """
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be positive and finite, got {scale!r}")
    return np.tanh(np.asarray(pred, dtype="float64") / scale)


# ------------------------------------------------------------------------------------------------
# library parameters
# ------------------------------------------------------------------------------------------------


def lgb_params(task: str, seed: int, threads: int, params: dict | None = None) -> dict:
    """LightGBM parameters of a task: shallow trees (15 leaves, 100 rows per leaf), learning rate
    0.05, L2 1, deterministic row-wise histograms, fixed seed and threads; ``params`` override."""
    base = {
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": 100,
        "lambda_l2": 1.0,
        "feature_fraction": 1.0,
        "bagging_fraction": 1.0,
        "verbose": -1,
        "seed": int(seed),
        "num_threads": int(threads),
        "deterministic": True,
        "force_row_wise": True,
    }
    if task == "classification":
        base.update(objective="binary", metric="binary_logloss")
    elif task in ("regression", "cs_regression"):
        base.update(objective="regression", metric="l2")
    elif task == "dollar_profit":
        base.update(metric="None")
    elif task == "rank":
        base.update(objective="lambdarank", metric="ndcg")
    else:
        raise ValueError(f"unknown task {task!r}")
    return {**base, **(params or {})}


def xgb_params(task: str, seed: int, threads: int, device: str = "auto", params: dict | None = None) -> dict:
    """XGBoost parameters of a task: depth 4, eta 0.05, ``min_child_weight`` 10, L2 1, ``hist`` on
    the device of :func:`xgb_device`, fixed seed and threads; ``params`` override."""
    base = {
        "eta": 0.05,
        "max_depth": 4,
        "min_child_weight": 10.0,
        "lambda": 1.0,
        "subsample": 1.0,
        "seed": int(seed),
        "nthread": int(threads),
        **xgb_device(device),
    }
    if task == "classification":
        base.update(objective="binary:logistic", eval_metric="logloss")
    elif task in ("regression", "cs_regression"):
        base.update(objective="reg:squarederror", eval_metric="rmse")
    elif task == "dollar_profit":
        base.update(base_score=0.0, disable_default_eval_metric=1)
    elif task == "rank":
        base.update(objective="rank:ndcg", eval_metric="ndcg")
    else:
        raise ValueError(f"unknown task {task!r}")
    return {**base, **(params or {})}
