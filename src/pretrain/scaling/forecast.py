"""A run's forecast from its ladder: what `plan` proposes and what `train` checks the run against.

`pretrain ladder` leaves `ladder/fit.json` (final validation loss of a fully decayed run) and, when the
long runs logged enough validations at the peak lr, `ladder/fit_stable.json` (validation loss while
the lr is still at its peak). At a validation pass:

- at the last step the final law's interval is the forecast;
- in a WSD run's stable phase (after warmup, before the decay) the peak-lr law's interval is;
- elsewhere (warmup, decay, a cosine run's middle) the loss lies between a run fully decayed at this
  many tokens and one still at its peak: the check is the envelope [final law low, peak-lr law high].

The forecast is withdrawn when the packed tokens changed since the ladder ran (their stage marker
records another fingerprint): the law is of the recipe's data and tokenizer, not of any data.
"""

from __future__ import annotations

from dataclasses import dataclass

from pretrain.core.errors import DataError
from pretrain.core.layout import RunLayout
from pretrain.core.markers import read_marker
from pretrain.core.progress import get_logger
from pretrain.scaling.ladder_record import LadderRecord, read_fit, read_record
from pretrain.scaling.law import Estimate, ScalingFit, predict

log = get_logger("pretrain.forecast")

PHASE_FINAL, PHASE_STABLE, PHASE_BETWEEN = "final", "stable", "between"


@dataclass(frozen=True)
class Check:
    """One validation pass against the forecast."""

    phase: str  # final | stable | between
    predicted: Estimate  # for `between`: value = the fully decayed law's, [low, high] = the envelope
    actual: float

    @property
    def outside(self) -> bool:
        return not self.predicted.contains(self.actual)

    def describe(self) -> str:
        p = self.predicted
        what = {
            PHASE_FINAL: "final-loss law",
            PHASE_STABLE: "peak-lr law",
            PHASE_BETWEEN: "between the decayed and peak-lr laws",
        }[self.phase]
        return f"actual {self.actual:.4f} vs predicted {p.value:.4f} [{p.low:.4f}, {p.high:.4f}] ({what})"


@dataclass
class Forecast:
    fit: ScalingFit
    stable: ScalingFit | None
    record: LadderRecord | None

    @classmethod
    def load(cls, layout: RunLayout) -> Forecast | None:
        """The run's forecast, or None without a ladder fit (or when the data changed since the ladder)."""
        try:
            fit = read_fit(layout.ladder_fit)
            if fit is None:
                return None
            record = read_record(layout)
            stable = read_fit(layout.ladder_stable_fit)
        except DataError as exc:
            log.warning("no forecast: %s", exc)
            return None
        tokens = (read_marker(layout.tokens) or {}).get("fingerprint")
        if record is not None and record.data_fingerprint and tokens and tokens != record.data_fingerprint:
            log.warning(
                "no forecast: %s was repacked since `pretrain ladder` fitted %s; re-run the ladder",
                layout.tokens,
                layout.ladder_fit,
            )
            return None
        return cls(fit, stable, record)

    def final(self, params: float, tokens: float) -> Estimate:
        return predict(self.fit, params, tokens)

    def bpb(self, loss: float) -> float | None:
        return self.record.bpb(loss) if self.record else None

    def check(self, params: float, tokens: float, actual: float, last_step: bool, at_peak_lr: bool) -> Check:
        """The forecast for a validation at `tokens` of a run with `params` non-embedding parameters."""
        decayed = predict(self.fit, params, tokens)
        if last_step:
            return Check(PHASE_FINAL, decayed, actual)
        if self.stable is None:  # no peak-lr law: anything not worse than... unknown; only the floor is known
            return Check(PHASE_BETWEEN, Estimate(decayed.value, decayed.low, float("inf")), actual)
        peak = predict(self.stable, params, tokens)
        if at_peak_lr:
            return Check(PHASE_STABLE, peak, actual)
        return Check(
            PHASE_BETWEEN, Estimate(decayed.value, decayed.low, max(peak.high, decayed.high)), actual
        )
