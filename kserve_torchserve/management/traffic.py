"""Which version answers a request: a pure function of the split, the request's headers and a random source.

Order, first match wins:
1. an explicit version: the ``x-model-version`` header (a versioned route sets it too),
   or the v2 request's ``model_version`` (gRPC);
2. with ``sticky_header`` set and present: the hash of its value, placed on the weights,
   so one value always reaches one version while the weights stay the same;
3. the weights, drawn from ``random`` (seedable in tests);
4. no split: the default version.
A guarded canary that was rolled back has weight 0; its share goes to the others in
proportion to their weights. Shadow copies are drawn separately (``shadows``).

``Split.parse`` checks a split body (``PUT /models/{m}/traffic``, ``TS_TRAFFIC_SPLIT``, the
``traffic`` key of a model's config) and names the first problem it finds.
"""

from __future__ import annotations

import hashlib
import random as _random
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from ..errors import ManagementError, shown

_HEADER = re.compile(r"[A-Za-z0-9-]{1,64}")
Random = Callable[[], float]  # uniform in [0, 1)


@dataclass(frozen=True)
class Guard:
    """Roll the canary ``version`` back when its 5xx share over ``window_s`` exceeds ``max_error_rate``."""

    version: str
    max_error_rate: float
    min_requests: int = 100
    window_s: float = 60.0


@dataclass(frozen=True)
class RolledBack:
    version: str
    error_rate: float
    at: float  # unix time


@dataclass(frozen=True)
class Split:
    weights: Mapping[str, int]  # version -> percent, summing to 100
    shadow: Mapping[str, int] = field(default_factory=dict)  # version -> percent of requests copied to it
    sticky_header: str | None = None
    guard: Guard | None = None
    rolled_back: RolledBack | None = None

    def effective(self) -> dict[str, float]:
        """The weights in force: a rolled-back canary's share goes to the others, in proportion."""
        if self.rolled_back is None:
            return {v: float(w) for v, w in self.weights.items()}
        rest = {v: float(w) for v, w in self.weights.items() if v != self.rolled_back.version}
        total = sum(rest.values())
        if total == 0:  # the canary had everything: the others share it evenly
            return {v: 100 / len(rest) for v in rest}
        return {v: w * 100 / total for v, w in rest.items()}

    def body(self) -> dict[str, Any]:
        """The split as ``GET /models/{m}/traffic`` shows it."""
        shown: dict[str, Any] = {"weights": dict(self.weights), "shadow": dict(self.shadow),
                                 "sticky_header": self.sticky_header,
                                 "guard": None if self.guard is None else vars(self.guard).copy(),
                                 "rolled_back": None if self.rolled_back is None else vars(self.rolled_back).copy()}
        return shown

    @staticmethod
    def parse(body: Any, versions: set[str]) -> "Split":
        """A split from its JSON form; ManagementError(400) naming the first problem."""
        if isinstance(body, dict) and "weights" not in body and body and all(isinstance(v, int) for v in body.values()):
            body = {"weights": body}  # the short form: {"1.0": 80, "2.0": 20}
        if not isinstance(body, dict):
            raise ManagementError(400, 'traffic must be an object like {"weights": {"1.0": 80, "2.0": 20}}')
        unknown = set(body) - {"weights", "shadow", "sticky_header", "guard"}
        if unknown:
            raise ManagementError(400, f"unknown traffic fields {sorted(unknown)}: expected weights, shadow, "
                                       "sticky_header, guard")
        weights = _percentages(body.get("weights"), "weights", versions)
        if sum(weights.values()) != 100:
            raise ManagementError(400, f"weights sum to {sum(weights.values())}: they must sum to 100")
        shadow = _percentages(body.get("shadow") or {}, "shadow", versions)
        sticky = body.get("sticky_header")
        if sticky is not None and (not isinstance(sticky, str) or not _HEADER.fullmatch(sticky)):
            raise ManagementError(400, "sticky_header must be a header name (letters, digits, '-')")
        return Split(weights, shadow, sticky.lower() if sticky else None, _guard(body.get("guard"), weights))


def _percentages(raw: Any, what: str, versions: set[str]) -> dict[str, int]:
    if not isinstance(raw, dict) or (what == "weights" and not raw):
        raise ManagementError(400, f"{what} must be an object of version -> integer percent")
    for version, percent in raw.items():
        if version not in versions:
            raise ManagementError(400, f"{what}: version {shown(version)} is not served (versions: "
                                       f"{', '.join(sorted(versions))})")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ManagementError(400, f"{what}: version {version} has {shown(percent)}: expected an integer 0-100")
    return dict(raw)


def _guard(raw: Any, weights: Mapping[str, int]) -> Guard | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("version") not in weights:
        raise ManagementError(400, "guard.version must name a version of the weights")
    unknown = set(raw) - {"version", "max_error_rate", "min_requests", "window_s"}
    if unknown:
        raise ManagementError(400, f"unknown guard fields {sorted(unknown)}")
    rate, minimum, window = raw.get("max_error_rate"), raw.get("min_requests", 100), raw.get("window_s", 60)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ManagementError(400, "guard.max_error_rate must be a number from 0 up to (not including) 1")
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise ManagementError(400, "guard.min_requests must be an integer >= 1")
    if isinstance(window, bool) or not isinstance(window, (int, float)) or window <= 0:
        raise ManagementError(400, "guard.window_s must be a number > 0")
    return Guard(str(raw["version"]), float(rate), minimum, float(window))


def _place(point: float, weights: Mapping[str, float]) -> str:
    """The version whose share of [0, 100) holds ``point`` (versions in a fixed order)."""
    total = 0.0
    chosen = ""
    for version in sorted(weights):
        if weights[version] <= 0:
            continue
        chosen = version
        total += weights[version]
        if point < total:
            return version
    return chosen  # rounding at the top end


def sticky_point(value: str) -> float:
    """A point in [0, 100) that depends only on the header's value."""
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def choose(split: Split | None, default: str, headers: Mapping[str, str] | None, explicit: str | None,
           random: Random = _random.random) -> str:
    """The version that answers (see the module docstring for the order)."""
    if explicit:
        return explicit
    if split is None:
        return default
    weights = split.effective()
    if split.sticky_header and headers:
        value = headers.get(split.sticky_header)
        if value:
            return _place(sticky_point(value), weights)
    return _place(random() * 100, weights)


def shadows(split: Split | None, answering: str, random: Random = _random.random) -> list[str]:
    """Versions that get a copy of this request: each with its own percent, never the one answering."""
    if split is None or not split.shadow:
        return []
    return [v for v, percent in sorted(split.shadow.items()) if v != answering and random() * 100 < percent]


def with_rollback(split: Split, rolled_back: RolledBack) -> Split:
    return replace(split, rolled_back=rolled_back)


def startup_splits(specs: Sequence[Any], splits: Mapping[str, Any]) -> tuple[dict[str, Split], list[str]]:
    """The splits start-up applies: ``TS_TRAFFIC_SPLIT`` (``splits``), else a ``traffic`` key in a model's
    config (``spec.traffic``), checked against the versions ``specs`` serve; and one line per problem."""
    versions: dict[str, set[str]] = {}
    for spec in specs:
        versions.setdefault(spec.name, set()).add(spec.version)
    parsed: dict[str, Split] = {}
    problems = []
    for name, body in {**{s.name: s.traffic for s in specs if s.traffic is not None}, **splits}.items():
        where = "TS_TRAFFIC_SPLIT" if name in splits else f"the traffic of model {name}'s config"
        if name not in versions:
            problems.append(f"{where} names model {name}, which is not served")
            continue
        try:
            parsed[name] = Split.parse(body, versions[name])
        except ManagementError as exc:
            problems.append(f"{where}: model {name}: {exc.message}")
    return parsed, problems
