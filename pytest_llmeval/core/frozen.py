"""Objects that live all run, kept out of the cyclic garbage collector's walks.

Process state, not I/O. :func:`gc.freeze` moves every object alive now to the permanent
generation, which full collections skip; :func:`gc.unfreeze` hands them all back. Two places
freeze: the plugin after collection (items, cases, the baseline) and the Claude judge after
importing its SDK (190,000 objects). Handing back the first freeze at the end of a run must not
undo a later one, so each freeze here is numbered and only the latest may be undone.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_last = 0


def freeze() -> int:
    """Freeze every object alive now; the number to pass to :func:`unfreeze_if_last`."""
    global _last
    with _lock:
        gc.freeze()
        _last += 1
        return _last


def unfreeze_if_last(number: int) -> bool:
    """Hand back everything frozen, if freeze ``number`` was the last one made here (a later
    freeze stays, and so does the earlier one it now includes); whether it did."""
    with _lock:
        if number != _last:
            return False
        gc.unfreeze()
        return True
