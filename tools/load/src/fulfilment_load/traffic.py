"""The traffic of a run: staff stock the shelves, customers place orders and cancel some, and each
order is followed through the query service until its saga settles it.

Bounds: orders start on a fixed schedule (`rate` a second, never faster, later when the
connection pool is full), placing stops at `duration` or `max_orders`, and the orders still
open get `drain` seconds to settle before the final tally.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from fulfilment_load.api import Answer, SuiteClient, Unreachable
from fulfilment_load.stats import OUTCOMES, Stats, Summary
from fulfilment_load.tokens import Credentials

__all__ = ["Plan", "Refused", "Run", "SetupFailed"]

_AUTH = frozenset({401, 403})
_POLL_FIRST, _POLL_MAX = 0.1, 1.0  # polling an open order backs off between these (seconds)
_TALLY_CONCURRENCY = 16
_SETUP_PATIENCE = 30.0  # seconds the query service may take to show the products registered


class SetupFailed(Exception):
    """The deployment could not be prepared for the run (products, stock, reading them back)."""


class Refused(Exception):
    """A service refused a token (401/403): every further request would be refused too."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send and for how long."""

    rate: float
    duration: float
    max_orders: int | None = None
    tag: str = "run"
    products: int = 5
    stock: int = 1000
    scarce_stock: int = 3  # the first product's: orders of it run out and get rejected
    restock_every: float = 5.0
    cancel_share: float = 0.1
    drain: float = 15.0
    currency: str = "EUR"
    seed: int | None = None

    def skus(self) -> list[str]:
        return [f"load-{self.tag}-{i}" for i in range(self.products)]


@dataclass(slots=True)
class Order:
    order_id: str
    token: str
    placed_at: float  # when its request was sent (monotonic)
    position: int  # the newest consistency token: of the placement, then of the cancellation
    seen: bool = False


@dataclass
class Run:
    client: SuiteClient
    credentials: Credentials
    plan: Plan
    stats: Stats
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    orders: list[Order] = field(default_factory=list)
    refused: str | None = None
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self._random = random.Random(self.plan.seed)

    async def setup(self) -> None:
        """Register the products and their stock, and read them back through the query service."""
        positions: dict[str, int] = {}
        for index, sku in enumerate(self.plan.skus()):
            body = {"sku": sku, "name": f"Load test item {index}", "unit_price": 100 + 50 * index}
            answer = await self.client.command("/products", self.credentials.staff, body | self._currency)
            already = answer.status == 409 and _code(answer) == "product-already-registered"
            if answer.status != 201 and not already:
                raise self._setup_error("registering a product", "staff", answer)
            units = self.plan.scarce_stock if index == 0 else self.plan.stock
            answer = await self.client.command(
                f"/products/{sku}/receipts", self.credentials.staff, {"quantity": units}
            )
            if answer.status != 200:
                raise self._setup_error("receiving stock", "staff", answer)
            positions[sku] = int(answer.body["position"])
        for sku, position in positions.items():
            answer = await self._read(f"/stock/{sku}", self.credentials.staff, position)
            waited_until = time.monotonic() + _SETUP_PATIENCE
            # A projector just started (or catching up on history) may take longer than one read.
            while answer.status == 409 and time.monotonic() < waited_until:
                answer = await self._read(f"/stock/{sku}", self.credentials.staff, position)
            if answer.status != 200:
                raise self._setup_error("reading the stock back", "staff", answer, service="query")
        if self.client.has_saga:
            # An order that does not exist: 404 says the URL and the token are right.
            answer = await self.client.saga(str(uuid.uuid4()), self.credentials.staff)
            if answer.status != 404:
                raise self._setup_error("asking the saga's API", "staff", answer, service="saga")

    async def traffic(self) -> None:
        """Place orders on schedule until the duration, the order bound or a stop, then let them settle."""
        self.started = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        restocking = asyncio.create_task(self._restock())
        index = 0
        while not self.stop.is_set():
            due = index / self.plan.rate
            if due >= self.plan.duration or (
                self.plan.max_orders is not None and index >= self.plan.max_orders
            ):
                break
            delay = self.started + due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            task = asyncio.create_task(self._order(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            index += 1
        self.stop.set()
        restocking.cancel()
        await asyncio.gather(restocking, return_exceptions=True)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=self.plan.drain)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def tally(self) -> Summary:
        """Each placed order's status as the query service shows it at its newest consistency token."""
        seconds = time.monotonic() - self.started
        limit = asyncio.Semaphore(_TALLY_CONCURRENCY)

        async def status_of(order: Order) -> str:
            async with limit:
                try:
                    answer = await self._read(f"/orders/{order.order_id}", order.token, order.position)
                except Unreachable:
                    return "unseen"
            found = (
                answer.body.get("status") if answer.status == 200 and isinstance(answer.body, dict) else None
            )
            return str(found) if found is not None else "unseen"

        statuses = Counter(await asyncio.gather(*(status_of(order) for order in self.orders)))
        return Summary(seconds=seconds, stats=self.stats, statuses=statuses, error=self.refused)

    async def _order(self, index: int) -> None:
        token = self.credentials.customers[index % len(self.credentials.customers)]
        skus = self.plan.skus()
        lines = [
            {"sku": sku, "quantity": self._random.randint(1, 3)}
            for sku in self._random.sample(skus, self._random.randint(1, min(3, len(skus))))
        ]
        placed_at = time.monotonic()
        try:
            answer = await self.client.command("/orders", token, {"lines": lines} | self._currency)
            if answer.status != 201:
                self._check_auth(answer, "command", "customer")
                return
            self.stats.placed += 1
            order = Order(str(answer.body["order_id"]), token, placed_at, int(answer.body["position"]))
            self.orders.append(order)
            await self._follow(order)
        except Unreachable as e:
            self.stats.failures[str(e)] += 1
        except Refused:
            pass  # reported once by `_check_auth`, and the run is stopping
        except (KeyError, TypeError, ValueError) as e:
            # An answer without the fields the API documents (a proxy's error page, another service
            # at that URL): counted, and the run goes on.
            self.stats.failures[f"unexpected answer: {e!r}"] += 1

    async def _follow(self, order: Order) -> None:
        """Wait until the order is visible, maybe cancel it, then wait until its saga settles it."""
        if not await self._until_visible(order):
            return
        if self._random.random() < self.plan.cancel_share:
            # A customer changing their mind a moment later: races the saga, as real ones do.
            await asyncio.sleep(self._random.uniform(0, 0.5))
            answer = await self.client.command(
                f"/orders/{order.order_id}/cancel", order.token, {"reason": "load"}
            )
            if answer.status == 200:
                self.stats.cancels += 1
                order.position = int(answer.body["position"])
            else:
                self._check_auth(answer, "command", "customer")
        await self._until_settled(order)

    async def _until_visible(self, order: Order) -> bool:
        # The consistency token makes the query wait (bounded) for the projector; a 409 says it has
        # not caught up yet, so the read is repeated until the run's drain ends it.
        while True:
            answer = await self._read(f"/orders/{order.order_id}", order.token, order.position)
            if answer.status == 200:
                order.seen = True
                self.stats.visible.add(time.monotonic() - order.placed_at)
                if answer.body["status"] in OUTCOMES:
                    self._settled(order, str(answer.body["status"]))
                    return False
                return True
            self._check_auth(answer, "query", "customer")
            await asyncio.sleep(min(answer.retry_after or _POLL_FIRST, _POLL_MAX))

    async def _until_settled(self, order: Order) -> None:
        pause = _POLL_FIRST
        while True:
            await asyncio.sleep(pause)
            outcome = await self._outcome(order)
            if outcome is not None:
                self._settled(order, outcome)
                return
            pause = min(pause * 2, _POLL_MAX)

    async def _outcome(self, order: Order) -> str | None:
        if self.client.has_saga:
            answer = await self.client.saga(order.order_id, self.credentials.staff)
            self._check_auth(answer, "saga", "staff")
            if answer.status == 200 and answer.body.get("phase") == "done":
                return str(answer.body.get("outcome"))
            return None
        answer = await self._read(f"/orders/{order.order_id}", order.token, order.position)
        self._check_auth(answer, "query", "customer")
        status = answer.body.get("status") if answer.status == 200 else None
        return str(status) if status in OUTCOMES else None

    def _settled(self, order: Order, outcome: str) -> None:
        self.stats.completion.add(time.monotonic() - order.placed_at)
        self.stats.outcomes[outcome] += 1

    async def _restock(self) -> None:
        """Staff receive more units of a product now and then, as deliveries arrive."""
        while True:
            await asyncio.sleep(self.plan.restock_every)
            sku = self._random.choice(self.plan.skus()[1:] or self.plan.skus())
            try:
                answer = await self.client.command(
                    f"/products/{sku}/receipts", self.credentials.staff, {"quantity": 50}
                )
            except Unreachable as e:
                self.stats.failures[str(e)] += 1
                continue
            if answer.status == 200:
                self.stats.restocks += 1
            elif answer.status in _AUTH:
                self._check_auth(answer, "command", "staff")

    async def _read(self, path: str, token: str, position: int) -> Answer:
        answer = await self.client.read(path, token, position)
        if answer.status == 409:  # not yet consistent: the query service says when to ask again
            await asyncio.sleep(min(answer.retry_after or _POLL_FIRST, _POLL_MAX))
            answer = await self.client.read(path, token, position)
        return answer

    def _check_auth(self, answer: Answer, service: str, role: str) -> None:
        """A refused token ends the run (every request would be refused), reported once."""
        if answer.status in _AUTH:
            if self.refused is None:
                self.refused = f"the {service} service refused the {role} token: {answer.problem}"
            self.stop.set()
            raise Refused(self.refused)

    def _setup_error(self, doing: str, role: str, answer: Answer, *, service: str = "command") -> SetupFailed:
        if answer.status in _AUTH:
            return SetupFailed(f"the {service} service refused the {role} token: {answer.problem}")
        return SetupFailed(f"{doing} failed at the {service} service: {answer.problem}")

    @property
    def _currency(self) -> dict[str, str]:
        return {"currency": self.plan.currency}


def _code(answer: Answer) -> object:
    return answer.body.get("code") if isinstance(answer.body, dict) else None
