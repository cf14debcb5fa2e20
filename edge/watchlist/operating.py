"""One deployment's operating point: its match threshold, derived from the model card.

A watchlist search compares every face with every template in the bundle, so
the chance that a passer-by falsely matches somebody grows with the list. The
authority states what it tolerates (the order's false-alert budget, false
alerts per 10,000 faces searched) and the least share of listed people the
deployment must find; the model card says, from measurement (``make eval``),
what each threshold gives. ``operating_point`` turns the three into one
threshold, or refuses the combination with the figures the card predicts.

Predictions:

- false-positive identification rate (FPIR) at threshold ``t`` for a bundle of
  ``T`` templates: ``1 - (1 - FMR(t)) ** T``, each template one independent
  chance of a false match. FMR comes from the card's cross-person pairs; below
  ``3 / pairs`` (the 95% bound when none is seen) the card can show nothing,
  so no smaller FMR is ever claimed. The card's measured one-to-many curves
  (100, 500, 1,000 people) are there to check this model; ``make eval`` prints
  both.
- false-negative identification rate (FNIR, listed people missed per face):
  the card's measured one-to-many FNIR at ``t`` for the smallest measured list
  at least as large as the bundle (the largest measured list beyond it).

Pure: card, sizes and budget in, a value or ``OperatingPointError`` out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edge.errors import ModelError, OperatingPointError

# The least share of listed people found is the authority's to set in the order; without
# one nothing is refused on that ground, and the predicted share is still shown. (The
# budget's default is the false-alert monitor's, ``edge.accountability.monitor.DEFAULT_BUDGET``.)
DEFAULT_MIN_FOUND = 0.0
PER = 10_000


@dataclass(frozen=True)
class Curve:
    """A measured rate at ascending thresholds, read by interpolation."""

    thresholds: tuple[float, ...]
    values: tuple[float, ...]
    log: bool = False  # interpolate the rate's logarithm (FMR falls about exponentially)

    @classmethod
    def parse(cls, rows: object, what: str, *, log: bool = False) -> Curve:
        if not isinstance(rows, Sequence) or len(rows) < 2:
            raise ModelError(f"model card: {what} needs at least two [threshold, rate] rows")
        ts: list[float] = []
        vs: list[float] = []
        for row in rows:
            if not isinstance(row, Sequence) or len(row) < 2:
                raise ModelError(f"model card: {what} row {row!r} is not [threshold, rate]")
            t, v = float(row[0]), float(row[1])
            if not (math.isfinite(t) and math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ModelError(f"model card: {what} row {row!r} is out of range")
            if ts and t <= ts[-1]:
                raise ModelError(f"model card: {what} thresholds must ascend")
            ts.append(t)
            vs.append(v)
        return cls(tuple(ts), tuple(vs), log)

    def at(self, t: float) -> float:
        """The rate at ``t``, linear between rows, the end rows' value outside them."""
        ts, vs = self.thresholds, self.values
        if t <= ts[0]:
            return vs[0]
        if t >= ts[-1]:
            return vs[-1]
        i = next(k for k in range(1, len(ts)) if ts[k] >= t)
        w = (t - ts[i - 1]) / (ts[i] - ts[i - 1])
        a, b = vs[i - 1], vs[i]
        if self.log and a > 0.0 and b > 0.0:
            return math.exp(math.log(a) + w * (math.log(b) - math.log(a)))
        return a + w * (b - a)


@dataclass(frozen=True)
class OneToMany:
    list_size: int
    mated_searches: int
    non_mated_searches: int
    fnir: Curve
    fpir: Curve


@dataclass(frozen=True)
class OperatingCard:
    """What the threshold policy reads of one recogniser variant's model card."""

    family: str
    variant: str
    fmr: Curve
    impostor_pairs: int
    one_to_many: tuple[OneToMany, ...]  # ascending list size
    reliable_width_px: int

    @property
    def fmr_resolution(self) -> float:
        """The smallest FMR the card can show: the 95% bound with no false match seen."""
        return 3.0 / self.impostor_pairs

    def fmr_at(self, t: float) -> float:
        return max(self.fmr.at(t), self.fmr_resolution)

    def threshold_for_fmr(self, target: float) -> float | None:
        """The lowest threshold whose FMR is at most ``target``; None beyond the card's evidence."""
        if target < self.fmr_resolution:
            return None
        ts, vs = self.fmr.thresholds, self.fmr.values
        if vs[0] <= target:
            return ts[0]
        for k in range(1, len(ts)):
            if vs[k] <= target:
                if vs[k] <= 0.0:
                    return ts[k]  # no log to interpolate to: the first row that meets the target
                lo, hi = math.log(vs[k - 1]), math.log(vs[k])
                w = (math.log(target) - lo) / (hi - lo) if hi != lo else 1.0
                return ts[k - 1] + w * (ts[k] - ts[k - 1])
        return None

    def fnir_at(self, t: float, people: int) -> tuple[float, int]:
        """Measured FNIR at ``t`` and the list size it was measured at."""
        chosen = next((m for m in self.one_to_many if m.list_size >= people), self.one_to_many[-1])
        return chosen.fnir.at(t), chosen.list_size

    @classmethod
    def from_card(cls, card: Mapping[str, Any], variant: str) -> OperatingCard:
        """Read ``model_cards[family]`` of the manifest for one variant."""
        family = str(card.get("family", "?"))
        try:
            op = card["operating"][variant]
            width = int(card["reliable_width_px"])
            pairs = int(op["impostor_pairs"])
            rows = sorted(op["one_to_many"], key=lambda m: int(m["list_size"]))
            one_to_many = tuple(
                OneToMany(
                    list_size=int(m["list_size"]),
                    mated_searches=int(m["mated_searches"]),
                    non_mated_searches=int(m["non_mated_searches"]),
                    fpir=Curve.parse([[r[0], r[1]] for r in m["curve"]], f"{family} 1:{m['list_size']} fpir"),
                    fnir=Curve.parse([[r[0], r[2]] for r in m["curve"]], f"{family} 1:{m['list_size']} fnir"),
                )
                for m in rows
            )
            fmr = Curve.parse(op["fmr"], f"{family} {variant} fmr", log=True)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(
                f"model card of {family} has no usable operating figures for {variant}: {exc!r}; "
                "run `make eval`"
            ) from exc
        if pairs <= 0 or not one_to_many or width <= 0:
            raise ModelError(f"model card of {family} {variant}: empty operating figures")
        return cls(family, variant, fmr, pairs, one_to_many, width)


@dataclass(frozen=True)
class OperatingPoint:
    """The threshold one deployment matches at, with what the card predicts for it."""

    family: str
    variant: str
    threshold: float
    people: int
    templates: int
    budget_per_10k: float
    min_found: float
    predicted_fpir: float  # passers-by falsely matched, per face searched
    predicted_fnir: float  # listed people missed, per face searched
    fnir_list_size: int  # the measured list the FNIR comes from
    reliable_width_px: int

    def to_json(self) -> dict[str, object]:
        return {
            "family": self.family,
            "variant": self.variant,
            "threshold": round(self.threshold, 6),
            "people": self.people,
            "templates": self.templates,
            "false_alert_budget_per_10k": self.budget_per_10k,
            "min_found": self.min_found,
            "predicted_false_alerts_per_10k": round(self.predicted_fpir * PER, 4),
            "predicted_found": round(1.0 - self.predicted_fnir, 4),
            "fnir_measured_at_list_size": self.fnir_list_size,
            "reliable_width_px": self.reliable_width_px,
        }


def operating_point(
    card: OperatingCard,
    *,
    people: int,
    templates: int,
    budget_per_10k: float,
    min_found: float | None = None,
) -> OperatingPoint:
    """The lowest threshold whose predicted false alerts stay within the budget.

    Refuses (``OperatingPointError``, with the predicted figures) a budget the
    card cannot show for this many templates, and a combination that would find
    fewer listed people than ``min_found``.
    """
    budget = float(budget_per_10k)
    floor_found = DEFAULT_MIN_FOUND if min_found is None else float(min_found)
    if people < 1 or templates < people:
        raise OperatingPointError(f"a bundle of {people} people and {templates} templates cannot be matched")
    if not (math.isfinite(budget) and 0.0 < budget < PER):
        raise OperatingPointError(f"false-alert budget {budget} per 10,000 faces is out of range")
    if not 0.0 <= floor_found <= 1.0:
        raise OperatingPointError(f"minimum share found {floor_found} is not between 0 and 1")
    target = budget / PER
    # Per-template FMR such that 1 - (1 - fmr) ** T == target.
    per_template = -math.expm1(math.log1p(-target) / templates)
    t = card.threshold_for_fmr(per_template)
    if t is None:
        best = card.fmr_resolution
        raise OperatingPointError(
            f"{card.family} {card.variant}: a budget of {budget:g} false alerts per 10,000 faces with "
            f"{templates} templates needs a false-match rate of {per_template:.2e} per comparison; the "
            f"model card measures down to {best:.2e} ({card.impostor_pairs} cross-person pairs), which "
            f"predicts {_fpir(best, templates) * PER:.3g} false alerts per 10,000 at best: "
            "raise the budget or shorten the list"
        )
    fpir = _fpir(card.fmr_at(t), templates)
    fnir, measured_at = card.fnir_at(t, people)
    if 1.0 - fnir < floor_found:
        raise OperatingPointError(
            f"{card.family} {card.variant}: with {people} people and a budget of {budget:g} false alerts "
            f"per 10,000 faces the threshold is {t:.4f}, where the card predicts "
            f"{fpir * PER:.3g} false alerts per 10,000 faces and {1.0 - fnir:.1%} of listed people found "
            f"(measured on lists of {measured_at}); the order asks for at least {floor_found:.0%}: "
            "raise the budget, shorten the list or use a stronger recogniser"
        )
    return OperatingPoint(
        family=card.family, variant=card.variant, threshold=t, people=people, templates=templates,
        budget_per_10k=budget, min_found=floor_found, predicted_fpir=fpir, predicted_fnir=fnir,
        fnir_list_size=measured_at, reliable_width_px=card.reliable_width_px,
    )


def _fpir(fmr: float, templates: int) -> float:
    return -math.expm1(templates * math.log1p(-min(fmr, 1.0 - 1e-15)))


__all__ = [
    "DEFAULT_MIN_FOUND",
    "Curve",
    "OneToMany",
    "OperatingCard",
    "OperatingPoint",
    "operating_point",
]
