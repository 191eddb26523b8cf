"""What `mlops-assets run` shows while it runs: a line when a step starts and when it ends, and
between them the step's own progress (what its asset logs at INFO or above), so a long
training step is never silent.

Dagster's console logger prints every event, and a failure three times (step, run, summary);
the headless run uses this logger instead and ends with its own summary. Runs launched from the
UI or by the daemon configure no logger and keep Dagster's."""

import logging
import sys
import time
from typing import Any, TextIO

import dagster as dg

# Where Dagster's log manager puts the structured event on each record it logs.
LOG_RECORD_METADATA = "dagster_meta"


class StepLines(logging.Handler):
    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, LOG_RECORD_METADATA, None) or {}
        event = meta.get("dagster_event")
        if event is None:
            # A message the asset logged itself (progress, decisions); failures get a summary.
            if meta.get("step_key") and logging.INFO <= record.levelno < logging.ERROR:
                self._print(f"    {meta.get('orig_message', record.getMessage())}")
            return
        step = getattr(event, "step_key", None)
        if step is None:
            return
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[step] = time.monotonic()
            self._print(f"  {step} ...")
        elif kind in {"STEP_SUCCESS", "STEP_FAILURE"}:
            took = time.monotonic() - self.started.get(step, time.monotonic())
            outcome = "done" if kind == "STEP_SUCCESS" else "FAILED"
            self._print(f"  {step} {outcome} ({took:.1f} s)")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


@dg.logger(None, description="One line per step start and end, for the terminal.")
def step_progress(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.getLogger(f"mlops_assets.progress.{init_context.run_id}")
    logger.setLevel(logging.DEBUG)  # step events are logged at DEBUG
    logger.propagate = False
    logger.handlers = [StepLines(sys.stdout)]
    return logger


LOGGERS: dict[str, Any] = {"console": dg.colored_console_logger, "progress": step_progress}
