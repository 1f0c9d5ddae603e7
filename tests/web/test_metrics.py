"""The Prometheus text exposition written by lwm2m.web.metrics."""

from __future__ import annotations

import pytest

from lwm2m.web.metrics import CounterFamily, Metrics, escape_label, format_number, sanitize_name


def test_render_families_and_labels() -> None:
    metrics = Metrics()
    metrics.requests.inc(("read", "success"))
    metrics.requests.inc(("read", "success"))
    metrics.requests.inc(("write", "timeout"))
    metrics.events.inc(("NOTIFICATION",), 3)
    text = metrics.render(
        registrations=2,
        bootstrap_configs=None,
        backend_counters={"dtls.handshakes_total": 4, "queue_depth": 1.5},
    )
    lines = text.splitlines()
    assert "# TYPE lwm2m_registrations gauge" in lines
    assert "lwm2m_registrations 2" in lines
    assert "lwm2m_notifications_total 3" in lines
    assert 'lwm2m_requests_total{operation="read",result="success"} 2' in lines
    assert 'lwm2m_requests_total{operation="write",result="timeout"} 1' in lines
    assert "# TYPE lwm2m_dtls_handshakes_total counter" in lines
    assert "lwm2m_dtls_handshakes_total 4" in lines
    assert "# TYPE lwm2m_queue_depth gauge" in lines
    assert "lwm2m_queue_depth 1.5" in lines
    assert not any(line.startswith("lwm2m_bootstrap_configs") for line in lines)
    assert text.endswith("\n")


def test_escaping_and_numbers() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert format_number(3.0) == "3"
    assert format_number(0.25) == "0.25"
    assert format_number(float("inf")) == "+Inf"
    assert format_number(float("nan")) == "NaN"
    assert sanitize_name("9lives-x") == "_9lives_x"


def test_counter_family_checks_its_labels() -> None:
    family = CounterFamily("x_total", "help", ("a",))
    with pytest.raises(ValueError):
        family.inc(("1", "2"))
    with pytest.raises(ValueError):
        CounterFamily("bad name", "help", ())
