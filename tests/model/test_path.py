"""Path parsing, ranges, navigation and ordering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.model.path import (
    MAX_INSTANCE_ID,
    MAX_OBJECT_ID,
    MAX_RESOURCE_ID,
    MAX_RESOURCE_INSTANCE_ID,
    Path,
    PathError,
)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("/", ()),
        ("", ()),
        ("/3", (3,)),
        ("3", (3,)),
        ("/3/0", (3, 0)),
        ("/3/0/1", (3, 0, 1)),
        ("/3/0/7/2", (3, 0, 7, 2)),
        ("/0/0", (0, 0)),
        ("/65535/65534/65535/65534", (65535, 65534, 65535, 65534)),
    ],
)
def test_parse_valid(text: str, ids: tuple[int, ...]) -> None:
    path = Path.parse(text)
    assert path.ids == ids
    assert path.depth == len(ids)


@pytest.mark.parametrize(
    "text",
    [
        "/3/",  # trailing slash
        "//3",
        "/3//0",
        "/a",
        "/3/x/1",
        "/-1",
        "/+3",
        "/3.0",
        "/ 3",
        "/3 ",
        "/03",  # leading zero
        "/3/00",
        "/1/2/3/4/5",  # too deep
        "/\u0663",  # Arabic-Indic digit three: isdigit() but not ASCII
        "/65536",  # object ID is 16-bit
        "/3/65535",  # 65535 is reserved "no instance"
        "/3/0/65536",
        "/3/0/1/65535",
        "/3/" + "9" * 5000,  # must be a PathError, not int()'s digit-limit ValueError
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(PathError):
        Path.parse(text)


def test_parse_rejects_non_string() -> None:
    with pytest.raises(PathError, match="must be a string"):
        Path.parse(3)  # type: ignore[arg-type]


def test_range_limits_are_the_published_ones() -> None:
    # Seeds say 8-bit instance IDs; we accept the published 0-65534 superset.
    assert (MAX_OBJECT_ID, MAX_INSTANCE_ID, MAX_RESOURCE_ID, MAX_RESOURCE_INSTANCE_ID) == (
        65535,
        65534,
        65535,
        65534,
    )
    assert Path.parse("/3/256").instance_id == 256
    assert Path.parse("/3/0/1/300").resource_instance_id == 300


@pytest.mark.parametrize(
    "args",
    [(-1,), (3, -1), (65536,), (3, 65535), (3, 0, 65536), (3, 0, 1, 65535), (True,), (3, 0.0)],
)
def test_constructor_checks_ranges(args: tuple[object, ...]) -> None:
    with pytest.raises(PathError, match="out of range"):
        Path(*args)  # type: ignore[arg-type]


def test_constructor_rejects_gaps() -> None:
    with pytest.raises(PathError, match="without the IDs above it"):
        Path(3, None, 1)
    with pytest.raises(PathError):
        Path(None, 0)


def test_of_rejects_more_than_four_ids() -> None:
    with pytest.raises(PathError, match="at most 4"):
        Path.of(1, 2, 3, 4, 5)


def test_from_segments() -> None:
    assert Path.from_segments(["3", "0", "1"]) == Path(3, 0, 1)
    assert Path.from_segments(("3", "0", "")) == Path(3, 0)  # trailing empty segment ignored
    assert Path.from_segments([]) == Path()
    for bad in (["3/0"], ["3", "", "1"], ["", ""], ["x"]):
        with pytest.raises(PathError):
            Path.from_segments(bad)


def test_str_repr_segments() -> None:
    path = Path(3, 0, 1)
    assert str(path) == "/3/0/1"
    assert repr(path) == "Path('/3/0/1')"
    assert path.segments() == ("3", "0", "1")
    assert str(Path()) == "/"


def test_kind_predicates() -> None:
    assert Path().is_root
    assert Path(3).is_object and not Path(3).is_instance
    assert Path(3, 0).is_instance
    assert Path(3, 0, 1).is_resource
    assert Path(3, 0, 1, 2).is_resource_instance
    assert Path(3, 0, 1).ids_with_gaps == (3, 0, 1, None)


def test_parent_and_child() -> None:
    path = Path(3, 0, 1, 2)
    assert path.parent == Path(3, 0, 1)
    assert path.parent.parent.parent == Path(3)
    assert Path(3).parent == Path()
    with pytest.raises(PathError, match="no parent"):
        _ = Path().parent
    assert Path().child(3) == Path(3)
    assert Path(3, 0).child(9) == Path(3, 0, 9)
    with pytest.raises(PathError):
        path.child(0)
    with pytest.raises(PathError):
        Path(3).child(65535)


def test_startswith() -> None:
    path = Path(3, 0, 1)
    assert path.startswith(Path())
    assert path.startswith(Path(3))
    assert path.startswith(Path(3, 0))
    assert path.startswith(path)
    assert not path.startswith(Path(3, 1))
    assert not path.startswith(Path(30))
    assert not path.startswith(Path(3, 0, 1, 0))  # a descendant is not a prefix
    assert not Path(3).startswith(Path(3, 0))


def test_ordering_is_tree_order() -> None:
    paths = [
        Path.parse(t) for t in ("/3/0/1", "/", "/10", "/3", "/3/0", "/2/5", "/3/0/1/0", "/3/1")
    ]
    assert [str(p) for p in sorted(paths)] == [
        "/",
        "/2/5",
        "/3",
        "/3/0",
        "/3/0/1",
        "/3/0/1/0",
        "/3/1",
        "/10",
    ]
    assert Path(3) < Path(3, 0) <= Path(3, 0)
    assert Path(4) > Path(3, 65534)
    assert Path(3).__lt__("x") is NotImplemented


def test_hashable_and_equal() -> None:
    assert {Path.parse("/3/0"), Path(3, 0)} == {Path(3, 0)}
    assert Path(3, 0) != Path(3)


def test_frozen() -> None:
    path = Path(3)
    with pytest.raises(AttributeError):
        path.object_id = 4  # type: ignore[misc]


_path_ids = st.lists(st.integers(0, 65534), min_size=0, max_size=4)  # 65534 fits every level


@given(_path_ids)
def test_str_parse_round_trip(ids: list[int]) -> None:
    path = Path.of(*ids)
    assert Path.parse(str(path)) == path
    assert Path.from_segments(path.segments()) == path
    assert str(Path.parse(str(path))) == str(path)


@given(st.text(max_size=30))
def test_parse_arbitrary_text_is_path_or_path_error(text: str) -> None:
    try:
        path = Path.parse(text)
    except PathError:
        return
    assert str(path) == ("/" + text.lstrip("/") if text not in ("", "/") else "/")


@given(_path_ids, _path_ids)
def test_order_matches_id_tuples(a: list[int], b: list[int]) -> None:
    pa, pb = Path.of(*a), Path.of(*b)
    assert (pa < pb) == (tuple(a) < tuple(b))
    assert pa.startswith(pb) == (tuple(a[: len(b)]) == tuple(b))
