"""The reference service's defences against one party starving the others (IMPP-5.3, RFC 6120 §13.12): a rate
limit on fetches per session, a cap on unauthenticated connections per address and on connections in all, and a
cap on the subscription requests waiting for one user."""

from __future__ import annotations

import time


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ConnectionLimits:
    """Who may hold a connection: at most `per_address` unauthenticated connections from one address, and
    `total` connections in all. A connection counts as unauthenticated from its accept until SASL succeeds."""

    def __init__(self, per_address: int, total: int):
        self.per_address = per_address
        self.total = total
        self.connections = 0
        self.unauthenticated: dict[str, int] = {}

    def admit(self, address: str, *, per_address_limit: bool = True) -> str | None:
        """None if a new connection from `address` may go on; otherwise why not."""
        if self.connections >= self.total:
            return f"{self.total} connections already"
        if per_address_limit and self.unauthenticated.get(address, 0) >= self.per_address:
            return f"{self.per_address} unauthenticated connections from {address} already"
        self.connections += 1
        self.unauthenticated[address] = self.unauthenticated.get(address, 0) + 1
        return None

    def authenticated(self, address: str) -> None:
        self._forget(address)

    def closed(self, address: str, *, was_authenticated: bool) -> None:
        self.connections -= 1
        if not was_authenticated:
            self._forget(address)

    def _forget(self, address: str) -> None:
        left = self.unauthenticated.get(address, 0) - 1
        if left > 0:
            self.unauthenticated[address] = left
        else:
            self.unauthenticated.pop(address, None)
