"""Labelled counters and histograms for the request path, kept in plain dictionaries
and turned into Prometheus families only when scraped.

Why not prometheus_client's own: each of its increments takes a lock and an observe
walks the buckets in Python; a call recorded 5 of them (~3.5 µs on an idle machine,
twice that under load). Here an increment is a dictionary update and an observe a
bisect, on the event loop's thread (the only one that records these).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

# Label sets kept per family, at most: past it, new ones are counted under "_other" so
# a runaway label value cannot grow memory.
MAX_SERIES = 10_000
OTHER = "_other"


def _bounded(store: dict[tuple[str, ...], object], key: tuple[str, ...]) -> tuple[str, ...]:
    if key in store or len(store) < MAX_SERIES:
        return key
    return (OTHER,) * len(key)


class CountFamily(Collector):
    """A counter family (``name_total``, and ``name_created`` per label set)."""

    def __init__(
        self, name: str, doc: str, labels: Sequence[str], registry: CollectorRegistry
    ) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.values: dict[tuple[str, ...], float] = {}
        self._created: dict[tuple[str, ...], float] = {}
        registry.register(self)

    def inc(self, key: tuple[str, ...], amount: float = 1.0) -> None:
        """Add ``amount`` to the series of ``key`` (label values in order)."""
        values = self.values
        value = values.get(key)
        if value is None:
            key = _bounded(values, key)  # type: ignore[arg-type]
            value = values.get(key, 0.0)
            self._created.setdefault(key, time.time())
        values[key] = value + amount

    def get(self, key: tuple[str, ...]) -> float:
        return self.values.get(key, 0.0)

    def set_total(self, key: tuple[str, ...], value: float) -> None:
        """The series of ``key`` is ``value``: for a count kept elsewhere, read when
        scraped (it only ever grows there)."""
        key = _bounded(self.values, key)  # type: ignore[arg-type]
        self._created.setdefault(key, time.time())
        self.values[key] = value

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in list(self.values.items()):
            family.add_metric(list(key), value, created=self._created.get(key))
        yield family


class TimingFamily(Collector):
    """A histogram family; the newest exemplar (a traced call's id) per bucket."""

    def __init__(
        self,
        name: str,
        doc: str,
        labels: Sequence[str],
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = tuple(float(b) for b in buckets)
        # Per label set: [count in each bucket (not cumulative)..., +Inf bucket, sum].
        self.values: dict[tuple[str, ...], list[float]] = {}
        self._exemplars: dict[tuple[tuple[str, ...], int], Exemplar] = {}
        registry.register(self)

    def observe(
        self, key: tuple[str, ...], seconds: float, exemplar: dict[str, str] | None = None
    ) -> None:
        """Count ``seconds`` in the series of ``key``."""
        row = self.values.get(key)
        if row is None:
            key = _bounded(self.values, key)  # type: ignore[arg-type]
            row = self.values.setdefault(key, [0.0] * (len(self.bounds) + 2))
        at = bisect_left(self.bounds, seconds)
        row[at] += 1
        row[-1] += seconds
        if exemplar is not None:
            self._exemplars[key, at] = Exemplar(exemplar, seconds, time.time())

    def count(self, key: tuple[str, ...]) -> float:
        row = self.values.get(key)
        return sum(row[:-1]) if row is not None else 0.0

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        bounds = [*(_le(b) for b in self.bounds), "+Inf"]
        for key, row in list(self.values.items()):
            total = 0.0
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            for at, le in enumerate(bounds):
                total += row[at]
                exemplar = self._exemplars.get((key, at))
                buckets.append((le, total) if exemplar is None else (le, total, exemplar))
            family.add_metric(list(key), buckets, row[-1])
        yield family


def _le(bound: float) -> str:
    """A bucket bound as prometheus_client writes it (``0.5``, ``1.0``, ``60.0``)."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]
