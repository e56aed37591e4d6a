"""What a running app holds, reachable from a request as `state_of(request)`."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from .bodies import BodyPace, JsonLimits
from .decision_log import DecisionLog
from .errors import ServiceUnavailable
from .metrics import Metrics
from .registry import Registry
from .ruleset_sync import RulesetSync
from .service import Service
from .settings import Settings
from .studio import Studio


@dataclass
class AppState:
    """Built in the lifespan; one per app instance (so one per worker process)."""

    settings: Settings
    registry: Registry
    decision_log: DecisionLog
    metrics: Metrics
    service: Service
    rulesets: RulesetSync  # the source the registry follows (reload, publish, versions)
    studio: Studio  # the studio's checks, trials, impacts and saves

    @property
    def limits(self) -> JsonLimits:
        return JsonLimits(self.settings.max_json_depth, self.settings.max_string_chars)

    @property
    def pace(self) -> BodyPace:
        return BodyPace(self.settings.body_timeout_seconds, self.settings.body_min_bytes_per_second)


def state_of(request: Request) -> AppState:
    """The app's state, or 503 before the lifespan has built it."""
    state = getattr(request.app.state, "kaq", None)
    if state is None:
        raise ServiceUnavailable("The service is starting.")
    return state
