"""The one deadline loop: ask again every `interval` seconds until the answer is yes or time is up."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(done: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Call `done()` until it is true (then True) or `timeout` seconds have passed (then False);
    `done()` is asked at least once."""
    deadline = time.monotonic() + timeout
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(interval, left))
    return True
