"""Numeric limits shared by the language and the runtime, declared once.

* :data:`MAX_MAGNITUDE` — facts, params and literals are at most 1e15 in magnitude: up to
  there durable_rules compares exactly (it clamps integers beyond 64 bits silently), and
  every integer is exact in a double.
* :data:`ROUND_DIGITS` — derived values (and computed operands of a comparison) are
  rounded to 6 decimal places before any comparison, so that 0.3 + 8.3 + 6.4 is 15.
"""

from __future__ import annotations

MAX_MAGNITUDE = 1e15
ROUND_DIGITS = 6

#: How messages write the limit: "1e15".
MAX_MAGNITUDE_TEXT = f"{MAX_MAGNITUDE:.0e}".replace("+", "")
