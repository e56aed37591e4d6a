"""The OpenAPI document: routes from FastAPI, plus the live fact schema and examples.

The `Facts` component is the JSON Schema of the default ruleset's facts, read
from the loaded ruleset when the document is first asked for (and again after a
reload), so the docs can never drift from what the engine validates.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .schemas import Problem
from .settings import Settings

REF = "#/components/schemas/"

KEY_ACCOUNT = {
    "account_id": "BOC-HQ",
    "name": "中国银行总行",
    "industry": "banking",
    "institution_type": "commercial",
    "product_fit": "strong",
    "purchasing_model": "centralized",
    "purchase_pattern": "recurring",
    "annual_spend": 12000000,
    "expected_years": 5,
    "purchase_frequency": 24,
    "acquisition_cost": 400000,
    "retention_cost_per_year": 150000,
    "gross_margin_pct": 24.5,
    "profit_rank_pct": 5,
    "revenue_share_pct": 8,
    "growth_potential": "high",
    "seller_scale_match": True,
    "industry_expertise": True,
    "industry_references": 4,
    "tailored_solution": True,
    "uses_our_products": True,
    "relationship_years": 4,
    "key_account_manager": True,
    "dedicated_ka_unit": True,
    "ka_unit_head_level": "director",
    "executive_meetings_per_year": 4,
    "escalation_channels": 3,
    "discount_pct": 5,
    "rebate_pct": 2,
    "market_support_pct": 1,
    "concessions_tied_to_commitments": True,
    "contract_volume": 1200,
    "prior_total_volume": 5000,
    "support_activities": ["market_analysis", "joint_planning", "supply_assurance"],
}

POTENTIAL = {
    "account_id": "SZ-HOSP-07",
    "name": "深圳市第七人民医院",
    "industry": "healthcare",
    "institution_type": "healthcare",
    "product_fit": "partial",
    "purchasing_model": "mixed",
    "purchase_pattern": "recurring",
    "annual_spend": 2600000,
    "expected_years": 3,
    "purchase_frequency": 8,
    "gross_margin_pct": 18,
    "growth_potential": "high",
    "seller_scale_match": True,
    "industry_expertise": True,
    "industry_references": 2,
    "tailored_solution": False,
    "uses_our_products": False,
}

GUARDRAIL = {
    "account_id": "RETAIL-0042",
    "name": "Northwind Retail Group",
    "industry": "retail",
    "institution_type": "commercial",
    "product_fit": "strong",
    "purchasing_model": "centralized",
    "purchase_pattern": "recurring",
    "annual_spend": 30000000,
    "expected_years": 4,
    "purchase_frequency": 30,
    "gross_margin_pct": -2,
    "profit_rank_pct": 60,
    "discount_pct": 18,
    "rebate_pct": 6,
    "market_support_pct": 4,
    "concessions_tied_to_commitments": False,
    "uses_our_products": True,
    "relationship_years": 3,
    "key_account_manager": True,
    "contract_volume": 8300,
    "prior_total_volume": 10000,
    "support_activities": [],
}

FACT_EXAMPLES = {
    "key_account": {"summary": "A key account (bank headquarters)", "value": KEY_ACCOUNT},
    "potential": {"summary": "A potential key account (hospital)", "value": POTENTIAL},
    "guardrail": {
        "summary": "Volume without profit: big, loss-making, concessions for nothing",
        "value": GUARDRAIL,
    },
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": REF + "Problem"}}},
    }


PROBLEMS = {
    400: "Malformed body (not JSON, not UTF-8, NaN/Infinity, too deep, duplicate keys)",
    401: "Missing or wrong bearer token",
    403: "Admin endpoints disabled (KAQ_ADMIN_TOKEN unset; studio: KAQ_EDITOR_TOKEN too)",
    404: "Unknown ruleset or decision",
    405: "Method not allowed",
    409: "Studio save on a stale base digest: someone saved meanwhile",
    408: "Body sent slower than KAQ_BODY_MIN_BYTES_PER_SECOND after KAQ_BODY_TIMEOUT_SECONDS",
    413: "Body over KAQ_MAX_BODY_BYTES / KAQ_MAX_BATCH_BYTES",
    415: "Content-Type is not application/json (or application/x-ndjson where accepted)",
    422: "Invalid facts: `errors[].loc` names the field",
    503: "No rulesets loaded, or the decision log is unavailable",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses entries for the given problem statuses."""
    return {code: _problem(PROBLEMS[code]) for code in codes}


def json_body(
    schema_ref: str, examples: dict[str, Any] | None = None, **more: Any
) -> dict[str, Any]:
    """`openapi_extra` declaring a JSON request body (routes read the body themselves)."""
    content: dict[str, Any] = {"application/json": {"schema": {"$ref": REF + schema_ref}}}
    if examples:
        content["application/json"]["examples"] = examples
    content.update(more)
    return {"requestBody": {"required": True, "content": content}}


def _hoist(schema: dict[str, Any], components: dict[str, Any], name: str) -> None:
    """Add a JSON Schema as a component, moving its `$defs` next to it and fixing refs."""
    schema = copy.deepcopy(schema)
    defs = schema.pop("$defs", {})

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (REF + v.split("/")[-1])
                if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/")
                else fix(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    for def_name, def_schema in defs.items():
        components.setdefault(def_name, fix(def_schema))
    components[name] = fix(schema)


def build_openapi(app: FastAPI, settings: Settings | None, facts_schema: dict[str, Any] | None):
    """The full document."""
    doc = get_openapi(
        title="kaq",
        version="0.1.0",
        summary="Rules-driven key-account qualification",
        description=(
            "Evaluate accounts against versioned rulesets. Every verdict carries a "
            "`decision_id` and is stored in the decision log before it is answered. "
            "Errors are RFC 9457 `application/problem+json`."
        ),
        routes=app.routes,
    )
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    _hoist(Problem.model_json_schema(ref_template=REF + "{model}"), components, "Problem")
    _hoist(facts_schema or {"type": "object"}, components, "Facts")
    max_items = settings.max_batch_items if settings else 10_000
    max_line = settings.max_body_bytes if settings else 1024 * 1024
    accounts = {"type": "array", "maxItems": max_items, "items": {"$ref": REF + "Facts"}}
    # A batch answers an invalid item in its place and evaluates the others: any value is
    # accepted as an item, and the document must say so (else "invalid" items look like
    # requests that should have been refused).
    components["BatchItem"] = {
        "description": "One account's facts, evaluated as `Facts`. Any JSON value is accepted "
        "here: one that is not valid facts is answered in its place with an error entry "
        "(`BatchError`), and the other items are still evaluated.",
        "anyOf": [{"$ref": REF + "Facts"}, {}],
    }
    components["BatchRequest"] = {
        "type": "object",
        "required": ["accounts"],
        "additionalProperties": False,
        "properties": {
            "accounts": {**accounts, "items": {"$ref": REF + "BatchItem"}},
        },
        "example": {"accounts": [KEY_ACCOUNT, {"account_id": "BAD-1", "annual_spend": -5}]},
    }
    # NDJSON is a sequence of JSON texts: described, as OpenAPI 3.2 does for sequential
    # media types, as the array of its lines.
    components["BatchLines"] = {
        "type": "array",
        "items": {"$ref": REF + "BatchItem"},
        "description": "`application/x-ndjson`: one item per line, in this order (the array "
        "stands for the sequence of lines). Any text is accepted: blank lines are skipped, "
        "and a line that is not JSON, not valid facts or longer than "
        f"{max_line} bytes is answered in its place with an error entry. Unbounded in length; "
        "the answers stream back as lines, each chunk of them logged before it is sent.",
        "example": [KEY_ACCOUNT, {"account_id": "BAD-1", "annual_spend": -5}],
    }
    components["BatchResultLines"] = {
        "type": "array",
        "items": {
            "anyOf": [
                {"$ref": REF + v} for v in ("Verdict", "Summary", "DecisionView", "BatchError")
            ]
        },
        "description": "`application/x-ndjson`: one result per line, in the order of the "
        "request's lines. A last line with `index` null reports a failure of the stream "
        "itself (e.g. the decision log), after which it ends.",
    }
    components["PortfolioRequest"] = {
        "type": "object",
        "required": ["accounts"],
        "additionalProperties": False,
        "properties": {
            "accounts": accounts,
            "portfolio": {
                "type": ["object", "null"],
                "additionalProperties": False,
                "properties": {
                    "smb_accounts_dropped_pct": {
                        "type": ["number", "null"],
                        "minimum": 0,
                        "maximum": 100,
                        "description": "Share of SMB accounts dropped in the last 12 months.",
                    }
                },
            },
        },
        "example": {
            "accounts": [KEY_ACCOUNT, POTENTIAL, GUARDRAIL],
            "portfolio": {"smb_accounts_dropped_pct": 12},
        },
    }
    # Validation errors are problems too: drop FastAPI's own 422 shapes.
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path in doc.get("paths", {}).values():
        for op in path.values():
            responses = op.get("responses", {})
            for code in list(responses):
                for media in responses[code].get("content", {}).values():
                    # FastAPI merges other media types' schemas into a model's $ref: undo that.
                    # A response class's own `type: string` lands next to a union's `anyOf`
                    # the same way.
                    schema = media.get("schema", {})
                    if schema.get("$ref"):
                        media["schema"] = {"$ref": schema["$ref"]}
                    elif "anyOf" in schema:
                        schema.pop("type", None)
                if code.isdigit() and int(code) >= 400:
                    responses[code] = _problem(
                        PROBLEMS.get(int(code), responses[code].get("description", ""))
                    )
    doc.setdefault("components", {})["securitySchemes"] = {
        "admin": {"type": "http", "scheme": "bearer", "description": "KAQ_ADMIN_TOKEN"}
    }
    return doc
