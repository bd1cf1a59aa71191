"""Why a multi-GPU profile cannot take the GPU-snapshot path, in one line (docs/SNAPSHOTS.md §4-5).

Shared so that every profile states the same facts the same way: the CUDA IPC memory that tensor
parallelism maps (NVIDIA's `cuda-checkpoint` "does not support UVM or IPC memory"), Modal
documenting no multi-GPU (or clustered) GPU snapshots, and the size a restore would move.
"""

from __future__ import annotations


def multi_gpu_blocker(tp_size: int, weights_gb: int, *, nnodes: int = 1) -> str:
    """The blocker of a profile with tensor parallelism `tp_size` on `nnodes` nodes."""
    modal = "Modal documents no multi-GPU GPU snapshots"
    if nnodes > 1:
        modal += f", nor snapshots of a {nnodes}-container cluster"
    return (
        f"TP={tp_size} uses CUDA IPC memory (custom all-reduce, NCCL), which NVIDIA's CUDA "
        f"checkpoint does not support; {modal}; ~{weights_gb} GB to snapshot"
    )
