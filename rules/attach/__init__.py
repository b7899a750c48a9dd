"""Moved to :mod:`stepscope.attach` (``from stepscope.attach import attach_to_estimator``).

``rules.attach.<module>`` still imports, as the same module object as
``stepscope.attach.<module>``, so scripts written against the old name keep working.
"""

from stepscope.attach.common import AttachError

__all__ = ["AttachError"]
