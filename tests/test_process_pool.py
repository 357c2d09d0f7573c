"""benchmarks/common.py's process_pool: results in order, and a worker that dies raises instead of hanging."""

import os
import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import process_pool  # noqa: E402


def test_map_in_order():
    with process_pool(2, None) as pool:
        assert list(pool.map(abs, [-3, 2, -1, 0], chunksize=2)) == [3, 2, 1, 0]


def test_dead_worker_raises():
    """multiprocessing.Pool.map waits forever when a worker is killed (as a segfault in native code does)."""
    with process_pool(1, None) as pool:
        with pytest.raises(BrokenProcessPool):
            pool.submit(os.abort).result(timeout=120)                        # SIGABRT kills the worker
