"""``stepscope run``'s hook into every Python process of its command (``site`` imports it).

Why a ``sitecustomize``: the user's script stays untouched, and every interpreter the
command starts (torchrun's workers, ``mp.spawn`` children) inherits ``PYTHONPATH`` and so
runs this file at start-up, before any user code.

Why it costs (almost) nothing: most processes under the launcher never train (torchrun's
agent, DataLoader workers, compile workers, shell helpers). So this file imports nothing
beyond what ``site`` already loaded and only puts a one-shot finder first on
``sys.meta_path``: one string comparison per import, until ``torch.optim.optimizer`` is
imported (which ``import torch`` does). Then the finder steps aside, lets the normal
finders load that module and, right after it ran, hands it to
``stepscope.collectors.trace.install``, which registers the global optimizer step hook
(and, under ``stepscope run --health``, to ``stepscope.collectors.health.install``, which
adds the training-health hooks). A process that never imports torch never imports
stepscope at all.

Rules it keeps:

* without the launcher's variable (``STEPSCOPE_RUN_DIR``, also
  ``stepscope.collectors.trace.ENV_DIR``) it does nothing but the next point;
* the ``sitecustomize`` this one shadows (the next one on ``sys.path``: a distribution's,
  a container's) still runs, under its own name, with its errors reported by ``site`` as
  they would be without stepscope;
* a failure of ours is one line on stderr and the process goes on without a trace.
"""

import os
import sys

# no ``from __future__`` and no typing at run time: each import costs every process at start-up
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_SWITCH = "STEPSCOPE_RUN_DIR"
_HEALTH = "STEPSCOPE_RUN_HEALTH"
_TARGET = "torch.optim.optimizer"
_HERE = os.path.dirname(os.path.abspath(__file__))


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"stepscope: {message}\n")
        sys.stderr.flush()
    except Exception:
        pass


def _failed(exc: BaseException, what: str = "trace recorder") -> None:
    detail = str(exc).splitlines()[0] if str(exc) else ""
    _warn(f"{what} not installed ({type(exc).__name__}: {detail}); training goes on")


def _collector(name: str) -> "Any":
    """``stepscope.collectors.<name>``; from this file's own checkout when the command's
    interpreter has no stepscope installed (its root is on ``sys.path`` only meanwhile)."""
    full = "stepscope.collectors." + name
    try:
        __import__(full)
    except ImportError:
        root = os.path.dirname(os.path.dirname(os.path.dirname(_HERE)))
        sys.path.append(root)
        try:
            __import__(full)
        finally:
            if root in sys.path:
                sys.path.remove(root)
    return sys.modules[full]


def _loaded(module: "Any") -> None:
    # any order: neither collector removes a global hook from inside PyTorch's hook loop
    if os.environ.get(_HEALTH):
        try:
            _collector("health").install(module)
        except Exception as exc:
            _failed(exc, "training-health hooks")
    try:
        _collector("trace").install(module)
    except Exception as exc:
        _failed(exc)


class _TorchOptimWatcher:
    """A meta-path finder that finds nothing itself: it only marks the loader of
    ``torch.optim.optimizer`` so that :func:`_loaded` runs once that module has run."""

    def find_spec(self, fullname: str, path: "Any" = None, target: "Any" = None) -> "Any":
        if fullname != _TARGET:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        try:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                spec = find(fullname, path, target) if find is not None else None
                if spec is not None:
                    break
            else:
                return None
            run = spec.loader.exec_module

            def exec_module(module: "Any") -> None:
                run(module)
                _loaded(module)

            spec.loader.exec_module = exec_module  # this module's own loader object
            return spec
        except Exception as exc:  # the normal import goes on without us
            _failed(exc)
            return None


def _watch() -> None:
    if not os.environ.get(_SWITCH):
        return
    module = sys.modules.get(_TARGET)
    if module is not None:
        _loaded(module)
    else:
        sys.meta_path.insert(0, _TorchOptimWatcher())


def _chain() -> None:
    """Run the ``sitecustomize`` that this one hides, as ``site`` would have."""
    try:  # what importlib.machinery / importlib.util re-export, without importing them
        from _frozen_importlib import module_from_spec
        from _frozen_importlib_external import PathFinder
    except ImportError:
        from importlib.machinery import PathFinder
        from importlib.util import module_from_spec

    here = os.path.normcase(_HERE)
    rest = [p for p in sys.path if os.path.normcase(os.path.abspath(p or os.curdir)) != here]
    spec = PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


try:
    _watch()
except Exception as exc:
    _failed(exc)
_chain()
