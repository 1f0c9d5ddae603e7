"""Where the model tests find DDF files (a uniquely named module: tests are not packages).

``OWN_DDF`` holds small files written for these tests; they are part of the
repository, so the loader is tested from any clone. The OMNA registry files are
not: this repository's CI keeps them in ``shared/ddf`` beside the clone, and the
tests that check our built-in definitions against them skip when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

OWN_DDF = Path(__file__).resolve().parent / "ddf"
BROKEN_DDF = OWN_DDF / "broken"

#: names a folder of OMNA registry files instead of looking for ``shared/ddf``
OMA_DDF_VARIABLE = "LWM2M_OMA_DDF"


def _find_oma_ddf() -> Path | None:
    named = os.environ.get(OMA_DDF_VARIABLE)
    if named:
        # Asked for explicitly: a wrong path must fail the tests, not skip them.
        return Path(named)
    repository = Path(__file__).resolve().parents[2]
    # ``../shared/ddf`` beside the clone; also further up, for a git worktree kept in a
    # folder beside the main checkout.
    for folder in repository.parents:
        candidate = folder / "shared" / "ddf"
        if candidate.is_dir() and any(candidate.glob("*.xml")):
            return candidate
    return None


_FOUND = _find_oma_ddf()
#: the OMNA registry files (a path that does not exist when they were not found)
OMA_DDF = _FOUND if _FOUND is not None else Path("shared/ddf (not found)")
OMA_FILES = sorted(OMA_DDF.glob("*.xml")) if _FOUND is not None else []

needs_oma_ddf = pytest.mark.skipif(
    _FOUND is None,
    reason=(
        "no OMNA registry DDF files (not in this repository): "
        f"put them in shared/ddf beside the clone or set ${OMA_DDF_VARIABLE}"
    ),
)
