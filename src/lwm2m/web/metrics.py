"""Prometheus metrics in the text exposition format (version 0.0.4).

Small enough to write here rather than pull in ``prometheus_client``: a
counter family keyed by label values, and a renderer. Server-side counters
(DTLS handshakes ...) come from the backends' ``counters()`` at scrape time,
labelled ones (refusals by reason, :mod:`lwm2m.web.refusals`) as
:class:`LabelledCounter` families; a labelled family replaces an unlabelled
backend counter of the same name (its sum).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def escape_label(value: str) -> str:
    """Escape a label value as the Prometheus text format requires."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_number(value: float) -> str:
    """A sample value in the Prometheus text format (NaN, +Inf, integers without ``.0``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def sanitize_name(name: str) -> str:
    """A metric name from a free-form counter key (``dtls.handshakes`` -> ``dtls_handshakes``)."""
    cleaned = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    if not cleaned or cleaned[0].isdigit():
        cleaned = "_" + cleaned
    return cleaned


@dataclass
class CounterFamily:
    """A counter with fixed label names; ``inc(("read", "success"))``."""

    name: str
    help: str
    labels: tuple[str, ...]
    values: dict[tuple[str, ...], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"invalid metric name {self.name!r}")

    def inc(self, label_values: tuple[str, ...], amount: float = 1.0) -> None:
        """Add to one label combination; a wrong label count is a programming error."""
        if len(label_values) != len(self.labels):
            raise ValueError(f"{self.name}: expected {len(self.labels)} label values")
        self.values[label_values] = self.values.get(label_values, 0.0) + amount

    def get(self, label_values: tuple[str, ...]) -> float:
        """The count of one label combination (0 when never incremented)."""
        return self.values.get(label_values, 0.0)


@dataclass(frozen=True, slots=True)
class LabelledCounter:
    """A counter family read at scrape time: its samples as (labels, value)."""

    name: str
    help: str
    samples: Sequence[tuple[Mapping[str, str], float]]


@dataclass(frozen=True, slots=True)
class Gauge:
    """A gauge family read at scrape time (the cluster's nodes ...): its samples as (labels, value)."""

    name: str
    help: str
    samples: Sequence[tuple[Mapping[str, str], float]]


def render_family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[Mapping[str, str], float]]
) -> list[str]:
    """The HELP, TYPE and sample lines of one metric family."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if labels:
            inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{inner}}} {format_number(value)}")
        else:
            lines.append(f"{name} {format_number(value)}")
    return lines


class Metrics:
    """What the web layer counts itself, plus gauges and backend counters at render time."""

    def __init__(self) -> None:
        self.requests = CounterFamily(
            "lwm2m_requests_total",
            "Device requests sent through the REST API, by operation and result.",
            ("operation", "result"),
        )
        self.events = CounterFamily("lwm2m_events_total", "Server events seen, by kind.", ("kind",))
        self.http_requests = CounterFamily(
            "lwm2m_http_requests_total", "HTTP requests answered, by status class.", ("status",)
        )

    @property
    def notifications(self) -> float:
        """Notifications seen so far, counted from the event stream."""
        return self.events.get(("NOTIFICATION",))

    def render(
        self,
        *,
        registrations: int | None,
        bootstrap_configs: int | None,
        backend_counters: Mapping[str, float],
        labelled: Sequence[LabelledCounter] = (),
        gauges: Sequence[Gauge] = (),
    ) -> str:
        """The /metrics text; gauges and backend counters are read now, not tracked."""
        lines: list[str] = []
        if registrations is not None:
            lines += render_family(
                "lwm2m_registrations",
                "gauge",
                "Clients currently registered.",
                [({}, registrations)],
            )
        if bootstrap_configs is not None:
            lines += render_family(
                "lwm2m_bootstrap_configs",
                "gauge",
                "Bootstrap configurations stored.",
                [({}, bootstrap_configs)],
            )
        lines += render_family(
            "lwm2m_notifications_total",
            "counter",
            "Observe notifications received from clients.",
            [({}, self.notifications)],
        )
        for family in (self.requests, self.events, self.http_requests):
            lines += render_family(
                family.name,
                "counter",
                family.help,
                [
                    (dict(zip(family.labels, key, strict=True)), v)
                    for key, v in sorted(family.values.items())
                ],
            )
        for counter in labelled:
            lines += render_family(counter.name, "counter", counter.help, counter.samples)
        for gauge in gauges:
            lines += render_family(gauge.name, "gauge", gauge.help, gauge.samples)
        taken = {counter.name for counter in labelled} | {gauge.name for gauge in gauges}
        for key, value in sorted(backend_counters.items()):
            name = sanitize_name(key if key.startswith("lwm2m_") else f"lwm2m_{key}")
            if name in taken:
                continue
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += render_family(name, kind, f"Server counter {key}.", [({}, value)])
        return "\n".join(lines) + "\n"
