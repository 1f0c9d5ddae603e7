"""The server commands collect garbage less often (see lwm2m.cli.gc_policy for why)."""

from __future__ import annotations

import gc
from collections.abc import Coroutine, Iterator
from types import ModuleType
from typing import Any

import pytest

from lwm2m.cli import bootstrap as bootstrap_command
from lwm2m.cli import server as server_command
from lwm2m.cli.gc_policy import OLDER_THRESHOLDS, YOUNG_THRESHOLD
from lwm2m.cli.main import build_parser


@pytest.fixture
def thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


@pytest.mark.parametrize(
    ("name", "command"), [("server", server_command), ("bootstrap", bootstrap_command)]
)
def test_the_server_commands_run_with_the_tuned_collector(
    name: str, command: ModuleType, monkeypatch: pytest.MonkeyPatch, thresholds: None
) -> None:
    seen: list[tuple[int, ...]] = []

    def run(main: Coroutine[Any, Any, int]) -> int:
        main.close()  # never started: only when it would start matters here
        seen.append(gc.get_threshold())
        return 0

    monkeypatch.setattr(command.asyncio, "run", run)
    argv = [name]
    args = build_parser(argv).parse_args(argv)
    assert command.run(args) == 0
    assert seen == [(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)]
    assert YOUNG_THRESHOLD > 700 and gc.isenabled()  # less often, not never
