"""The job dependency graph as pure functions over ``{job: (dependencies, ...)}`` mappings.

Theory of operation: the plan loader checks the graph once (``find_cycle``, unknown names) so
the scheduler can trust it.  While a plan runs, the driver asks ``ready`` which pending jobs may
start (every dependency SUCCEEDED) and ``dependents_of`` which pending jobs must be SKIPPED after
a failure (every transitive dependent).  When the plan is over, ``critical_path`` finds the chain
of jobs whose measured durations add up to the most wall time — the lower bound on the plan's
wall time with unlimited slots — and ``bottlenecks`` names the jobs on it that dominated.

Nothing here does I/O or knows about time; durations are plain floats passed in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass

Deps = Mapping[str, Sequence[str]]
"""Every job name mapped to the names it depends on (each a key of the mapping)."""


def find_cycle(deps: Deps) -> list[str] | None:
    """A dependency cycle as ``[a, b, ..., a]`` (a depends on b ...), or None when acyclic.

    Dependencies that are not keys of ``deps`` are ignored (report those separately).
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    for root in deps:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        stack: list[Iterator[str]] = [iter(deps[root])]
        colour[root] = grey
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                stack.pop()
                continue
            if nxt not in colour:
                continue
            if colour[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            if colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                stack.append(iter(deps[nxt]))
    return None


def topological_order(deps: Deps) -> list[str]:
    """Every job after all of its dependencies, otherwise in the mapping's order.

    Raises ``ValueError`` naming the cycle when the graph has one.
    """
    cycle = find_cycle(deps)
    if cycle is not None:
        raise ValueError("dependency cycle: " + " -> ".join(cycle))
    done: set[str] = set()
    order: list[str] = []

    def visit(name: str) -> None:
        stack = [(name, iter(deps[name]))]
        while stack:
            node, it = stack[-1]
            dep = next(it, None)
            if dep is None:
                stack.pop()
                if node not in done:
                    done.add(node)
                    order.append(node)
            elif dep in deps and dep not in done:
                stack.append((dep, iter(deps[dep])))

    for name in deps:
        if name not in done:
            visit(name)
    return order


def ready(deps: Deps, pending: Iterable[str], succeeded: Set[str]) -> list[str]:
    """The ``pending`` jobs whose every dependency is in ``succeeded``, in ``pending`` order."""
    return [name for name in pending if all(d in succeeded for d in deps[name])]


def dependents_of(deps: Deps, failed: str) -> list[str]:
    """Every job that depends on ``failed``, directly or transitively, in topological order."""
    reverse: dict[str, list[str]] = {name: [] for name in deps}
    for name, needs in deps.items():
        for dep in needs:
            if dep in reverse:
                reverse[dep].append(name)
    seen: set[str] = set()
    frontier = [failed]
    while frontier:
        for child in reverse.get(frontier.pop(), ()):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return [name for name in topological_order(deps) if name in seen]


def heights(deps: Deps) -> dict[str, int]:
    """For each job, the number of jobs on the longest chain from it to a job with no dependents.

    The scheduler starts the highest first: a long tail of dependents starts early.
    """
    out: dict[str, int] = {}
    reverse: dict[str, list[str]] = {name: [] for name in deps}
    for name, needs in deps.items():
        for dep in needs:
            if dep in reverse:
                reverse[dep].append(name)
    for name in reversed(topological_order(deps)):
        out[name] = 1 + max((out[c] for c in reverse[name]), default=0)
    return out


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """A job on the critical path and the share of the plan's wall time it took."""

    job: str
    seconds: float
    share: float


def critical_path(deps: Deps, durations: Mapping[str, float]) -> tuple[list[str], float]:
    """The dependency chain with the largest summed duration, and that sum.

    Jobs without a measured duration (never ran) count as 0 s.  Ties go to the chain found
    first in topological order.  Raises ``ValueError`` on a cycle.
    """
    best: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for name in topological_order(deps):
        prev = None
        base = 0.0
        for dep in deps[name]:
            if dep in best and best[dep] > base:
                base, prev = best[dep], dep
        best[name] = base + max(0.0, durations.get(name, 0.0))
        via[name] = prev
    if not best:
        return [], 0.0
    end = max(best, key=lambda n: best[n])
    chain: list[str] = []
    node: str | None = end
    while node is not None:
        chain.append(node)
        node = via[node]
    chain.reverse()
    return chain, best[end]


def bottlenecks(
    deps: Deps, durations: Mapping[str, float], wall: float, *, top: int = 3
) -> list[Bottleneck]:
    """The ``top`` longest jobs on the critical path with their share of ``wall`` seconds."""
    chain, _ = critical_path(deps, durations)
    ranked = sorted(chain, key=lambda n: -durations.get(n, 0.0))[:top]
    return [
        Bottleneck(
            job=n,
            seconds=durations.get(n, 0.0),
            share=durations.get(n, 0.0) / wall if wall > 0 else 0.0,
        )
        for n in ranked
    ]
