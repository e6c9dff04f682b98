"""A serving process's interpreter settings (tallyd.runtime), in a process of its
own: they change the whole interpreter."""

from __future__ import annotations

import subprocess
import sys
import time

from tallyd.runtime import SAME_REQUEST, StopSignals

SETTLE = """
import gc
from tallyd.runtime import MIDDLE, OLD, YOUNG, pass_gil_often, settle_collector

kept = [[i] for i in range(1000)]  # start-up state: alive from now on
settle_collector()
assert gc.get_freeze_count() >= 1000, gc.get_freeze_count()
assert gc.get_threshold() == (YOUNG, MIDDLE, OLD), gc.get_threshold()
assert gc.get_count()[0] < 100, gc.get_count()

# A frozen object is still freed by reference counting.
import weakref
class Box: pass
box = Box()
gc.collect(); gc.freeze()
gone = weakref.ref(box)
del box
assert gone() is None

# Cycles made after start-up are still collected.
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a
cycle = weakref.ref(a)
del a, b
gc.collect()
assert cycle() is None
pass_gil_often()
import sys
assert sys.getswitchinterval() < 0.001, sys.getswitchinterval()
print("ok")
"""


def test_settled_collector_skips_startup_objects_and_still_frees() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SETTLE], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_a_repeated_stop_signal_forces_only_after_a_moment() -> None:
    stops = StopSignals()
    assert stops.press() == 1
    assert stops.press() == 0  # the same request, sent twice at once
    time.sleep(SAME_REQUEST)
    assert stops.press() == 2
