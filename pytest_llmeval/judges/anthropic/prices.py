"""Model prices and the cost of a judge's token usage (USD per million tokens)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmeval.core.verdict import Usage

_DATE_SUFFIX = re.compile(r"-\d{8}$")


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model (cache write = 5-minute TTL write)."""

    input: float
    output: float
    cache_write: float
    cache_read: float


PRICES_AS_OF = "2026-11"
"""When :data:`DEFAULT_PRICES` was checked against https://platform.claude.com/docs/en/about-claude/pricing."""

DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-haiku-4-5": ModelPrice(1.0, 5.0, 1.25, 0.10),
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4-6": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-5": ModelPrice(2.0, 10.0, 2.50, 0.20),
    "claude-opus-4-5": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-6": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-7": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-8": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-5": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-1": ModelPrice(15.0, 75.0, 18.75, 1.50),
    "claude-opus-4": ModelPrice(15.0, 75.0, 18.75, 1.50),
    "claude-fable-5": ModelPrice(10.0, 50.0, 12.50, 1.00),
    "claude-mythos-5": ModelPrice(10.0, 50.0, 12.50, 1.00),
    "claude-fable-5-1": ModelPrice(10.0, 50.0, 12.50, 0.25),
    "claude-mythos-5-1": ModelPrice(10.0, 50.0, 12.50, 0.25),
}
"""Standard (non-batch) list prices, USD per million tokens, for the models whose price was
verified on the official pricing page. Models with prompt-length price tiers (e.g. Haiku 5.5)
and models not listed have no entry: :func:`estimate_cost` then returns ``None`` rather than a
guess. Override or extend with :func:`load_prices`."""

BATCH_DISCOUNT = 0.5
"""The Message Batches API bills input and output at 50% of the standard price."""

_PRICE_FIELDS = ("input", "output", "cache_write", "cache_read")


def load_prices(
    source: Mapping[str, Mapping[str, float]] | str | os.PathLike[str] | None = None,
) -> dict[str, ModelPrice]:
    """The default price table with the user's overrides applied.

    ``source`` is a mapping or the path of a JSON file of the shape
    ``{"model-id": {"input": 1.0, "output": 5.0, "cache_write": 1.25, "cache_read": 0.1}}``
    (USD per million tokens; every field required). Raises ``ValueError`` naming the model and
    field for a malformed entry.
    """
    table = dict(DEFAULT_PRICES)
    if source is None:
        return table
    if isinstance(source, Mapping):
        data: Any = source
        origin = "price table"
    else:
        origin = str(source)
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{origin}: cannot read price table: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{origin}: expected an object mapping model ids to prices")
    for model, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"{origin}: model {model!r}: expected an object of prices")
        values: list[float] = []
        for name in _PRICE_FIELDS:
            value = entry.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"{origin}: model {model!r}: {name!r} must be a non-negative number "
                    "(USD per million tokens)"
                )
            values.append(float(value))
        unknown = set(entry) - set(_PRICE_FIELDS)
        if unknown:
            raise ValueError(f"{origin}: model {model!r}: unknown field(s) {sorted(unknown)}")
        table[str(model)] = ModelPrice(*values)
    return table


def price_for(model: str, prices: Mapping[str, ModelPrice] | None = None) -> ModelPrice | None:
    """The price of ``model`` (a dated id such as ``claude-haiku-4-5-20251001`` falls back to its
    alias), or ``None`` when the table does not know it."""
    table = DEFAULT_PRICES if prices is None else prices
    if model in table:
        return table[model]
    return table.get(_DATE_SUFFIX.sub("", model))


def estimate_cost(
    usage: Usage,
    model: str,
    prices: Mapping[str, ModelPrice] | None = None,
    *,
    batch: bool = False,
) -> float | None:
    """Estimated USD cost of ``usage`` on ``model``; ``None`` when the model has no price.

    cost = (input·p_in + output·p_out + cache_creation·p_write + cache_read·p_read) / 10^6,
    times :data:`BATCH_DISCOUNT` for Message Batches usage (the discount applies to every
    token class, cache reads and writes included, per the pricing page).
    """
    price = price_for(model, prices)
    if price is None:
        return None
    cost = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_creation_input_tokens * price.cache_write
        + usage.cache_read_input_tokens * price.cache_read
    ) / 1_000_000
    return cost * BATCH_DISCOUNT if batch else cost


@dataclass(frozen=True)
class UsageTotals:
    """Everything one judge object spent, split by billing mode (failed calls included)."""

    standard: Usage = field(default_factory=Usage)
    batch: Usage = field(default_factory=Usage)

    @property
    def total(self) -> Usage:
        return self.standard + self.batch

    def cost(self, model: str, prices: Mapping[str, ModelPrice] | None = None) -> float | None:
        """Estimated USD cost (batch usage at the batch discount); ``None`` if unpriced."""
        standard = estimate_cost(self.standard, model, prices)
        batch = estimate_cost(self.batch, model, prices, batch=True)
        if standard is None or batch is None:
            return None
        return standard + batch
