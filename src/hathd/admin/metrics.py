"""Prometheus metrics, rendered on each scrape from the components' ``statistics()``.

Families (text format 0.0.4, via prometheus-client):

- ``hathd_up`` (gauge, 1), ``hathd_uptime_seconds``
- ``hathd_service_up{service}`` — 1 while the service runs
- ``hathd_service_restarts_total{service}`` — restarts by the supervisor
- ``hathd_service_stat{service,stat}`` — every numeric field of a service's statistics
  (nested fields joined with ``_``), so a new counter appears without code here
- ``hathd_store_writes_total``, ``hathd_store_batches_total``, ``hathd_store_queued``
- ``hathd_bus_published_total``, ``hathd_bus_subscribers``, ``hathd_bus_lagged_total``
- the measured counters and histograms of :mod:`hathd.metrics` (H@H request durations and
  bytes, job run times by kind, lane waits, finished jobs)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hathd.metrics import REGISTRY as MEASURED
from hathd.runtime import Runtime

_STARTED = time.time()


def _numbers(prefix: str, value: Any) -> Iterator[tuple[str, float]]:
    if isinstance(value, int | float):
        yield prefix, float(value)
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _numbers(f"{prefix}_{key}" if prefix else str(key), sub)


class _RuntimeCollector:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hathd_up", "1 while the daemon answers")
        up.add_metric([], 1.0)
        yield up
        uptime = GaugeMetricFamily("hathd_uptime_seconds", "seconds since the process started")
        uptime.add_metric([], time.time() - _STARTED)
        yield uptime
        svc_up = GaugeMetricFamily("hathd_service_up", "1 while a service runs", labels=["service"])
        restarts = CounterMetricFamily(
            "hathd_service_restarts", "restarts of a crashed service", labels=["service"]
        )
        stat = GaugeMetricFamily(
            "hathd_service_stat", "numeric statistics of a service", labels=["service", "stat"]
        )
        for record in self.rt.supervisor.statistics():
            name = record["name"]
            svc_up.add_metric([name], 1.0 if record["state"] == "running" else 0.0)
            restarts.add_metric([name], float(record["restarts"]))
            for key, number in _numbers("", record.get("statistics") or {}):
                stat.add_metric([name, key], number)
        yield svc_up
        yield restarts
        yield stat
        store = self.rt.store.statistics()
        writes = CounterMetricFamily("hathd_store_writes", "write closures committed")
        writes.add_metric([], float(store.writes))
        yield writes
        batches = CounterMetricFamily("hathd_store_batches", "group-commit transactions")
        batches.add_metric([], float(store.batches))
        yield batches
        queued = GaugeMetricFamily("hathd_store_queued", "writes waiting for the writer thread")
        queued.add_metric([], float(store.queued))
        yield queued
        bus = self.rt.bus.statistics()
        published = CounterMetricFamily("hathd_bus_published", "events published")
        published.add_metric([], float(bus.published))
        yield published
        subs = GaugeMetricFamily("hathd_bus_subscribers", "event subscribers now")
        subs.add_metric([], float(bus.subscribers))
        yield subs
        lagged = CounterMetricFamily("hathd_bus_lagged", "subscribers dropped for lagging")
        lagged.add_metric([], float(bus.lagged_drops))
        yield lagged


def render_metrics(rt: Runtime) -> tuple[bytes, str]:
    """The metrics of ``rt`` in Prometheus text format, and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RuntimeCollector(rt))
    return generate_latest(registry) + generate_latest(MEASURED), CONTENT_TYPE_LATEST
