"""A watchdog for blocking calls that can overrun their own timeout.

librdkafka's transactional calls take a timeout, but after a broker restart
``send_offsets_to_transaction`` has been seen blocking for minutes past it (docs/normalizer.md,
"Watchdog"). A process stuck there holds its partitions and ignores SIGTERM, because Python runs
signal handlers only between bytecodes. So every such call runs under :meth:`Watchdog.guard`:
when a guarded call overruns its deadline, a separate thread logs one line and ends the process
with :data:`EXIT_OVERRUN`, and the supervisor (``revloop up``) starts it again. Exactly-once
output does not depend on a clean exit: the restarted instance's transactional id fences and
aborts whatever the stuck one left open.

:meth:`Watchdog.stop_within` bounds shutdown the same way: once SIGTERM arrives the process has
that long to finish its batch and close, then it exits with :data:`EXIT_SHUTDOWN_OVERRUN`.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["EXIT_OVERRUN", "EXIT_SHUTDOWN_OVERRUN", "Watchdog", "stop_on_signals"]

log = logging.getLogger(__name__)

EXIT_OVERRUN = 75
"""EX_TEMPFAIL: a call hung; starting again is the remedy."""
EXIT_SHUTDOWN_OVERRUN = 143
"""128 + SIGTERM: asked to stop, did not manage it in time."""


def _exit_now(code: int) -> None:
    logging.shutdown()  # flush the one line that says why
    os._exit(code)


class Watchdog:
    """Deadlines for guarded calls, checked by a daemon thread that never blocks on them."""

    def __init__(
        self,
        process: str,
        *,
        on_overrun: Callable[[int], None] = _exit_now,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.process = process
        self._on_overrun = on_overrun
        self._clock = clock
        self._deadlines: dict[int, tuple[float, str, int]] = {}
        self._tokens = itertools.count()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self.fired: str | None = None
        """What overran, once the watchdog has fired (for tests that do not exit)."""

    @contextmanager
    def guard(self, what: str, seconds: float) -> Iterator[None]:
        """Run the body; if it has not finished ``seconds`` from now, the watchdog fires."""
        token = self._arm(what, seconds, EXIT_OVERRUN)
        try:
            yield
        finally:
            with self._changed:
                self._deadlines.pop(token, None)

    def stop_within(self, seconds: float) -> None:
        """Shutdown has begun: the process must be gone ``seconds`` from now. Never disarmed."""
        self._arm("shutdown after SIGTERM", seconds, EXIT_SHUTDOWN_OVERRUN)

    def _arm(self, what: str, seconds: float, code: int) -> int:
        self._ensure_running()
        token = next(self._tokens)
        with self._changed:
            label = f"{what} (deadline {seconds:g} s)"
            self._deadlines[token] = (self._clock() + seconds, label, code)
            self._changed.notify()
        return token

    def _ensure_running(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._watch, name=f"{self.process}-watchdog", daemon=True
            )
            self._thread.start()

    def _watch(self) -> None:
        with self._changed:
            while True:
                now = self._clock()
                if self._deadlines:
                    deadline, what, code = min(self._deadlines.values())
                    if now >= deadline:
                        self.fired = what
                        self._deadlines.clear()
                        log.critical(
                            "watchdog: %s overran %s; exiting with %d so the supervisor "
                            "restarts it",
                            self.process,
                            what,
                            code,
                        )
                        self._on_overrun(code)
                        continue
                    self._changed.wait(min(deadline - now, 1.0))
                else:
                    self._changed.wait(1.0)


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def stop_on_signals(stop: threading.Event, watchdog: Watchdog, within_seconds: float) -> None:
    """SIGTERM or SIGINT sets ``stop`` and gives the process ``within_seconds`` to be gone.

    Call it from the main thread before any other thread starts. The signals are taken by a
    thread of their own (``sigwait``) rather than a Python handler: a handler runs only when the
    main thread is back in the interpreter, which a call stuck inside librdkafka never is.
    Threads started afterwards inherit the blocked mask, so none of them takes the signal.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)

    def wait_for_signal() -> None:
        signum = signal.sigwait(_STOP_SIGNALS)
        log.info("%s: %s received; stopping", watchdog.process, signal.Signals(signum).name)
        watchdog.stop_within(within_seconds)
        stop.set()
        signal.sigwait(_STOP_SIGNALS)  # asked twice (Ctrl-C again): no more waiting
        log.warning("%s: second stop signal; exiting now", watchdog.process)
        _exit_now(EXIT_SHUTDOWN_OVERRUN)

    threading.Thread(target=wait_for_signal, name="stop-signals", daemon=True).start()
