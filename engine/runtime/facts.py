"""The facts model: a pydantic model built from a ruleset's fact declarations.

API validation, the CLI and the JSON Schema of facts all come from this one model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from engine.errors import FactsError
from engine.hints import closest
from engine.lang.model import FactDecl
from engine.limits import MAX_MAGNITUDE  # beyond it values cannot be compared exactly

DEFAULT_MAX_STRING = 1000


def build_model(name: str, facts: Mapping[str, FactDecl]) -> type[BaseModel]:
    """A strict pydantic model: unknown fields forbidden, NaN/Infinity refused, null = absent."""
    fields: dict[str, Any] = {}
    for fname, decl in facts.items():
        annotation, extra = _field_type(decl)
        desc = decl.description.en if decl.description else None
        if decl.required:
            fields[fname] = (annotation, Field(..., description=desc, **extra))
        else:
            fields[fname] = (annotation | None, Field(None, description=desc, **extra))
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, title=f"{name} facts")
    return create_model(_model_name(name), __config__=config, **fields)  # type: ignore[call-overload]


def _model_name(name: str) -> str:
    return "".join(p.capitalize() for p in name.replace("-", "_").split("_")) + "Facts"


def _field_type(decl: FactDecl) -> tuple[Any, dict[str, Any]]:
    extra: dict[str, Any] = {}
    if decl.type in ("integer", "number"):
        lo = decl.min if decl.min is not None else -MAX_MAGNITUDE
        hi = decl.max if decl.max is not None else MAX_MAGNITUDE
        extra = {"ge": lo, "le": hi}
        if decl.type == "integer":
            return _integer_type(lo, hi), {}
        # a number keeps the client's int or float exactly (the verdict echoes facts as they came)
        return _number_type(lo, hi), {}
    if decl.type == "boolean":
        return StrictBool, extra
    if decl.type == "enum":
        return Literal[tuple(decl.values or ())], extra  # type: ignore[valid-type]
    if decl.type == "list":
        item = Literal[tuple(decl.values or ())]  # type: ignore[valid-type]
        # distinct values are what counts; duplicates are allowed and folded
        return list[item], {"max_length": 4 * len(decl.values or ())}  # type: ignore[valid-type]
    extra = {"max_length": decl.max_length or DEFAULT_MAX_STRING}
    return str, extra


def _number_type(lo: float, hi: float) -> Any:
    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise PydanticCustomError("number_type", "Input should be a number")
        if isinstance(v, float) and not math.isfinite(v):
            raise PydanticCustomError("finite_number", "NaN and Infinity are not numbers")
        if v == 0:
            v += 0.0 if isinstance(v, float) else 0  # -0.0 is 0.0: it never prints as "-0"
        return _in_bounds(v, lo, hi)

    schema: dict[str, Any] = {"type": "number", "minimum": lo, "maximum": hi}
    return Annotated[Any, BeforeValidator(check), WithJsonSchema(schema)]


def _integer_type(lo: float, hi: float) -> Any:
    # JSON has one number type: 3.0 is the integer 3 (JSON Schema agrees); 3.5 is not
    def check(v: Any) -> Any:
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise PydanticCustomError("int_type", "Input should be a whole number")
        return _in_bounds(v, lo, hi)

    schema: dict[str, Any] = {"type": "integer", "minimum": lo, "maximum": hi}
    return Annotated[Any, BeforeValidator(check), WithJsonSchema(schema)]


def _in_bounds(v: Any, lo: float, hi: float) -> Any:
    lo = int(lo) if float(lo).is_integer() else lo
    hi = int(hi) if float(hi).is_integer() else hi
    if v < lo:
        raise PydanticCustomError(
            "greater_than_equal", "Input should be greater than or equal to {ge}", {"ge": lo}
        )
    if v > hi:
        raise PydanticCustomError(
            "less_than_equal", "Input should be less than or equal to {le}", {"le": hi}
        )
    return v


FastCheck = Callable[[Mapping[str, Any]], "dict[str, Any] | None"]


def build_fast_check(facts: Mapping[str, FactDecl]) -> FastCheck:
    """A check of plainly valid facts that gives what `validate` gives, without pydantic.

    It answers the common case (every fact known, of its type, within its bounds) at a
    fraction of the model's cost, and None at the first doubt, so that the model decides
    and words the errors: it can only ever accept what the model accepts, with the same
    values in the same (declared) order. tests/engine/runtime/test_facts_fast.py holds it
    to that on generated facts, valid and not.
    """
    order = list(facts)
    required = frozenset(n for n, d in facts.items() if d.required)
    checks: dict[str, Callable[[Any], Any]] = {}
    for name, decl in facts.items():
        checks[name] = _fast_value(decl)

    def check(raw: Mapping[str, Any]) -> dict[str, Any] | None:
        if type(raw) is not dict:
            return None
        seen: dict[str, Any] = {}
        for key, value in raw.items():
            fn = checks.get(key)
            if fn is None:
                return None  # unknown: the model says which, with a suggestion
            if value is None:
                continue
            value = fn(value)
            if value is _DOUBT:
                return None
            seen[key] = value
        if required and not required.issubset(seen):
            return None
        if len(seen) == len(order):
            return {k: seen[k] for k in order}
        return {k: seen[k] for k in order if k in seen}

    return check


_DOUBT = object()


def _fast_value(decl: FactDecl) -> Callable[[Any], Any]:
    if decl.type in ("integer", "number"):
        lo = decl.min if decl.min is not None else -MAX_MAGNITUDE
        hi = decl.max if decl.max is not None else MAX_MAGNITUDE
        integer = decl.type == "integer"

        def number(v: Any) -> Any:
            kind = type(v)
            if kind is float:
                if not (lo <= v <= hi):  # NaN fails here too
                    return _DOUBT
                if integer:
                    return int(v) if v.is_integer() else _DOUBT
                return v + 0.0 if v == 0 else v  # -0.0 is 0.0
            if kind is int:
                return v if lo <= v <= hi else _DOUBT
            return _DOUBT

        return number
    if decl.type == "boolean":
        return lambda v: v if type(v) is bool else _DOUBT
    if decl.type == "enum":
        allowed = frozenset(decl.values or ())
        return lambda v: v if type(v) is str and v in allowed else _DOUBT
    if decl.type == "list":
        items = frozenset(decl.values or ())
        longest = 4 * len(decl.values or ())

        def listed(v: Any) -> Any:
            if type(v) is not list or len(v) > longest:
                return _DOUBT
            for item in v:
                if type(item) is not str or item not in items:
                    return _DOUBT
            return list(dict.fromkeys(v))

        return listed
    longest_text = decl.max_length or DEFAULT_MAX_STRING
    return lambda v: v if type(v) is str and len(v) <= longest_text else _DOUBT


def validate(model: type[BaseModel], raw: Any, fast: FastCheck | None = None) -> dict[str, Any]:
    """Validated facts: only present (non-null) facts, lists de-duplicated in first-seen order.

    `fast` (from `build_fast_check` on the same declarations) answers plainly valid facts;
    the model answers everything else.
    """
    if fast is not None:
        done = fast(raw)
        if done is not None:
            return done
    if not isinstance(raw, Mapping):
        raise FactsError(
            [{"loc": [], "msg": "account facts must be a JSON object", "type": "type"}]
        )
    account_id = raw.get("account_id") if isinstance(raw.get("account_id"), str) else None
    for key, value in raw.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise FactsError(
                [
                    {
                        "loc": [key],
                        "msg": "NaN and Infinity are not numbers",
                        "type": "finite_number",
                    }
                ],
                account_id,
            )
    try:
        obj = model.model_validate(dict(raw))
    except ValidationError as exc:
        errors = [_error(model, e) for e in exc.errors(include_url=False)]
        raise FactsError(errors, account_id) from None
    out: dict[str, Any] = {}
    for key, value in obj.model_dump(exclude_none=True).items():
        if isinstance(value, list):
            value = list(dict.fromkeys(value))
        out[key] = value
    return out


def _error(model: type[BaseModel], e: Any) -> dict[str, Any]:
    out = {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
    if e["type"] == "extra_forbidden" and len(e["loc"]) == 1:
        name = str(e["loc"][0])
        close = closest(name, model.model_fields)
        out["msg"] = f"unknown fact `{name}`" + (f"; did you mean `{close}`?" if close else "")
    return out


def coerce_text(decl: FactDecl, text: str) -> Any:
    """A CSV cell as the declared type ('' is absent); raises ValueError with a reason."""
    t = text.strip()
    if t == "":
        return None
    if decl.type == "integer":
        try:
            return int(t)
        except ValueError:
            raise ValueError(f"`{t}` is not a whole number") from None
    if decl.type == "number":
        try:
            v = float(t.replace(",", "")) if t.replace(",", "").strip() else None
        except ValueError:
            raise ValueError(f"`{t}` is not a number") from None
        return int(v) if v is not None and v.is_integer() and abs(v) < 2**53 else v
    if decl.type == "boolean":
        low = t.lower()
        if low in ("true", "yes", "1", "y", "是"):
            return True
        if low in ("false", "no", "0", "n", "否"):
            return False
        raise ValueError(f"`{t}` is not true/false")
    if decl.type == "list":
        return [p.strip() for p in t.split(";") if p.strip()]
    return t
