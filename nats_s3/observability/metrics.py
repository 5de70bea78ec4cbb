"""Prometheus metrics: per-operation requests, latency and bytes, NATS state, JetStream usage per bucket."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("nats_s3.metrics")

# `*_created` series double the output and say nothing a restart time does not.
disable_created_metrics()

# Families that describe NATS, not the process reporting them: with several workers, given once.
SHARED_FAMILIES = frozenset({
    "nats_s3_bucket_bytes", "nats_s3_multipart_uploads_in_progress", "nats_s3_bucket_uploads_in_progress",
    "nats_s3_bucket_quota_bytes", "nats_s3_bucket_quota_objects", "nats_s3_storage_bytes",
    "nats_s3_storage_quota_bytes",
})  # fmt: skip

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class StorageSnapshot:
    """JetStream usage read every `interval` seconds in the background: scrapes never wait on NATS."""

    def __init__(self) -> None:
        self.bucket_bytes: dict[str, int] = {}
        self.bucket_objects: dict[str, int] = {}
        self.uploads_in_progress: int | None = None
        self.bucket_uploads: dict[str, int] = {}
        self.bucket_quotas: dict[str, tuple[int, int]] = {}  # (max bytes, max objects), 0: none
        self.total_quota_bytes = 0
        self.updated = 0.0


class _StorageCollector(Collector):
    def __init__(self, snapshot: StorageSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snap = self._snapshot
        size = GaugeMetricFamily(
            "nats_s3_bucket_bytes", "Bytes the bucket's JetStream stream holds (stream info).", labels=["bucket"]
        )
        for bucket, value in sorted(snap.bucket_bytes.items()):
            size.add_metric([bucket], value)
        yield size
        objects = GaugeMetricFamily(
            "nats_s3_bucket_objects",
            "Live objects in the bucket, for buckets whose listing index this gateway holds.",
            labels=["bucket"],
        )
        for bucket, value in sorted(snap.bucket_objects.items()):
            objects.add_metric([bucket], value)
        yield objects
        uploads = GaugeMetricFamily(
            "nats_s3_bucket_uploads_in_progress", "Multipart uploads in progress in the bucket.", labels=["bucket"]
        )
        for bucket in sorted(snap.bucket_bytes):
            uploads.add_metric([bucket], snap.bucket_uploads.get(bucket, 0))
        yield uploads
        quota_bytes = GaugeMetricFamily(
            "nats_s3_bucket_quota_bytes", "The bucket's byte quota, for buckets that have one.", labels=["bucket"]
        )
        quota_objects = GaugeMetricFamily(
            "nats_s3_bucket_quota_objects", "The bucket's object quota, for buckets that have one.", labels=["bucket"]
        )
        for bucket, (max_bytes, max_objects) in sorted(snap.bucket_quotas.items()):
            if max_bytes:
                quota_bytes.add_metric([bucket], max_bytes)
            if max_objects:
                quota_objects.add_metric([bucket], max_objects)
        yield quota_bytes
        yield quota_objects
        yield GaugeMetricFamily(
            "nats_s3_storage_bytes", "Bytes all buckets' streams hold.", value=sum(snap.bucket_bytes.values())
        )
        if snap.total_quota_bytes:
            yield GaugeMetricFamily(
                "nats_s3_storage_quota_bytes", "The total quota (--quota.total).", value=snap.total_quota_bytes
            )
        if snap.uploads_in_progress is not None:
            yield GaugeMetricFamily(
                "nats_s3_multipart_uploads_in_progress",
                "Multipart uploads created and neither completed nor aborted.",
                value=snap.uploads_in_progress,
            )
        yield GaugeMetricFamily(
            "nats_s3_storage_snapshot_age_seconds",
            "Seconds since the JetStream usage figures were read.",
            value=(time.time() - snap.updated) if snap.updated else float("nan"),
        )


class _CollectorStatsCollector(Collector):
    """The reclamation collector's figures (this gateway's, while it holds the collector lease)."""

    def __init__(self, stats: Any) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Any]:
        s = self._stats
        yield GaugeMetricFamily(
            "nats_s3_gc_lease_held", "1 while this gateway is the collector.", value=int(s.lease_held)
        )
        yield CounterMetricFamily("nats_s3_gc_passes", "Collector passes made by this gateway.", value=s.passes)
        yield CounterMetricFamily(
            "nats_s3_gc_freed_subjects", "Chunk subjects freed (no version, upload or part referenced them).",
            value=s.freed_subjects,
        )  # fmt: skip
        yield CounterMetricFamily("nats_s3_gc_settled_claims", "Reclamation claims settled.", value=s.settled_claims)
        yield CounterMetricFamily(
            "nats_s3_gc_expired_uploads", "Multipart uploads aborted for age.", value=s.expired_uploads
        )
        yield CounterMetricFamily(
            "nats_s3_index_snapshots_renewed",
            "Listing index snapshots rewritten by the collector for buckets no gateway was listing.",
            value=s.renewed_snapshots,
        )
        blocked = GaugeMetricFamily(
            "nats_s3_gc_blocked",
            "1 for a bucket whose collection stopped at a record that does not parse (see the log).",
            labels=["bucket"],
        )
        for bucket in sorted(s.blocked):
            blocked.add_metric([bucket], 1)
        yield blocked
        yield GaugeMetricFamily(
            "nats_s3_gc_last_pass_seconds", "How long the last collector pass took.", value=s.last_pass_seconds
        )


class _ReadCacheCollector(Collector):
    """The small-object read cache of this process (store/read_cache.py)."""

    def __init__(self, cache: Any) -> None:
        self._cache = cache

    def collect(self) -> Iterable[Any]:
        c = self._cache
        yield CounterMetricFamily("nats_s3_read_cache_hits", "GETs served from the small-object cache.", value=c.hits)
        yield CounterMetricFamily(
            "nats_s3_read_cache_misses", "GETs of cacheable objects read from NATS.", value=c.misses
        )
        yield GaugeMetricFamily("nats_s3_read_cache_bytes", "Memory the small-object cache holds.", value=c.bytes)


class _EventsCollector(Collector):
    """Event notifications this process published (store/event_publisher.py)."""

    def __init__(self, events: Any) -> None:
        self._events = events

    def collect(self) -> Iterable[Any]:
        e = self._events
        yield CounterMetricFamily("nats_s3_events_published", "Event notifications published.", value=e.published)
        yield CounterMetricFamily(
            "nats_s3_events_failed", "Event notifications no attempt could publish (logged).", value=e.failed
        )


class Metrics:
    """All of the gateway's metrics in one registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "nats_s3_requests_total",
            "S3 requests by operation and HTTP status.",
            ["operation", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "nats_s3_request_duration_seconds",
            "S3 request latency by operation.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "nats_s3_received_bytes_total",
            "Request body bytes received, by operation.",
            ["operation"],
            registry=self.registry,
        )
        self.bytes_out = Counter(
            "nats_s3_sent_bytes_total", "Response body bytes sent, by operation.", ["operation"], registry=self.registry
        )
        self.in_flight = Gauge("nats_s3_requests_in_flight", "S3 requests being served.", registry=self.registry)
        self.nats_connected = Gauge("nats_s3_nats_connected", "1 while connected to NATS.", registry=self.registry)
        self.nats_reconnects = Counter(
            "nats_s3_nats_reconnects_total", "Reconnections to NATS.", registry=self.registry
        )
        self.storage = StorageSnapshot()
        self.registry.register(_StorageCollector(self.storage))
        self._children: dict[tuple[str, int], tuple[Any, Any, Any, Any]] = {}
        self._watched: dict[str, Collector] = {}

    def watch_collector(self, stats: Any) -> None:
        """Report this collector's stats (a collector built after a reconnect replaces the last one)."""
        self._watch("collector", _CollectorStatsCollector(stats))

    def watch_read_cache(self, cache: Any) -> None:
        self._watch("read_cache", _ReadCacheCollector(cache))

    def watch_events(self, events: Any) -> None:
        self._watch("events", _EventsCollector(events))

    def _watch(self, name: str, collector: Collector) -> None:
        """Report `collector` as the one of its kind (one built after a reconnect replaces the last)."""
        previous = self._watched.pop(name, None)
        if previous is not None:
            self.registry.unregister(previous)
        self._watched[name] = collector
        self.registry.register(collector)

    def observe(self, operation: str, status: int, seconds: float, bytes_in: int, bytes_out: int) -> None:
        # The labelled children, looked up once per operation and status: `labels()` validates and
        # locks on every call.
        children = self._children.get((operation, status))
        if children is None:
            children = self._children[(operation, status)] = (
                self.requests.labels(operation, str(status)),
                self.latency.labels(operation),
                self.bytes_in.labels(operation),
                self.bytes_out.labels(operation),
            )
        requests, latency, received, sent = children
        requests.inc()
        latency.observe(seconds)
        if bytes_in:
            received.inc(bytes_in)
        if bytes_out:
            sent.inc(bytes_out)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))


async def refresh_storage(
    metrics: Metrics, read: Callable[[StorageSnapshot], Awaitable[None]], interval: float = 15.0
) -> None:
    """Keep the JetStream usage snapshot fresh; a failed read keeps the last figures."""
    while True:
        try:
            await read(metrics.storage)
            metrics.storage.updated = time.time()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("storage metrics refresh failed", extra={"error": repr(exc)})
        await asyncio.sleep(interval)
