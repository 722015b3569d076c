"""Where a handler's cold start goes: ``python -X importtime``, attributed.

``bench.cold_start`` gives each handler's import time against ``import boto3`` (medians of
fresh interpreters). This says what makes it up: the import tree of one fresh interpreter,
its self times summed by top-level package, and for each package the project module that
first brought it in (the place to cut it, or to make it lazy).
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import ROOT
from bench.lambda_site import function_of, lambda_command, lambda_environment

PROJECT = ("waituntil", "receiver", "reader", "consumer")
HANDLERS = ("receiver.handler", "reader.handler", "consumer.handler")


@dataclass
class Node:
    module: str
    self_us: int
    cumulative_us: int
    children: list[Node] = field(default_factory=list)


@dataclass(frozen=True)
class PackageCost:
    package: str
    self_ms: float
    modules: int
    brought_by: str  # the project module that imported it first ("" for the project's own)


def import_tree(module: str, python: str = sys.executable, code: Path = ROOT) -> list[Node]:
    """The top-level imports of ``import module`` in a fresh interpreter as on Lambda
    (``bench.lambda_site``), as a tree."""
    environment = lambda_environment(function_of(module), python=python, code=code)
    result = subprocess.run(  # noqa: S603 (our own interpreter, fixed code)
        [*lambda_command(python), "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    return parse_importtime(result.stderr)


def parse_importtime(text: str) -> list[Node]:
    """``-X importtime`` output (post-order, two spaces of indent per level) as a forest."""
    pending: dict[int, list[Node]] = defaultdict(list)
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:") :].split("|")
        self_us, cumulative_us, name = parts[0].strip(), parts[1].strip(), parts[2]
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        node = Node(name.strip(), int(self_us), int(cumulative_us))
        node.children = pending.pop(depth + 1, [])
        pending[depth].append(node)
    return pending.get(0, [])


def package_costs(roots: list[Node]) -> list[PackageCost]:
    """Self time by top-level package, most first, each with the project module that first
    imported it."""
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    first_by: dict[str, str] = {}

    def walk(node: Node, importer: str) -> None:
        # Children were imported (and are printed) before their parent finished.
        package = node.module.split(".")[0]
        mine = package in PROJECT
        for child in node.children:
            walk(child, node.module if mine else importer)
        totals[package] += node.self_us / 1000
        counts[package] += 1
        first_by.setdefault(package, "" if mine else importer)

    for root in roots:
        walk(root, "")
    costs = [
        PackageCost(package, totals[package], counts[package], first_by[package])
        for package in totals
    ]
    return sorted(costs, key=lambda cost: cost.self_ms, reverse=True)


def own_modules(roots: list[Node]) -> dict[str, float]:
    """Self ms of each of the project's own modules (class bodies, pydantic models and
    module-level work count here, not in the packages they use)."""
    found: dict[str, float] = {}

    def walk(node: Node) -> None:
        for child in node.children:
            walk(child)
        if node.module.split(".")[0] in PROJECT:
            found[node.module] = node.self_us / 1000

    for root in roots:
        walk(root)
    return found


@dataclass(frozen=True)
class ImportCosts:
    packages: list[PackageCost]  # heaviest first
    own: list[tuple[str, float]]  # the project's modules, heaviest first


def measure(
    modules: tuple[str, ...] = HANDLERS,
    top: int = 10,
    repeats: int = 3,
    python: str = sys.executable,
) -> dict[str, ImportCosts]:
    """The heaviest packages of each handler's imports: medians of ``repeats`` fresh
    interpreters (one run alone is noisy on a shared machine), after one that writes the
    bytecode."""
    import statistics

    measured: dict[str, ImportCosts] = {}
    for module in modules:
        import_tree(module, python)
        runs = [import_tree(module, python) for _ in range(repeats)]
        by_package: dict[str, list[PackageCost]] = defaultdict(list)
        own: dict[str, list[float]] = defaultdict(list)
        for roots in runs:
            for cost in package_costs(roots):
                by_package[cost.package].append(cost)
            for name, ms in own_modules(roots).items():
                own[name].append(ms)
        packages = [
            PackageCost(
                package,
                statistics.median([c.self_ms for c in costs] + [0.0] * (repeats - len(costs))),
                costs[0].modules,
                costs[0].brought_by,
            )
            for package, costs in by_package.items()
        ]
        packages.sort(key=lambda cost: cost.self_ms, reverse=True)
        own_ms = sorted(
            ((name, statistics.median(values)) for name, values in own.items()),
            key=lambda item: item[1],
            reverse=True,
        )
        measured[module] = ImportCosts(packages[:top], own_ms[:top])
    return measured
