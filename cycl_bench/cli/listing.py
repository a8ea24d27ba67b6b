"""`list`: every registered benchmark, backbone, strategy and shipped experiment."""

from cycl_bench.config import shipped_experiments
from cycl_bench.registry import ALL

HELP = "list registered benchmarks, backbones, strategies and shipped experiments"


def add_arguments(parser):
    pass


def run(args) -> int:
    for registry in ALL:
        print(f"{registry.plural}:")
        for name in registry.names():
            description = registry.describe(name)
            print(f"  {name:<22} {description}".rstrip())
    print("experiments:")
    for name in shipped_experiments():
        print(f"  {name}")
    return 0
