"""OpenMP settings, which must be in the environment before torch loads its OpenMP runtime.

That runtime (libgomp in torch's wheels) reads them once, when ``import torch``
loads it; the CLI applies them first, before any command imports torch.
"""

from __future__ import annotations

import os

#: Iterations an idle OpenMP thread busy-waits before it sleeps. libgomp's default,
#: 300,000 (about a millisecond), lets a thread that waits for a sibling another
#: process has pushed off its core hold the other core: beside one busy process, a
#: short training ran 2.6-2.9x slower with it, 1.5x with 1,000 (1.2x with
#: OMP_WAIT_POLICY=PASSIVE, which costs 30% when alone where 1,000 costs 12%; on the
#: paper's network neither costs anything measurable).
SPIN_COUNT = 1000


def share_cores() -> None:
    """Make idle OpenMP threads sleep early, unless the user chose a wait policy or count."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", str(SPIN_COUNT))
