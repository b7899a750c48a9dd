"""How the project's own DDP test scripts end (run as files by torchrun: this folder is on
their ``sys.path``, so they import this module by its bare name).

Why one place: every recorded job ends the same way, so no recording dies of PyTorch's gloo
teardown abort at exit (a gloo worker thread releasing the last work item while Python
finalizes; docs/collect.md, "The exit abort"): the ranks meet, the process group goes, the
output is flushed, and the process ends without interpreter finalization.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def end_ddp() -> NoReturn:
    import torch.distributed as dist

    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
