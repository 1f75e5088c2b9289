"""What a mix is judged on: a weighted mean of components, each a bits/byte a proxy measures.

Components are named `val/<source>` (the source's own val bits/byte, `val/<source>/bpb` in metrics.jsonl) and
`rc/<task>` (the task's benchmark bits/byte, `eval/<task>/rc_bpb`). Lower is better for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VAL, RC = "val", "rc"


def component(kind: str, name: str) -> str:
    return f"{kind}/{name}"


@dataclass(frozen=True)
class Target:
    """`weights`: {component: weight}, normalised to sum 1 (the target is a weighted mean)."""

    weights: dict[str, float]

    @classmethod
    def of(cls, sources: dict[str, float], tasks: dict[str, float]) -> Target:
        raw = {component(VAL, s): w for s, w in sources.items()} | {
            component(RC, t): w for t, w in tasks.items()
        }
        total = sum(raw.values())
        return cls({name: w / total for name, w in raw.items() if w > 0})

    @property
    def components(self) -> list[str]:
        return list(self.weights)

    @property
    def vector(self) -> np.ndarray:
        return np.array(list(self.weights.values()))

    def aggregate(self, values: np.ndarray) -> np.ndarray:
        """The target of each row of `values` (n x components, in `components` order)."""
        return np.atleast_2d(values) @ self.vector

    def value(self, measured: dict[str, float]) -> float:
        """The target of one proxy's measured components."""
        return float(sum(w * measured[name] for name, w in self.weights.items()))


def measured_components(validation: dict, evaluation: dict) -> dict[str, float]:
    """{component: bits/byte} from a run's last validation record (`val/<source>/bpb`) and its last evaluation
    (`eval/<task>/rc_bpb`)."""
    out = {}
    for key, value in validation.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val" and parts[2] == "bpb" and value is not None:
            out[component(VAL, parts[1])] = float(value)
    for key, value in evaluation.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "eval" and parts[2] == "rc_bpb" and value is not None:
            out[component(RC, parts[1])] = float(value)
    return out
