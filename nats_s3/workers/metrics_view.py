"""One /metrics for the whole group: whichever worker a scrape reaches asks its siblings (over their
private Unix sockets) for their figures and answers all of them, each sample labelled with its worker.

Figures that describe NATS rather than a process (what a bucket's stream holds) are the same in every
worker, so they are given once, unlabelled: `sum()` over them stays right."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ..observability.metrics import SHARED_FAMILIES
from .role import WorkerRole

SIBLING_TIMEOUT = 2.0


async def group_metrics(role: WorkerRole, own: bytes) -> bytes:
    """The group's view, from this worker's own figures and those of every sibling that answers."""
    others = [i for i in range(role.count) if i != role.index]
    answers = await asyncio.gather(*(_fetch(role, i) for i in others))
    texts: dict[int, str | None] = {role.index: own.decode(), **dict(zip(others, answers, strict=True))}
    return merge(texts, answering=role.index)


async def _fetch(role: WorkerRole, index: int) -> str | None:
    """A sibling's own figures; None if it does not answer (being restarted, or stuck)."""
    try:
        connector = aiohttp.UnixConnector(path=str(role.metrics_socket(index)))
        timeout = aiohttp.ClientTimeout(total=SIBLING_TIMEOUT)
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.get("http://worker/metrics") as resp,
        ):
            return await resp.text() if resp.status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge(texts: Mapping[int, str | None], *, answering: int) -> bytes:
    """Prometheus text of several workers -> one text: every sample gains `worker="<index>"`, except the
    shared families, taken from the answering worker alone; `nats_s3_worker_up` says who answered."""
    families: dict[str, Metric] = {}
    for index in sorted(texts):
        text = texts[index]
        if text is None:
            continue
        for family in text_string_to_metric_families(text):
            shared = family.name in SHARED_FAMILIES
            if shared and index != answering:
                continue
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labels = sample.labels if shared else {**sample.labels, "worker": str(index)}
                merged.samples.append(sample._replace(labels=labels))
    up = Metric("nats_s3_worker_up", "1 for each worker of this gateway that answered the scrape.", "gauge")
    for index in sorted(texts):
        up.add_sample("nats_s3_worker_up", {"worker": str(index)}, 0.0 if texts[index] is None else 1.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([*families.values(), up]))
    return bytes(generate_latest(registry))
