"""The run checked against its forecast: at each validation pass, predicted vs actual validation loss.

When `pretrain ladder` has fitted the recipe's law (`ladder/fit.json`), every validation pass logs a
`forecast` event (predicted value and interval, actual, phase; scaling/forecast.py says which law
applies when) and a log line; a loss outside the interval is a warning, and the model card lists it.
Runs without a ladder fit are not checked. Logging only: nothing here changes training.
"""

from __future__ import annotations

from pretrain.core.progress import get_logger
from pretrain.modeling import count_parameters
from pretrain.scaling.forecast import Forecast
from pretrain.train.callbacks.base import Callback, StepOutput
from pretrain.train.callbacks.validation import Validation
from pretrain.train.metrics import EVENT_FORECAST, MetricsLog
from pretrain.train.rng import preserved_rng
from pretrain.train.schedules import lr_multiplier, warmup_steps
from pretrain.train.setup import TrainSetup
from pretrain.train.state import TrainState

log = get_logger("pretrain.train")


class ForecastCheck(Callback):
    def __init__(self, setup: TrainSetup, metrics: MetricsLog, validation: Validation):
        self.setup, self.metrics, self.validation = setup, metrics, validation
        self.forecast: Forecast | None = None
        self.params = 0

    def on_train_start(self, state: TrainState) -> None:
        s = self.setup
        if not s.accelerator.is_main_process:
            return  # logging only, on the process that writes the log
        self.forecast = Forecast.load(s.recipe.layout)
        if self.forecast is None:
            return
        with preserved_rng():  # counting builds a model on the meta device; the run's RNG stays untouched
            _, self.params = count_parameters(s.accelerator.unwrap_model(s.model).config)
        tokens = s.total_steps * s.tokens_per_step
        final = self.forecast.final(self.params, tokens)
        bpb = self.forecast.bpb(final.value)
        log.info(
            "forecast (%s): final validation loss %.4f [%.4f, %.4f]%s for %s non-embedding params on %s tokens",
            s.recipe.layout.ladder_fit,
            final.value,
            final.low,
            final.high,
            f", {bpb:.4f} bits/byte" if bpb else "",
            f"{self.params:,}",
            f"{tokens:,}",
        )

    def _at_peak_lr(self, step: int) -> bool:
        """The lr of the step just taken is the peak, after warmup (a WSD or constant run's stable phase)."""
        s = self.setup
        schedule = s.recipe.train.schedule
        if schedule.name not in ("wsd", "constant") or step <= warmup_steps(schedule, s.total_steps):
            return False
        return lr_multiplier(step - 1, s.total_steps, schedule) == 1.0

    def on_step_end(self, state: TrainState, out: StepOutput) -> None:
        if self.forecast is None or state.step not in self.validation.steps or not self.validation.last:
            return
        actual = self.validation.last.get("val/loss")
        if actual is None:
            return
        last = state.step == self.setup.total_steps
        check = self.forecast.check(
            self.params, state.tokens_seen, actual, last, self._at_peak_lr(state.step)
        )
        p = check.predicted
        self.metrics.log_event(
            state.step,
            EVENT_FORECAST,
            phase=check.phase,
            actual=actual,
            predicted=round(p.value, 5),
            low=round(p.low, 5),
            high=round(p.high, 5) if p.high != float("inf") else None,
            outside=check.outside,
        )
        if check.outside:
            log.warning(
                "step %d: validation loss departs from the forecast: %s; the run is not behaving like its "
                "ladder (data, lr or instability?)",
                state.step,
                check.describe(),
            )
        else:
            log.info("step %d: forecast check: %s", state.step, check.describe())
