"""glibc's allocator, set up for the inversion loop on the CPU.

Every optimisation step allocates and frees the same large tensors (activations of tens of MB, the image
batch). By default glibc serves each block over its mmap threshold with a fresh ``mmap`` and returns it to the
kernel on ``free``, so every step pays page faults and the kernel's zeroing for all of them. On the 2-core VMs
measured here that held EfficientNet-Lite0 (224 px, batch 8, read at ``_blocks.2``) to 8 steps/s instead of 24.
Raising the mmap and trim thresholds keeps freed blocks in the heap for the next step (the advice PyTorch's CPU
performance guide gives with jemalloc/tcmalloc); the process keeps its peak heap, which it reaches every step.
"""

from __future__ import annotations

import ctypes

__all__ = ["keep_freed_memory"]

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
HEAP_BELOW = 1 << 30  # blocks under 1 GiB come from the heap and go back to it


def keep_freed_memory() -> bool:
    """Make this process's C allocator keep freed memory for reuse (idempotent, process-wide).

    False where the C library is not glibc (no ``mallopt``): nothing changes there.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, HEAP_BELOW)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * HEAP_BELOW))
