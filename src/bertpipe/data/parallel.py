"""Ordered, bounded parallel map over a stream.

Owns the one pattern the data stages need: apply a function to a long stream of
work items in worker processes, get results back in input order, and keep only
a bounded number of items in flight so memory does not grow with the corpus
(``multiprocessing.Pool.imap`` reads its whole input eagerly).
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def ordered_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    workers: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    max_in_flight: int | None = None,
) -> Iterator[Any]:
    """``map(fn, items)`` in ``workers`` processes (spawned) or in-process when ``workers == 1``."""
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    # spawn, not fork: the parent may hold threads (tokenizers' Rayon pool, logging).
    ctx = mp.get_context("spawn")
    limit = max_in_flight or 2 * workers + 2
    with ctx.Pool(workers, initializer=initializer, initargs=initargs) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
