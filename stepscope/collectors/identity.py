"""Who and where this process is: node name, rank, and where its output goes.

Why one module: the system sampler names its files by node, the trace recorder names its
traces by node and rank, and ingest reads both back by those names, so every collector must
agree on them. SageMaker's own node names (``algo-<n>``) win, so our files line up with the
ones SageMaker writes and with CloudWatch's ``Host`` dimension.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from pathlib import Path

#: SageMaker's description of the cluster, written into every training container
RESOURCE_CONFIG = Path("/opt/ml/input/config/resourceconfig.json")
#: the folder SageMaker uploads to S3 while the job runs (TensorBoardOutputConfig's LocalPath)
SAGEMAKER_TENSORBOARD_DIR = Path("/opt/ml/output/tensorboard")
#: where collector output goes off SageMaker
LOCAL_OUTPUT_DIR = Path("stepscope-output")


def node_name(resource_config: Path = RESOURCE_CONFIG) -> str:
    """``current_host`` of SageMaker's resourceconfig.json, else ``SM_CURRENT_HOST``, else
    the host name. Never raises: a damaged config falls back to the next source."""
    try:
        doc = json.loads(resource_config.read_text(encoding="utf-8"))
        host = doc.get("current_host") if isinstance(doc, dict) else None
        if isinstance(host, str) and host:
            return host
    except (OSError, ValueError):
        pass
    return os.environ.get("SM_CURRENT_HOST") or socket.gethostname()


def _int_env(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                continue
    return None


def global_rank() -> int | None:
    """The process's global rank as torchrun / torch.distributed.launch / MPI set it."""
    return _int_env("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def known_rank() -> int | None:
    """This process's rank where anything says it: torch.distributed's once its process
    group is up (never importing torch just to ask), else :func:`global_rank`, else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None:
        with contextlib.suppress(Exception):
            if dist.is_available() and dist.is_initialized():
                return int(dist.get_rank())
    return global_rank()


def process_rank() -> int:
    """This process's rank for naming its trace: :func:`known_rank`, else 0."""
    rank = known_rank()
    return 0 if rank is None else rank


def local_rank() -> int | None:
    """The process's rank on this node (torchrun's LOCAL_RANK, MPI's local rank)."""
    return _int_env("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID")


def on_sagemaker() -> bool:
    """A SageMaker training container has its resource config and ``SM_*`` variables."""
    return RESOURCE_CONFIG.is_file() or any(k.startswith("SM_") for k in os.environ)


def default_output_dir() -> Path:
    """On SageMaker, the folder it uploads during the job (so ``stepscope dashboard JOB``
    finds the data while the job runs); elsewhere ``./stepscope-output``."""
    return SAGEMAKER_TENSORBOARD_DIR if on_sagemaker() else LOCAL_OUTPUT_DIR
