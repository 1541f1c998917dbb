"""harness/core/allocator.py: glibc malloc keeps freed pages for the next step."""
import platform

import pytest

from harness.core import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_the_thresholds_are_raised_once_per_process():
    assert allocator.keep_freed_memory()
    assert allocator.keep_freed_memory()  # again: the cached answer, nothing done twice
    assert allocator.keep_freed_memory.cache_info().hits >= 1
