"""Quality routes compiled for a router: candidates, their prices, and the rule (targets calibrated to a λ).

:func:`compile_quality_routes` checks a route table against the artifact's success heads once, when a
:class:`~router_ml.router.Router` is built; :meth:`QualityRoute.pick` then decides one prompt in microseconds.
The cost of a call is estimated from the prompt's length (one token per four characters) and the route's
``output_tokens``, at each candidate's prices in the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..exceptions import ConfigError
from ..route_table import estimate_tokens
from .policy import QualityStrategy, calibrate_lambda

if TYPE_CHECKING:
    from ..artifact.success_format import SavedSuccess
    from ..route_table import RouteTable

__all__ = ["Pick", "QualityRoute", "compile_quality_routes"]


@dataclass(frozen=True)
class Pick:
    """A quality route's choice for one prompt: the model, the fallbacks (by predicted success), each candidate's
    predicted success, and the expected USD cost of the call."""

    model: str
    fallbacks: tuple[str, ...]
    success: dict[str, float]
    expected_cost: float


@dataclass(frozen=True)
class QualityRoute:
    """One route's compiled strategy.

    Attributes:
        candidates (tuple[str, ...]): the candidate models.
        columns (np.ndarray): each candidate's column in the success heads' output.
        input_price, output_price (np.ndarray): USD per million tokens, per candidate.
        output_tokens (int): the route's typical completion length.
        rule (str): ``"tolerance"`` or ``"lambda"`` (targets are calibrated to a λ).
        value (float): the rule's number.
        calibrated (dict | None): for a target, what the λ measured on held-out outcomes.
    """

    candidates: tuple[str, ...]
    columns: np.ndarray
    input_price: np.ndarray
    output_price: np.ndarray
    output_tokens: int
    rule: str
    value: float
    calibrated: dict[str, float] | None = None

    def costs(self, prompt_tokens: float) -> np.ndarray:
        """Expected USD cost of one call to each candidate."""
        return (prompt_tokens * self.input_price + self.output_tokens * self.output_price) / 1e6

    def pick(self, success: np.ndarray, text: str) -> Pick:
        """The choice for one prompt from all models' predicted success (in the heads' column order); the same
        rule as :func:`~.policy.choose`, for one row without its batch machinery."""
        p = success[self.columns]
        costs = self.costs(estimate_tokens(text))
        by_cost = np.argsort(costs, kind="stable")  # the first of equal values wins: the cheaper
        if self.rule == "tolerance":
            chosen = int(by_cost[np.argmax(p[by_cost] >= p.max() - self.value - 1e-12)])
        else:
            gain = p - self.value * costs / max(float(costs.max()), 1e-300)
            chosen = int(by_cost[np.argmax(gain[by_cost])])
        order = [i for i in np.argsort(-p, kind="stable") if i != chosen]
        return Pick(
            model=self.candidates[chosen],
            fallbacks=tuple(self.candidates[i] for i in order),
            success={c: float(v) for c, v in zip(self.candidates, p, strict=True)},
            expected_cost=float(costs[chosen]),
        )


def _compile(
    label: str, strategy: QualityStrategy, routes: RouteTable, saved: SavedSuccess, oof: np.ndarray | None
) -> QualityRoute:
    known = [str(m) for m in saved.heads.models_]
    candidates = strategy.candidates or tuple(known)
    unknown = [c for c in candidates if c not in known]
    if unknown:
        raise ConfigError(
            f"{routes.source}: route {label!r} names candidates {unknown} that the success heads do not know; "
            f"they know {known}: train-outcomes on outcomes of those models, or remove them"
        )
    prices = [routes.price_of(c) for c in candidates]
    unpriced = [c for c, p in zip(candidates, prices, strict=True) if p is None]
    if unpriced:
        raise ConfigError(
            f'{routes.source}: route {label!r} has no price for {unpriced}; add [models."<name>"] with input_price '
            "and output_price (USD per million tokens)"
        )
    route = routes[label]
    compiled = QualityRoute(
        candidates=tuple(candidates),
        columns=np.array([known.index(c) for c in candidates]),
        input_price=np.array([p.input_price for p in prices]),  # type: ignore[union-attr]
        output_price=np.array([p.output_price for p in prices]),  # type: ignore[union-attr]
        output_tokens=route.output_tokens,
        rule=strategy.rule if strategy.rule in ("tolerance", "lambda") else "lambda",
        value=strategy.value,
    )
    if strategy.rule in ("tolerance", "lambda"):
        return compiled
    if oof is None or not len(oof):
        raise ConfigError(f"{routes.source}: route {label!r}: {strategy.rule} needs held-out outcomes in the artifact")
    typical = compiled.costs(250)  # the held-out prompts' lengths are not kept: a typical prompt's cost
    lam, measured = calibrate_lambda(
        oof[:, compiled.columns], saved.train_scores[:, compiled.columns], typical, strategy.rule, strategy.value
    )
    return QualityRoute(**{**compiled.__dict__, "value": lam, "calibrated": measured})


def compile_quality_routes(routes: RouteTable, saved: SavedSuccess | None) -> dict[str, QualityRoute]:
    """The quality routes of ``routes`` (by label), checked against the artifact's success heads.

    Raises:
        ConfigError: a quality route without success heads, an unknown or unpriced candidate, an unmet target.
    """
    out: dict[str, QualityRoute] = {}
    for label in routes.labels:
        strategy = routes.strategy_for(label)
        if strategy is None:
            continue
        if saved is None:
            raise ConfigError(
                f'{routes.source}: route {label!r} has strategy = "quality", but this artifact has no success '
                "heads; train them with `router-ml train-outcomes`, or remove the strategy"
            )
        out[label] = _compile(label, strategy, routes, saved, saved.train_oof)
    return out
