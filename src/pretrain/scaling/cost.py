"""What a run costs in dollars, as the people paying for it count: GPU-hours at a price, plus engineering.

A GPU-hour is priced from the recipe's `plan` section: rented (`usd_per_gpu_hour`), or owned hardware
(`gpu_purchase_usd` depreciated over `gpu_life_years` of hours, plus `gpu_power_kw` x `pue` x `usd_per_kwh`).
`engineering_usd` is added to the total, and taken off a dollar budget before it buys GPU-hours.
"""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.config.plan import PlanConfig
from pretrain.core.errors import PretrainError

HOURS_PER_YEAR = 24 * 365


@dataclass(frozen=True)
class Cost:
    gpu_hours: float
    items: list[tuple[str, float]]  # (what, US dollars), summing to `total`

    @property
    def total(self) -> float:
        return sum(usd for _, usd in self.items)

    def as_dict(self) -> dict:
        return {
            "gpu_hours": self.gpu_hours,
            "items": [list(item) for item in self.items],
            "total_usd": self.total,
        }


def hourly_rates(plan: PlanConfig) -> list[tuple[str, float]]:
    """What one GPU-hour costs, item by item (empty when the recipe prices none)."""
    if plan.gpu_purchase_usd is not None:
        return [
            (
                f"depreciation (${plan.gpu_purchase_usd:,.0f} per GPU over {plan.gpu_life_years:g} years)",
                plan.gpu_purchase_usd / (plan.gpu_life_years * HOURS_PER_YEAR),
            ),
            (
                f"power ({plan.gpu_power_kw:g} kW x PUE {plan.pue:g} x ${plan.usd_per_kwh:g}/kWh)",
                plan.gpu_power_kw * plan.pue * plan.usd_per_kwh,
            ),
        ]
    if plan.usd_per_gpu_hour is not None:
        return [(f"GPU rental (${plan.usd_per_gpu_hour:g} per GPU-hour)", plan.usd_per_gpu_hour)]
    return []


def cost_of(plan: PlanConfig, gpu_hours: float) -> Cost | None:
    """The cost of `gpu_hours` (None when the recipe prices no GPU-hour and counts no engineering)."""
    items = [(what, rate * gpu_hours) for what, rate in hourly_rates(plan)]
    if plan.engineering_usd:
        items.append(("engineering", plan.engineering_usd))
    return Cost(gpu_hours, items) if items else None


def gpu_hours_for(plan: PlanConfig, budget_usd: float) -> float:
    """The GPU-hours a dollar budget buys once engineering is paid."""
    rate = sum(usd for _, usd in hourly_rates(plan))
    if not rate:
        raise PretrainError(
            "plan: --budget-usd needs the price of a GPU-hour: set plan.usd_per_gpu_hour (rented) or "
            "plan.gpu_purchase_usd (owned hardware) in the recipe"
        )
    left = budget_usd - (plan.engineering_usd or 0.0)
    if left <= 0:
        raise PretrainError(
            f"plan: --budget-usd {budget_usd:,.0f} does not cover plan.engineering_usd {plan.engineering_usd:,.0f}"
        )
    return left / rate
