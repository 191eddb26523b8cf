"""The deployment's gate policy (MLOPS_GATE_*), which a run's GateConfig may override."""

import json
from typing import Any

import dagster as dg

from mlops_assets.gate import GateRules


class GatePolicy(dg.ConfigurableResource):
    floors_json: str = '{"f1_macro": 0.7}'
    tolerance: float = 0.01
    class_tolerance: float = 0.05
    require_significant: bool = True
    confidence: float = 0.95
    dagster_ui_url: str = "http://127.0.0.1:3000"

    def rules(self, metric: str, overrides: Any = None) -> GateRules:
        def pick(name: str, default: Any) -> Any:
            value = getattr(overrides, name, None) if overrides is not None else None
            return default if value is None else value

        return GateRules(
            metric=metric,
            floors=dict(pick("floors", json.loads(self.floors_json))),
            tolerance=pick("tolerance", self.tolerance),
            class_tolerance=pick("class_tolerance", self.class_tolerance),
            require_significant=pick("require_significant", self.require_significant),
            confidence=self.confidence,
        )
