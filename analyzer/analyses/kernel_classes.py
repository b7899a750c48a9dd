"""The kernel classification table: which GPU kernels and CPU ops are communication, memory or
computation, and which library they belong to.

Every analysis that needs a kernel's class reads :data:`KERNEL_CLASS_TABLE` through
:func:`classify`; no other module tests kernel names. The table is ordered, the first rule
whose regular expression is found in the name (``re.search`` semantics, RE2 syntax, case
sensitive unless the pattern starts with ``(?i)``) decides, and a name no rule matches is
``COMPUTATION``.

Classes (the names are HTA's ``KernelType`` names, so results compare one to one):

* ``COMMUNICATION`` — collective / point-to-point communication: NCCL kernels
  (``ncclKernel_*``, ``ncclDevKernel_*``) and ``nccl:<collective>`` record functions, RCCL,
  HCCL, SageMaker distributed data parallel (``smddp``, its former name ``herring``), gloo
  record functions (``gloo:<collective>``), Horovod ops and timeline activities
  (``Horovod*``, ``NEGOTIATE_*``, ``ALLREDUCE``, ``MPI_ALLREDUCE``, ...), MPI calls, and the
  c10d CPU ops (``c10d::*``, ``record_param_comms``).
* ``MEMORY`` — device memory copies and sets: Kineto names them ``Memcpy <kind> (...)`` and
  ``Memset (...)`` (categories ``gpu_memcpy`` / ``gpu_memset``); ROCm ``hipMemcpy*``; DMA.
* ``OTHER`` — GPU-timeline synchronisation records that are not kernels (Kineto's
  ``cuda_sync`` events ``Stream Sync``, ``Event Sync``, ``Context Sync``, and
  ``Stream Wait Event``). HTA counts them as busy GPU time but in no kernel type.
* ``COMPUTATION`` — every other kernel.

Differences from HTA 0.6.1's patterns, on purpose: HTA treats every name starting with
``hip`` as communication (so ``hipMemcpy`` would be communication) and any name containing
``Sync`` as other; this table keeps ``hipMemcpy`` as memory and only the Kineto
synchronisation record names as other. On CUDA traces the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "COMMUNICATION",
    "COMPUTATION",
    "KERNEL_CLASSES",
    "KERNEL_CLASS_TABLE",
    "MEMORY",
    "OTHER",
    "KernelClassRule",
    "classify",
    "classify_names",
    "kernel_class",
]

COMPUTATION = "COMPUTATION"
COMMUNICATION = "COMMUNICATION"
MEMORY = "MEMORY"
OTHER = "OTHER"
#: All classes; the first three are the kernel types of the HTA breakdowns, in HTA's order.
KERNEL_CLASSES: tuple[str, ...] = (COMPUTATION, COMMUNICATION, MEMORY, OTHER)


#: The CPU-side runtime and driver calls that put work on a GPU stream, per API: the kernel
#: launch analysis pairs each with the GPU events of its correlation id. CUDA's runtime names
#: may carry a version suffix (``cudaLaunchKernel_v7000``); a CUDA / HIP graph launch is the
#: correlation of every kernel of the graph. HIP names from ROCm's HIP runtime API reference
#: (kernel launches, module launches, async copies and sets, graph launches).
LAUNCH_CALLS: tuple[tuple[str, str], ...] = (
    ("cuda runtime", r"cudaLaunchKernel(ExC)?(_v\d+)?"),
    ("cuda runtime", r"cudaLaunchCooperativeKernel(_v\d+)?"),
    ("cuda runtime", r"cudaMemcpy(2D|3D)?Async(_v\d+)?"),
    ("cuda runtime", r"cudaMemset(2D|3D)?Async(_v\d+)?"),
    ("cuda runtime", r"cudaGraphLaunch(_v\d+)?"),
    ("cuda driver", r"cuLaunchKernel(Ex)?"),
    ("cuda driver", r"cuLaunchCooperativeKernel"),
    ("cuda driver", r"cuGraphLaunch"),
    ("hip", r"hipLaunchKernel(ExC)?"),
    ("hip", r"hipExtLaunchKernel"),
    ("hip", r"hipModuleLaunchKernel"),
    ("hip", r"hipExtModuleLaunchKernel"),
    ("hip", r"hipLaunchCooperativeKernel"),
    ("hip", r"hipMemcpy(2D|3D)?Async"),
    ("hip", r"hipMemcpyWithStream"),
    ("hip", r"hipMemset(D8|D16|D32|2D|3D)?Async"),
    ("hip", r"hipGraphLaunch"),
)


def launch_call_pattern() -> str:
    """One anchored regular expression (RE2) matching every name of :data:`LAUNCH_CALLS`."""
    return "^(" + "|".join(pattern for _, pattern in LAUNCH_CALLS) + ")$"


#: Kineto's categories of work that runs on a GPU stream: kernels, memory copies and sets
#: (and the older capitalised names, and MTIA's compute events)
GPU_WORK_CATEGORIES = (
    "kernel",
    "Kernel",
    "gpu_memcpy",
    "Memcpy",
    "gpu_memset",
    "Memset",
    "mtia_ccp_events",
)
#: every event of the GPU timeline: its work, and the ``cuda_sync`` records Kineto puts on
#: a stream. A GPU event is chosen by its category, never by an ``args.stream`` alone:
#: torch.compile's Inductor records the CPU-side ``cpu_op`` of each Triton launch with
#: ``args.stream``, and ROCm traces give runtime calls (``hipMemcpyWithStream``, category
#: ``cuda_runtime``) one too; both run on the CPU.
GPU_EVENT_CATEGORIES = (*GPU_WORK_CATEGORIES, "cuda_sync")


@dataclass(frozen=True)
class KernelClassRule:
    """One row of the classification table."""

    pattern: str  # RE2 regular expression searched in the kernel / op name
    kernel_class: str  # one of KERNEL_CLASSES
    library: str  # nccl, rccl, hccl, smddp, gloo, horovod, mpi, c10d, cuda, ...
    note: str = ""


_R = KernelClassRule

#: The classification table, first match wins.
KERNEL_CLASS_TABLE: tuple[KernelClassRule, ...] = (
    # --- communication -------------------------------------------------------------
    _R(r"^nccl", COMMUNICATION, "nccl", "ncclKernel_*, ncclDevKernel_*, nccl:<collective>"),
    _R(r"ncclKernel|ncclDevKernel", COMMUNICATION, "nccl", "NCCL kernel with a prefix"),
    _R(r"^rccl", COMMUNICATION, "rccl", "ROCm collectives"),
    _R(r"^hccl", COMMUNICATION, "hccl", "Habana / Ascend collectives"),
    _R(r"(?i)smddp|herring", COMMUNICATION, "smddp", "SageMaker distributed data parallel"),
    _R(r"^gloo:", COMMUNICATION, "gloo", "gloo record functions, e.g. gloo:all_reduce"),
    _R(r"(?i)^horovod", COMMUNICATION, "horovod", "HorovodAllreduce, horovod_allreduce ops"),
    _R(r"^NEGOTIATE_", COMMUNICATION, "horovod", "Horovod timeline negotiation"),
    _R(
        r"^(NCCL_|MPI_|GLOO_|CCL_)?(ALLREDUCE|ALLGATHER|BROADCAST|ALLTOALL|REDUCESCATTER"
        r"|HIERARCHICAL_ALLREDUCE|HIERARCHICAL_ALLGATHER)$",
        COMMUNICATION,
        "horovod",
        "Horovod timeline activities",
    ),
    _R(r"^MPI_", COMMUNICATION, "mpi", "MPI calls"),
    _R(r"^c10d::", COMMUNICATION, "c10d", "torch.distributed CPU ops"),
    _R(r"^record_param_comms$", COMMUNICATION, "c10d", "collective parameters record"),
    # --- memory ----------------------------------------------------------------------
    _R(r"^(hip)?Memcpy", MEMORY, "cuda", "Memcpy HtoD/DtoH/DtoD/PtoP (gpu_memcpy)"),
    _R(r"^(hip)?Memset", MEMORY, "cuda", "Memset (gpu_memset)"),
    _R(r"^dma", MEMORY, "device", "DMA transfers"),
    # --- other: GPU-timeline synchronisation records ----------------------------------
    _R(r"^(Stream|Event|Context|Device) Sync$", OTHER, "cuda", "cuda_sync events"),
    _R(r"^Stream Wait Event", OTHER, "cuda", "cuda_sync wait"),
)

_DEFAULT_CLASS = COMPUTATION
_DEFAULT_LIBRARY = ""


def _unique_with_inverse(names: Any) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Distinct non-null names, the index of each row's name in them, and a null mask."""
    if isinstance(names, pa.ChunkedArray):
        names = names.combine_chunks() if names.num_chunks != 1 else names.chunk(0)
    if isinstance(names, pa.Array):
        if pa.types.is_dictionary(names.type):
            dictionary = names.dictionary.cast(pa.string())
            indices = names.indices
            null = indices.is_null().to_numpy(zero_copy_only=False)
            idx = pc.fill_null(indices, 0).to_numpy(zero_copy_only=False).astype(np.int64)
            return dictionary, idx, null
        encoded = pc.dictionary_encode(names.cast(pa.string()))
        return _unique_with_inverse(encoded)
    series = names if isinstance(names, pd.Series) else pd.Series(np.asarray(names, dtype=object))
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy().astype(np.int64)
        cats = pa.array([str(c) for c in series.cat.categories], type=pa.string())
        null = codes < 0
        return cats, np.where(null, 0, codes), null
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    cats = pa.array([str(u) for u in uniques], type=pa.string())
    null = codes < 0
    return cats, np.where(null, 0, codes).astype(np.int64), null


def classify_names(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Class and library for each *distinct* name (a string Arrow array), as object arrays."""
    n = len(values)
    klass = np.full(n, _DEFAULT_CLASS, dtype=object)
    library = np.full(n, _DEFAULT_LIBRARY, dtype=object)
    done = np.zeros(n, dtype=bool)
    if n == 0:
        return klass, library
    values = pc.fill_null(values, "")
    for rule in KERNEL_CLASS_TABLE:
        hit = pc.match_substring_regex(values, rule.pattern).to_numpy(zero_copy_only=False)
        new = hit & ~done
        if new.any():
            klass[new] = rule.kernel_class
            library[new] = rule.library
            done |= new
    return klass, library


def classify(names: Any) -> pd.DataFrame:
    """Classify a column of kernel / op names, vectorised.

    ``names`` may be a pyarrow (dictionary or string) Array / ChunkedArray, a pandas Series
    (categorical or object) or any sequence of strings. Only the distinct names are matched
    against :data:`KERNEL_CLASS_TABLE` (with Arrow's regex kernels), then broadcast back, so
    the cost grows with the number of distinct names, not rows.

    Returns a DataFrame aligned with the input: ``kernel_class`` (categorical over
    :data:`KERNEL_CLASSES`) and ``library`` (categorical; ``""`` when no rule matched).
    A null name is ``COMPUTATION`` with library ``""``.
    """
    values, idx, null = _unique_with_inverse(names)
    klass_u, lib_u = classify_names(values)
    libraries = sorted({_DEFAULT_LIBRARY, *(r.library for r in KERNEL_CLASS_TABLE)})
    class_pos = {c: i for i, c in enumerate(KERNEL_CLASSES)}
    lib_pos = {lib: i for i, lib in enumerate(libraries)}
    default_class = class_pos[_DEFAULT_CLASS]
    default_lib = lib_pos[_DEFAULT_LIBRARY]
    if len(values) == 0:
        klass_codes = np.full(idx.size, default_class, dtype=np.int8)
        lib_codes = np.full(idx.size, default_lib, dtype=np.int8)
    else:
        klass_codes = np.array([class_pos[k] for k in klass_u], dtype=np.int8)[idx]
        lib_codes = np.array([lib_pos[x] for x in lib_u], dtype=np.int8)[idx]
        if null.any():
            klass_codes[null] = default_class
            lib_codes[null] = default_lib
    return pd.DataFrame(
        {
            "kernel_class": pd.Categorical.from_codes(klass_codes, categories=list(KERNEL_CLASSES)),
            "library": pd.Categorical.from_codes(lib_codes, categories=libraries),
        }
    )


def kernel_class(name: str) -> str:
    """Class of a single name (convenience for tests and small lookups)."""
    return str(classify(pa.array([name], type=pa.string()))["kernel_class"].iloc[0])
