"""The shipped docs/cluster-nginx.conf: nginx accepts it, and it says what the cluster tests run.

tests/cluster/cluster_helpers.stream_config renders the same stream directives on
loopback ports; this keeps the file users copy in step with what is tested.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cluster_helpers import nginx_binary

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "cluster-nginx.conf"


def _directives() -> list[str]:
    text = re.sub(r"#[^\n]*", "", SHIPPED.read_text())
    return [d.strip() for d in re.split(r"[;{}]", text) if d.strip()]


def test_nginx_accepts_the_shipped_configuration(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    check = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(SHIPPED)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr


def test_the_shipped_configuration_is_the_tested_one() -> None:
    directives = _directives()
    upstreams = [d for d in directives if d.startswith("upstream ")]
    assert upstreams == ["upstream lwm2m_coap", "upstream lwm2m_coaps"]
    assert directives.count("hash $remote_addr:$remote_port consistent") == 2
    servers = [d for d in directives if d.startswith("server ") and ":" in d]
    assert servers and all(d.endswith(" max_fails=1 fail_timeout=30s") for d in servers)
    assert [d for d in directives if d.startswith("listen ")] == [
        "listen 5683 udp reuseport",
        "listen 5684 udp reuseport",
    ]
    assert not [d for d in directives if d.startswith("proxy_responses")]
    assert directives.count("proxy_timeout 600s") == 2
