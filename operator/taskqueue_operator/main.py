"""`taskqueue-operator`: kopf with our settings (standalone, liveness, namespaces).

Settings are parsed once (`taskqueue_operator.settings`) and handed to kopf's startup
handler in kopf's `memo`. Several replicas elect a leader on a Lease
(``--leader-election-namespace``); kopf's own peering is not used: it pauses only kopf's
handlers, not our per-TaskQueue loops.
"""

from __future__ import annotations

import gc
import logging
import sys

import kopf

from taskqueue_operator.settings import OperatorSettings, parse_or_exit


def main(argv: list[str] | None = None) -> int:
    options = parse_or_exit(argv)
    run(options)
    return 0


# The cyclic collector's thresholds (CPython's default: 700, 10, 10). With a thousand
# TaskQueues the heap holds millions of watched objects, and every full collection walks
# them all: 40 % of the event loop's time went to collections (bench/many_taskqueues.py,
# docs/operations.md). Almost all garbage here goes by reference counting; cycles wait
# longer, in fewer, larger collections.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Fewer collections; what is imported by now lives as long as the process, so it
    leaves the collected generations (`gc.freeze`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(options: OperatorSettings) -> None:
    import taskqueue_operator.handlers  # noqa: F401 - registers the kopf handlers
    from taskqueue_operator import metrics

    tune_gc()

    if options.metrics_port:
        metrics.serve(options.metrics_port)

    kopf.configure(verbose=options.verbose)
    if not options.verbose:
        # One line per watch event and handler is noise with hundreds of TaskQueues.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        standalone=True,
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
        liveness_endpoint=options.liveness_endpoint or None,
        memo=kopf.Memo(operator=options),
    )


if __name__ == "__main__":
    sys.exit(main())
