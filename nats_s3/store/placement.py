"""Placement map: S3 regions (a CreateBucket's LocationConstraint) -> where JetStream keeps the bucket's
stream: a cluster, server tags every replica's server must carry, and how many replicas.

File (`--placement FILE`), every field optional:
    {"eu-central-1": {"cluster": "c1", "tags": ["region:eu"], "replicas": 3}, "us-west-2": {}}
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class PlacementError(ValueError):
    pass


class Placement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cluster: str | None = Field(default=None, min_length=1, max_length=256)
    tags: list[str] = Field(default_factory=list, max_length=32)
    replicas: int | None = Field(default=None, ge=1, le=5)

    def stream_placement(self) -> dict[str, Any] | None:
        """The stream config's `placement`, None for the server's default."""
        if self.cluster is None and not self.tags:
            return None
        found: dict[str, Any] = {}
        if self.cluster is not None:
            found["cluster"] = self.cluster
        if self.tags:
            found["tags"] = list(self.tags)
        return found


def parse_placement_map(text: str, where: str = "placement map") -> dict[str, Placement]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise PlacementError(f"{where}: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PlacementError(f"{where}: must be a JSON object of region -> placement")
    found: dict[str, Placement] = {}
    for region, spec in raw.items():
        if not REGION_RE.match(region):
            raise PlacementError(f"{where}: {region!r} is not a region name ([a-z0-9-], up to 63)")
        try:
            found[region] = Placement.model_validate(spec if spec is not None else {})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
            raise PlacementError(f"{where}: region {region}: {problems}") from None
    return found


def load_placement_map(path: Path) -> dict[str, Placement]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise PlacementError(f"placement map {path}: {exc.strerror or exc}") from None
    return parse_placement_map(text, f"placement map {path}")
