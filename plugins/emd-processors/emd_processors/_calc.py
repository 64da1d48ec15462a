"""calc.Calc: VAL = an expression over input PVs A to L, like the EPICS calc record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import epics_meta_devices as emd

from ._expression import INPUT_NAMES, EvaluationError, Expression, ExpressionError
from ._values import scalar


@dataclass
class CalcConfig(emd.ProcessingConfig):
    expression: str = ""
    """The expression, e.g. ``A > 0 ? sqrt(A) : -1`` (see docs/processors.md)."""
    inputs: list[str] = field(default_factory=list)
    """PV names bound in order to A, B, C, ... L (CALC's INPA..INPL)."""

    def __post_init__(self) -> None:
        if len(self.inputs) > len(INPUT_NAMES):
            raise ValueError(f"at most {len(INPUT_NAMES)} inputs (A to L), got {len(self.inputs)}")


@emd.register_device_type(name="calc.Calc")
class Calc(emd.ProcessingDevice):
    """VAL = an expression over input PVs A to L, like the EPICS calc record."""

    Config = CalcConfig
    inputs = ("inputs",)
    outputs = {"VAL": 0.0}

    def __init__(self, prefix: str, **kwargs: Any) -> None:
        super().__init__(prefix, **kwargs)
        self.expression: Expression | None = None
        """The parsed expression of the current CONFIG (None before the first one)."""

    def configure(self, config: CalcConfig) -> None:
        super().configure(config)
        try:
            expression = Expression.parse(config.expression)
        except ExpressionError as exc:
            raise emd.DeviceError(f"expression: {exc}") from None
        bound = INPUT_NAMES[:len(config.inputs)]
        unbound = [name for name in expression.inputs if name not in bound]
        if unbound:
            raise emd.DeviceError(
                f"the expression uses {', '.join(unbound)}, but only {len(config.inputs)} input(s) "
                f"are configured ({', '.join(bound)}): add their PVs to inputs")
        self.expression = expression  # only now: a refused CONFIG leaves the old expression
        self.output_pvs["VAL"].show_description(f"VAL = {config.expression}")  # at most MAX_LENGTH characters

    def compute(self, inputs: list[Any]) -> float:
        assert self.expression is not None  # configure ran before the device could start
        values = [scalar(value, f"input {INPUT_NAMES[i]} ({self.config.inputs[i]})")
                  for i, value in enumerate(inputs)]
        try:
            return self.expression.evaluate(values)
        except EvaluationError as exc:  # a data problem: VAL goes INVALID, the device runs on
            raise emd.ProcessingError(str(exc)) from None
