from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.dag import (
    bottlenecks,
    critical_path,
    dependents_of,
    find_cycle,
    heights,
    ready,
    topological_order,
)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, tuple[str, ...]]:
    n = draw(st.integers(min_value=0, max_value=9))
    names = [f"j{i}" for i in range(n)]
    deps: dict[str, tuple[str, ...]] = {}
    for i, name in enumerate(names):
        earlier = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        deps[name] = tuple(earlier)
    order = draw(st.permutations(names))
    return {name: deps[name] for name in order}


def all_chains(deps: dict[str, tuple[str, ...]]) -> list[list[str]]:
    chains: list[list[str]] = []

    def walk(chain: list[str]) -> None:
        chains.append(chain)
        for dep in deps[chain[0]]:
            walk([dep, *chain])

    for name in deps:
        walk([name])
    return chains


@given(dags())
def test_topological_order_puts_dependencies_first(deps: dict[str, tuple[str, ...]]) -> None:
    """Every job appears exactly once and after all of its dependencies."""
    order = topological_order(deps)
    assert sorted(order) == sorted(deps)
    pos = {name: i for i, name in enumerate(order)}
    assert all(pos[d] < pos[n] for n, ds in deps.items() for d in ds)
    assert find_cycle(deps) is None


@given(dags(), st.data())
def test_critical_path_is_the_longest_chain(
    deps: dict[str, tuple[str, ...]], data: st.DataObject
) -> None:
    """The critical path is a real dependency chain and no chain is longer (brute force)."""
    durations = {n: data.draw(st.floats(0, 100, allow_nan=False)) for n in deps}
    chain, total = critical_path(deps, durations)
    if not deps:
        assert (chain, total) == ([], 0.0)
        return
    assert all(a in deps[b] for a, b in itertools.pairwise(chain))
    assert total == pytest.approx(sum(durations[n] for n in chain))
    best = max(sum(durations[n] for n in c) for c in all_chains(deps))
    assert total == pytest.approx(best)


def test_find_cycle_names_the_cycle() -> None:
    """A cycle is returned as the closed chain of names."""
    assert find_cycle({"a": ("b",), "b": ("c",), "c": ("a",), "d": ()}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": ("x",)}) == ["x", "x"]
    with pytest.raises(ValueError, match="dependency cycle: a -> b -> a"):
        topological_order({"a": ("b",), "b": ("a",)})


def test_ready_and_dependents() -> None:
    """Ready jobs have every dependency succeeded; a failure reaches every transitive dependent."""
    deps = {"a": (), "b": ("a",), "c": ("b",), "d": (), "e": ("a", "d")}
    assert ready(deps, ["a", "b", "d", "e"], set()) == ["a", "d"]
    assert ready(deps, ["b", "e"], {"a"}) == ["b"]
    assert dependents_of(deps, "a") == ["b", "c", "e"]
    assert dependents_of(deps, "c") == []


def test_bottlenecks_rank_the_critical_path_by_duration() -> None:
    """Bottlenecks are the longest critical-path jobs with their share of wall time."""
    deps = {"a": (), "b": ("a",), "c": ("b",), "side": ()}
    durations = {"a": 1.0, "b": 6.0, "c": 2.0, "side": 5.0}
    assert critical_path(deps, durations) == (["a", "b", "c"], 9.0)
    top = bottlenecks(deps, durations, wall=10.0, top=2)
    assert [(b.job, b.seconds, b.share) for b in top] == [("b", 6.0, 0.6), ("c", 2.0, 0.2)]


def test_heights_count_the_longest_chain_below_each_job() -> None:
    """A job's height is the length of the longest chain of dependents it starts."""
    deps = {"a": (), "b": ("a",), "c": ("b",), "d": (), "e": ("a",)}
    assert heights(deps) == {"a": 3, "b": 2, "c": 1, "d": 1, "e": 1}
