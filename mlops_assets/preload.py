"""Imports a later step needs, done on a background thread while the current step fits models
or reads a large file.

Fitting trees runs mostly in native code that releases the GIL (boosting takes it back
between a node's parallel regions), and most of a run's single-threaded seconds are imports
(skops alone imports every scikit-learn estimator and pytest: about a second). Importing those
modules beside a long fit costs the run little wall time; importing them after it, where they
are needed, costs it in full (measured at 100,000 rows: logging the model
2.0 s -> 0.9 s, the model report 1.5 s -> 0.6 s).

Only beside long fits, though: the refit of a race's winner, not the race. Each time
a fit hands the GIL over to release it, the importing thread keeps it for up to the
interpreter's 5 ms switch interval. A race's hundreds of short fits (a forest's trees on a few
thousand rows) each paid that: beside the race, the run at 100,000 rows took 1.2-2.2 s
longer than beside the refit. On the demo's 455 rows, beside full cross-validation, it doubled the
sweep (1.5 s -> 3.6 s) and saved nothing.

And only beside a refit on one thread. One the machine leaves two cores for
(mlops_assets.training.cores) takes both, and the importing thread beside it stalls both OpenMP
threads at every barrier: at 100,000 rows the refit took 5.9-7.8 s with the imports beside it
against 3.7 s alone, more than the imports cost after it (about 2 s).

Reading a large landed file is native work too (Arrow's CSV parser, hashing), so raw_dataset
imports what trained_model starts with beside it.

One shared state is touched from both threads: `warnings.catch_warnings` saves and restores the
process's warning filters and is not thread-safe (skops enters it for each ufunc it looks up,
scikit-learn for each array it checks). Overlapping, the two can leave a filter of the other
in place for the rest of the process: at worst a warning shown or hidden, never a result
changed.
"""

import importlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# What trained_model imports first: scikit-learn's estimators and metrics, about a second.
TRAINING = ("mlops_assets.training.sweep",)
# What trained_model's logging, registered_model and model_report import after the sweep.
AFTER_TRAINING = (
    "skops.io",
    "mlflow.sklearn",
    "mlflow.pyfunc",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "mlops_assets.reporting",
    "mlops_assets.promotion",
)


def _import_all(modules: tuple[str, ...]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            # The step that needs the module imports it again and reports the error there,
            # where it belongs; a failed import leaves nothing behind in sys.modules.
            continue


@contextmanager
def preloading(modules: tuple[str, ...] = AFTER_TRAINING, enabled: bool = True) -> Iterator[None]:
    """Import `modules` on a thread while the block runs; wait for them when it ends, so no
    import is left running when the process moves on (or exits). Not `enabled`, the block runs
    alone and the modules are imported where they are needed."""
    if not enabled:
        yield
        return
    thread = threading.Thread(
        target=_import_all, args=(modules,), name="preload-imports", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        thread.join()
