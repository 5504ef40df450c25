"""What every emulator shares: the calls it counted, a rate window, failures on demand."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from starlette.requests import Request


@dataclass
class Calls:
    """What an emulator was asked: every call, and those past its rate limit."""

    total: int = 0
    violations: int = 0
    writes: list[tuple[str, str]] = field(default_factory=list)
    """(object id, status) of every status change, in order."""


class Window:
    """Points spent in the last ``seconds``."""

    def __init__(self, capacity: int, seconds: float) -> None:
        self.capacity, self.seconds = capacity, seconds
        self._spent: deque[tuple[float, int]] = deque()

    def used(self, now: float) -> int:
        while self._spent and self._spent[0][0] <= now - self.seconds:
            self._spent.popleft()
        return sum(points for _, points in self._spent)

    def spend(self, points: int, now: float) -> bool:
        if self.used(now) + points > self.capacity:
            return False
        self._spent.append((now, points))
        return True


class Emulator:
    def __init__(self) -> None:
        self.calls = Calls()
        self._lock = threading.Lock()
        self._failures: deque[int] = deque()

    def fail_next(self, times: int = 1, status: int = 503) -> None:
        """The next ``times`` calls are answered ``status`` (and change nothing)."""
        with self._lock:
            self._failures.extend([status] * times)

    def injected(self) -> int | None:
        return self._failures.popleft() if self._failures else None


async def form_fields(request: Request) -> dict[str, str]:
    """A POST's urlencoded fields (the Graph API's form posts)."""
    if request.method != "POST":
        return {}
    return {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
