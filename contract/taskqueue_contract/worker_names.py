"""How an RQ worker's name says which pod and which of the pod's work loops it is.

A worker pod runs ``spec.worker.processes`` work loops (slots ``0 .. N-1``). Each loop
registers as ``<pod>-<slot>-<token>``: the token is new at every start, because rq refuses
a name whose hash still exists (a restarted loop would wait minutes for the old one to
expire), and the worker hash's ``hostname`` is the pod name. The operator reads the slot
back to tell a loop replaced inside a live pod (an older worker of the same slot) from
the pod's other, concurrent loops.

Workers of images from before slots (``<pod>-<token>``) count as slot 0.
"""

from __future__ import annotations

import re
import secrets

_SLOT_AND_TOKEN = re.compile(r"(\d+)-[0-9a-f]+")


def worker_name(pod: str, slot: int) -> str:
    """A name unique per loop start: ``<pod>-<slot>-<8 hex digits>``."""
    if slot < 0:
        raise ValueError(f"a slot is >= 0, got {slot}")
    return f"{pod}-{slot}-{secrets.token_hex(4)}"


def slot_of(name: str, pod: str) -> int:
    """The slot of worker `name` in `pod` (its hash's hostname); 0 when the name has none
    (a one-loop image of before, or a worker named by someone else)."""
    rest = name.removeprefix(f"{pod}-") if name.startswith(f"{pod}-") else ""
    match = _SLOT_AND_TOKEN.fullmatch(rest)
    return int(match.group(1)) if match else 0
