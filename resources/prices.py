"""What Claude costs: one table of per-model prices, and the rules that turn usage into US dollars.

Prices are per million tokens. Writing the prompt cache costs 1.25 times the input price (the
5-minute cache) and reading it 0.1 times; the Message Batches API bills every token at half price.
A model missing from the table has no price: the generator then needs its prices given.
"""

from __future__ import annotations

from dataclasses import dataclass

from resources.generators import Usage

CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1
BATCH_DISCOUNT = 0.5  # the Message Batches API bills half of the Messages API's price


@dataclass(frozen=True)
class Price:
    """US dollars per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, usage: Usage, *, batch: bool = False) -> float:
        """US dollars for `usage`; `batch`: billed through the Message Batches API."""
        dollars = (usage.input_tokens * self.input_per_mtok
                   + usage.cache_creation_input_tokens * self.input_per_mtok * CACHE_WRITE_FACTOR
                   + usage.cache_read_input_tokens * self.input_per_mtok * CACHE_READ_FACTOR
                   + usage.output_tokens * self.output_per_mtok) / 1e6
        return dollars * (BATCH_DISCOUNT if batch else 1.0)


PRICES: dict[str, Price] = {
    "claude-sonnet-5": Price(2.0, 10.0),
    "claude-opus-4-7": Price(5.0, 25.0),
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
}


class UnknownPrice(ValueError):
    """A model the price table lacks, with no prices given."""


def price_of(model: str, input_per_mtok: float | None = None, output_per_mtok: float | None = None) -> Price:
    """The table's price for `model` (a dated id such as `claude-haiku-4-5-20251001` finds its family), with
    either part overridden when given."""
    listed = PRICES.get(model) or next((p for name, p in PRICES.items() if model.startswith(f"{name}-")), None)
    if listed is None and (input_per_mtok is None or output_per_mtok is None):
        raise UnknownPrice(f"no price for model {model!r}: give input_price_per_mtok and output_price_per_mtok "
                           f"(known: {', '.join(sorted(PRICES))})")
    return Price(input_per_mtok if input_per_mtok is not None else listed.input_per_mtok,
                 output_per_mtok if output_per_mtok is not None else listed.output_per_mtok)
