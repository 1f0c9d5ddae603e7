"""The layering of docs/architecture.md, enforced: import-linter checks the contracts of .importlinter.

A second run against a contract the code cannot keep proves the check can fail
(a linter that is not really run would pass both).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    # A subprocess: import-linter builds its graph from sys.path, and this
    # checkout's src/ must be what it reads, whatever is installed.
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_import_contracts_are_kept() -> None:
    result = _lint(ROOT / ".importlinter")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and "0 broken" in result.stdout


def test_a_broken_contract_fails(tmp_path: Path) -> None:
    upside_down = tmp_path / "upside_down.ini"
    upside_down.write_text(
        "[importlinter]\nroot_package = lwm2m\n\n"
        "[importlinter:contract:upside-down]\nname = coap above the roles\n"
        "type = layers\nlayers =\n    lwm2m.coap\n    lwm2m.client\n"
    )
    result = _lint(upside_down)
    assert result.returncode != 0
    assert "coap above the roles BROKEN" in result.stdout
