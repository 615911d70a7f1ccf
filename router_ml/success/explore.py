"""Exploration: send a small, known share of a quality route's requests to another candidate, and log its odds.

A router only learns about the models it sends prompts to. With ``explore = ε`` (a route-table key, or
``serve --explore``), each quality-routed request is, with probability ε, sent to a candidate drawn uniformly
from those whose expected cost is within ``explore_max_price`` (USD per call; the policy's own choice is always
among them). The chosen model's probability under this policy, its *propensity*, is logged with the outcome:

- the policy's choice ``g``: ``P(g) = 1 − ε + ε / m``;
- any other eligible candidate: ``ε / m``, where ``m`` counts the eligible candidates, ``g`` included.

Retraining weighs outcomes by the inverse of the propensity, and off-policy evaluation uses it to estimate what
another router would have done on the same traffic (:mod:`router_ml.success.offpolicy`). Exploration is decided
in-process (a seeded generator, a few microseconds), is off by default, and never applies to a session's pinned
turns, a forced route or model, or a category route.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..exceptions import ConfigError

__all__ = ["EXPLORE_KEYS", "Exploration"]

EXPLORE_KEYS = ("explore", "explore_max_price")


@dataclass(frozen=True)
class Exploration:
    """How often a quality route explores, and the dearest exploratory call it may make.

    Attributes:
        rate (float): the share of quality-routed requests that explore, from 0 (off, the default) to 1.
        max_price (float | None): an exploratory call's expected cost may not exceed this, in USD; ``None``: no
            ceiling.
    """

    rate: float = 0.0
    max_price: float | None = None

    def __post_init__(self) -> None:
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
            raise ConfigError(f"explore must be a share from 0 to 1 (e.g. 0.05), got {rate!r}")
        ceiling = self.max_price
        bad = isinstance(ceiling, bool) or not isinstance(ceiling, int | float) or not math.isfinite(ceiling)
        if ceiling is not None and (bad or ceiling <= 0):
            raise ConfigError(f"explore_max_price must be a positive number of USD per call, got {ceiling!r}")

    @classmethod
    def from_dict(cls, spec: dict[str, Any], where: str) -> Exploration:
        """The exploration a route table's top-level keys ask for (off when neither key is given)."""
        try:
            return cls(spec.get("explore", 0.0), spec.get("explore_max_price"))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The TOML keys of this setting (none when off and without a ceiling)."""
        out: dict[str, Any] = {"explore": self.rate} if self.rate else {}
        return out | ({"explore_max_price": self.max_price} if self.max_price is not None else {})

    def eligible(self, greedy: int, costs: np.ndarray) -> list[int]:
        """The candidates an exploratory draw picks among: those within the price ceiling, and ``greedy``."""
        return [i for i, c in enumerate(costs) if self.max_price is None or c <= self.max_price or i == greedy]

    def probabilities(self, greedy: int, costs: np.ndarray) -> np.ndarray:
        """Each candidate's probability of being called first under this policy (what :meth:`choose` samples)."""
        out = np.zeros(len(costs))
        eligible = self.eligible(greedy, costs)
        out[eligible] = self.rate / len(eligible)
        out[greedy] += 1.0 - self.rate
        return out

    def choose(self, greedy: int, costs: np.ndarray, rng: random.Random) -> tuple[int, float, bool]:
        """The candidate to call (an index into ``costs``), its propensity, and whether it was explored.

        Args:
            greedy (int): the policy's own choice.
            costs (np.ndarray): each candidate's expected cost of this call, USD.
            rng (random.Random): the router's generator (seeded for reproducible runs).
        """
        if not self.rate:
            return greedy, 1.0, False
        eligible = self.eligible(greedy, costs)
        m = len(eligible)
        chosen = eligible[rng.randrange(m)] if rng.random() < self.rate else greedy
        share = self.rate / m
        return chosen, (1.0 - self.rate + share) if chosen == greedy else share, chosen != greedy
