"""The orchestrator: records what happens to a saga, then drives it through its steps.

Inputs (Kafka, the provider's webhook, the timers) are first recorded (`record`:
decide and append to the saga's stream), then the saga is driven (`drive`). A crash
in between loses nothing: an append that leaves work to do arms the wake-up timer,
and every command carries its step's idempotency key. Each drive continues the
trace of the order that started the saga. See docs/saga.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime
from uuid import UUID

from eventstore import TRANSIENT, EventStoreError, Metadata
from opentelemetry.trace import Tracer
from servicekit.telemetry import context_of, current_traceparent

from saga_service.commands import CommandClient, idempotency_key
from saga_service.events import ReplyIgnored
from saga_service.evolve import evolve
from saga_service.inputs import FireDeadline, Park, ReceiveReply, RecordStep, SagaInput
from saga_service.providers import AuthorizationRequest, PaymentProvider
from saga_service.resilience import Refusal, Transient
from saga_service.state import PAYMENT_DEADLINE, Phase, Saga, SagaRefused, next_step
from saga_service.steps import OK, AskProvider, Refused, Result, Step
from saga_service.streams import Applied, SagaStreams, SagaSummary
from saga_service.timers import WAKE, DueTimer
from saga_service.views import SagaNotFound, SagaView, WebhookStatus, view_of

__all__ = ["Orchestrator"]

log = logging.getLogger(__name__)

# What a drive may fail with and still be carried on later by the wake-up timer.
RETRY_LATER: tuple[type[BaseException], ...] = (Transient, EventStoreError, *TRANSIENT)


def now() -> datetime:
    return datetime.now(UTC)


class Orchestrator:
    """Records a saga's inputs and drives its steps; one per process."""

    def __init__(
        self,
        streams: SagaStreams,
        commands: CommandClient,
        provider: PaymentProvider,
        tracer: Tracer,
        *,
        callback_url: str,
        concurrency: int,
        stuck_after: float = 120.0,
    ) -> None:
        self.stuck_after = stuck_after
        self.streams = streams
        self.timers = streams.timers
        self.commands = commands
        self.provider = provider
        self.tracer = tracer
        self.callback_url = callback_url
        self._slots = asyncio.Semaphore(concurrency)
        self._driving: set[UUID] = set()
        self._again: set[UUID] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def record(self, order_id: UUID, command: SagaInput, *, fired_timer: str | None = None) -> Applied:
        """Decide and append one input; the events carry the current trace and the order as correlation."""
        metadata = Metadata(
            correlation_id=str(order_id),
            causation_id=f"saga-{order_id}",
            traceparent=current_traceparent(),
            actor="saga",
        )
        return await self.streams.apply(order_id, command, metadata=metadata, fired_timer=fired_timer)

    async def drive(self, order_id: UUID, *, fresh: bool = True) -> Applied:
        """Send the saga's steps until it waits or is over. Transient failures propagate (retry later).

        `fresh=False` starts from the state this process last recorded (see `SagaStreams.current`)."""
        current = await self.streams.load(order_id) if fresh else await self.streams.current(order_id)
        traceparent = await self.streams.traceparent(order_id)
        with self.tracer.start_as_current_span("saga drive", context=context_of(traceparent)) as span:
            span.set_attribute("saga.order_id", str(order_id))
            while current.state is not None and (step := next_step(current.state)) is not None:
                saga = current.state
                with self.tracer.start_as_current_span(f"saga step {step.kind}") as step_span:
                    step_span.set_attribute("saga.step", step.encode())
                    try:
                        result = await self._perform(saga, step)
                    except Refusal as refusal:
                        if saga.phase is Phase.COMPENSATING and refusal.status == 404:
                            # Nothing there to undo (a payment that was never requested).
                            result = Refused(refusal.code)
                        else:
                            log.warning(
                                "saga parked at %s: %s",
                                step,
                                refusal,
                                extra={"order_id": str(order_id), "step": step.encode()},
                            )
                            park = Park(
                                step=step,
                                status=refusal.status,
                                code=refusal.code,
                                detail=refusal.detail,
                                at=now(),
                            )
                            current = await self.record(order_id, park)
                            continue
                    current = await self.record(order_id, RecordStep(step=step, result=result, at=now()))
            return current

    async def _perform(self, saga: Saga, step: Step) -> Result:
        if isinstance(step, AskProvider):
            request = AuthorizationRequest(
                payment_id=saga.order_id,
                amount=saga.total,
                currency=saga.currency,
                callback_url=self.callback_url,
            )
            await self.provider.request_authorization(request, idempotency_key(saga, step))
            return OK
        return await self.commands.send(saga, step)

    # --- reading ------------------------------------------------------------------------------

    async def state(self, order_id: UUID) -> Saga | None:
        """The saga's current state (None: no saga for this order)."""
        return (await self.streams.load(order_id)).state

    async def view(self, order_id: UUID) -> SagaView:
        """Everything the API shows about one saga, folded from one read of its stream."""
        history = await self.streams.read(order_id)
        saga: Saga | None = None
        for recorded in history:
            saga = evolve(saga, recorded.data)  # type: ignore[arg-type]
        if saga is None:
            raise SagaNotFound(f"no saga for order {order_id}")
        return view_of(saga, history, await self.timers.of(order_id))

    async def listing(self, which: str, *, limit: int = 100) -> list[SagaSummary]:
        """Sagas that need a look: `parked`, `stuck` (for `stuck_after` seconds), `failed` or `open`."""
        return await self.streams.listing(which, stuck_after=self.stuck_after, limit=limit)

    async def count(self, which: str, *, limit: int) -> int:
        """How many sagas `listing(which)` shows, counted up to `limit` (a bounded query)."""
        return len(await self.listing(which, limit=limit))

    async def timer_overdue_seconds(self) -> float:
        """How long the oldest pending timer (neither fired nor cancelled) is past its due time; 0 if none.

        Read through the partial index on pending timers, so it costs one index probe."""
        oldest = await self.streams.pool.fetchval(
            """
            SELECT min(due_at) FROM saga.timers WHERE fired_at IS NULL AND cancelled_at IS NULL
            """
        )
        if oldest is None:
            return 0.0
        overdue: float = (now() - oldest).total_seconds()
        return max(0.0, overdue)

    # --- the provider's answers ----------------------------------------------------------------

    async def receive_webhook(self, provider: str, body: bytes, headers: dict[str, str]) -> WebhookStatus:
        """Record a provider's signed answer and drive its saga on. Raises `InvalidSignature`,
        `MalformedWebhook`, or `SagaNotFound` for an unknown provider or payment."""
        if provider != self.provider.name:
            raise SagaNotFound(f"no payment provider named {provider!r}")
        reply = self.provider.parse_webhook(body, headers)
        command = ReceiveReply(
            authorized=reply.authorized,
            provider_reference=reply.provider_reference,
            reason=reply.reason,
            at=now(),
        )
        try:
            applied = await self.record(reply.payment_id, command)
        except SagaRefused as error:
            raise SagaNotFound(f"no saga for payment {reply.payment_id}") from error
        self.kick(reply.payment_id)
        if not applied.events:
            return "duplicate"
        if isinstance(applied.events[0], ReplyIgnored):
            log.info("late or unexpected provider reply ignored", extra={"order_id": str(reply.payment_id)})
            return "ignored"
        return "recorded"

    # --- driving --------------------------------------------------------------------------------

    async def drive_now(self, order_id: UUID) -> None:
        """Drive the saga within the caller's request; what fails transiently is left to its timer."""
        try:
            await self.drive(order_id)
        except RETRY_LATER as error:
            log.warning("saga %s will be retried: %s", order_id, error)

    # --- background driving ------------------------------------------------------------------

    def kick(self, order_id: UUID) -> None:
        """Drive the saga in the background; a drive already running for it goes round once more."""
        if order_id in self._driving:
            self._again.add(order_id)
            return
        self._driving.add(order_id)
        task = asyncio.create_task(self._drive_in_background(order_id), name=f"saga-{order_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drive_in_background(self, order_id: UUID) -> None:
        try:
            async with self._slots:
                while True:
                    self._again.discard(order_id)
                    try:
                        # Kicked right after this process recorded an input: its state is current.
                        await self.drive(order_id, fresh=False)
                    except RETRY_LATER as error:
                        # The wake-up timer armed by the last append picks the saga up again.
                        log.warning("saga %s will be retried: %s", order_id, error)
                        return
                    if order_id not in self._again:
                        return
        except Exception:
            log.exception("saga %s failed unexpectedly; its wake-up timer will retry it", order_id)
        finally:
            self._driving.discard(order_id)

    async def fire(self, timer: DueTimer) -> None:
        """Act on a claimed timer: fire a deadline, or carry on a saga whose driver stopped.

        A deadline is recorded at once and its compensation driven in the background (the append
        armed the saga's wake-up, should that drive fail): sagas being driven must not hold back
        deadlines falling due meanwhile. A wake-up drives the saga within a drive slot.
        """
        try:
            if timer.kind == PAYMENT_DEADLINE:
                traceparent = await self.streams.traceparent(timer.saga_id)
                with self.tracer.start_as_current_span("saga deadline", context=context_of(traceparent)):
                    await self.record(
                        timer.saga_id, FireDeadline(deadline=timer.kind, at=now()), fired_timer=timer.kind
                    )
                self.kick(timer.saga_id)
                return
            async with self._slots:
                await self.drive(timer.saga_id)
            await self.timers.clear_wake(timer.saga_id)
        except SagaRefused as refused:
            log.warning("timer %s of an unknown saga %s: %s", timer.kind, timer.saga_id, refused)
            await self.timers.mark_fired(timer.saga_id, timer.kind)
        except Exception as error:
            # Transient (the usual case) or a bug: either way the saga is tried again later, further
            # apart each time; the row's attempts count them (and the admin list shows it stuck).
            delay = min(60.0, 2.0 ** min(timer.attempts, 6)) * random.uniform(0.5, 1.5)
            if isinstance(error, RETRY_LATER):
                log.warning(
                    "timer %s of saga %s: %s; again in %.1fs", timer.kind, timer.saga_id, error, delay
                )
            else:
                log.exception("timer %s of saga %s failed; again in %.1fs", timer.kind, timer.saga_id, delay)
            with contextlib.suppress(*RETRY_LATER):
                if timer.kind == WAKE:
                    await self.timers.retry_later(timer.saga_id, delay)
                else:
                    await self.timers.postpone(timer.saga_id, timer.kind, delay)

    async def run_timers(self, *, poll: float, batch: int) -> None:
        """Claim and fire due timers until cancelled."""
        while True:
            try:
                due = await self.timers.claim(batch)
            except RETRY_LATER as error:
                log.warning("cannot claim timers: %s", error)
                await asyncio.sleep(1.0)
                continue
            for timer in due:
                task = asyncio.create_task(self.fire(timer), name=f"timer-{timer.kind}-{timer.saga_id}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if len(due) < batch:
                await asyncio.sleep(poll)

    async def close(self) -> None:
        """Cancel the background drives (their timers carry them on elsewhere or after a restart)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
