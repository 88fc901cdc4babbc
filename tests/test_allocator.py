"""``import vitae`` has glibc keep freed memory for reuse (``vitae.allocator``): a large tensor
allocated again after it was freed then mostly costs no fresh page faults, and ``VITAE_MALLOC=system``
leaves glibc's default, under which every such allocation faults its pages in anew."""

import os
import subprocess
import sys

import pytest

from vitae import allocator

PROBE = """
import resource, vitae, torch
from vitae import allocator
took = allocator.keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds = []
for _ in range(6):  # a training step's pattern: large tensors made, combined and freed
    before = faults()
    g = torch.ones(20_480_000); a = torch.ones(5_120_000); h = a * 2; g2 = g * 2; del g, a, h, g2
    rounds.append(faults() - before)
print(took, sum(rounds[2:]))  # after two rounds to settle
"""


def probe(**env) -> tuple[bool, int]:
    environ = {k: v for k, v in os.environ.items() if k != allocator.OPT_OUT}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, check=True)
    took, faults = out.stdout.split()
    return took == "True", int(faults)


@pytest.mark.skipif(not allocator.keep_freed_memory(), reason="not glibc: the allocator is left alone")
def test_freed_memory_is_reused_without_page_faults_and_the_opt_out_restores_glibc():
    took, kept = probe()
    assert took
    took, system = probe(VITAE_MALLOC="system")
    # glibc's default maps the 204 MB of each round afresh (50,000 faults a round, 200,000 in the
    # four counted); kept memory is mostly reused (this machine: 20,000 against 175,000)
    assert not took and system > 100_000 and kept < system / 3
