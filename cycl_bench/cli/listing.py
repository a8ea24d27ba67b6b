"""`list`: every registered benchmark, backbone, strategy and shipped experiment; `--details`
adds each entry's parameters as declared (name, type, default, allowed values, description)."""

import argparse

from cycl_bench.config import shipped_experiments
from cycl_bench.params import Params, describe, shown
from cycl_bench.registry import ALL, Registry

HELP = "list registered benchmarks, backbones, strategies and shipped experiments"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--details",
        action="store_true",
        help="also print every parameter: type, default, allowed values, description",
    )


def declarations(registry: Registry, name: str) -> list[tuple[str, type[Params]]]:
    """(heading, declaration) pairs of an entry: one per data source for a benchmark."""
    declared = registry.detail(name, "params")
    if isinstance(declared, dict):
        return [(f"options with {source} data", options) for source, options in declared.items()]
    return [("parameters" if registry.kind == "strategy" else "arguments", declared)]


def print_parameters(heading: str, declaration: type[Params]) -> None:
    print(f"    {heading}:")
    for row in describe(declaration):
        print(
            f"      {row.name:<24} {row.type:<6} {row.default:<11} {row.allowed:<26} "
            f"{row.description}".rstrip()
        )


def print_fidelity(declaration: type[Params]) -> None:
    """A strategy's paper and how it departs from it, whatever its parameters."""
    paper = getattr(declaration, "paper", None)
    if paper is None:
        return
    print(f"    paper: {paper or 'none (a bound, not a published method)'}")
    for departure in getattr(declaration, "departures", ()):
        print(f"    departs from it: {departure}")
    for name, value in getattr(declaration, "published", {}).items():
        print(f"    published {name}: {shown(value)} (another value is a named deviation)")


def run(args: argparse.Namespace) -> int:
    for registry in ALL:
        print(f"{registry.plural}:")
        for name in registry.names():
            description = registry.describe(name)
            print(f"  {name:<22} {description}".rstrip())
            if args.details:
                for heading, declaration in declarations(registry, name):
                    print_fidelity(declaration)
                    print_parameters(heading, declaration)
    print("experiments:")
    for name in shipped_experiments():
        print(f"  {name}")
    return 0
