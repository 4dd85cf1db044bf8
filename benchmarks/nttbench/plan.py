"""The sizes of a full run and of the tiny (CI) run, in one place."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    tiny: bool
    rounds: int
    create_sizes: tuple[int, ...]     # N of the batch create (each tool also makes 1, for the per-device cost)
    loop_sizes: tuple[int, ...]       # N of the one-call-per-device playbook loop (slow: small N only)
    loop_rounds: int
    alloc_sizes: tuple[int, ...]      # D, devices present, for one more device
    memory_sizes: tuple[int, ...]     # leases in the registry for the peak RSS of a one-device run
    guests: int                       # the role: guests x 2 NICs
    create_targets: tuple[int, ...]   # N at which per-device module/floor <= 1.2x is checked
    whole_target: int                 # N at which whole-process module/floor <= 1.5x is checked
    batch_chunk: int                  # leased devices per module call when filling a registry


FULL = Plan(tiny=False, rounds=5, create_sizes=(100, 1000, 5000), loop_sizes=(100,), loop_rounds=3,
            alloc_sizes=(100, 1000, 5000, 30000), memory_sizes=(5000, 30000), guests=500,
            create_targets=(1000, 5000), whole_target=1000, batch_chunk=5000)

TINY = Plan(tiny=True, rounds=2, create_sizes=(50,), loop_sizes=(10,), loop_rounds=1,
            alloc_sizes=(100, 300), memory_sizes=(100, 300), guests=20,
            create_targets=(50,), whole_target=50, batch_chunk=5000)
