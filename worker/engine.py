"""The engine: Kafka records in, per-key ordered handler calls, durable outcomes, safe commits.

Rooms and their doors::

    fetch loop ──► Router.decode ──► KeyLanes.submit ──► runner pool ──► handler ──► outcome
        │ (pauses partitions on budget)                                   │
        ▼                                                                 ▼
    PartitionOffsets.track                          durable(Done | Park | Reject) ──► complete
                                                                                      │
    commit loop / revocation / shutdown ◄── Checkpoint.commit (one place) ◄───────────┘

The engine knows Kafka, keys, offsets and outcomes; it knows nothing of SAP or Amazon.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import Token
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from anyio.abc import TaskStatus
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode

from config.settings import EngineSettings
from worker.backoff import Backoff
from worker.checkpoint import Checkpoint, PartitionState
from worker.deadlines import DeadlineWatch
from worker.errors import is_infrastructure
from worker.lanes import FAIRNESS_QUANTUM, KeyLanes
from worker.messages import DecodeFailure, EventInfo, Message, Router
from worker.offsets import PartitionOffsets
from worker.outcomes import Done, Outcome, Park, Reject, Retry
from worker.pacing import DeadlinePacer
from worker.ready import DeadlineReady, FifoReady, PacedReady, ReadyQueue
from worker.sinks import OutcomeSinks
from worker.slicing import LoopSlice
from worker.telemetry import EngineMetrics, Gauges
from worker.tracing import MessageSpans

log = logging.getLogger("skuflow.engine")

#: Records admitted between two yields to the event loop.
ADMIT_CHUNK = 256

#: With a loop slice, records admitted between two looks at the slice's clock.
SLICED_ADMIT_CHUNK = 32

#: The final commit at shutdown gets this long, even when the run was cancelled.
FINAL_COMMIT_SECONDS = 10.0

#: While every partition is paused, the fetch loop still polls (it returns nothing) at least
#: this often, far inside any sensible ``kafka.max_poll_interval_ms``.
POLL_KEEPALIVE_SECONDS = 1.0


class EngineOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What one engine consumes and how it is tuned (``[engine]`` of the settings)."""

    topics: tuple[str, ...]
    group: str
    tuning: EngineSettings = msgspec.field(default_factory=EngineSettings)
    fetch_timeout_ms: int = 200
    #: Urgent class: lanes run earliest deadline first and deadlines are watched.
    deadline_first: bool = False
    #: Slack below which a deadline is at risk (seconds).
    at_risk_seconds: float = 7200.0

    @property
    def backoff(self) -> Backoff:
        t = self.tuning
        return Backoff(t.retry_initial_seconds, t.retry_max_seconds, t.retry_multiplier)


class _Work:
    """One message on its way through a lane."""

    __slots__ = ("event", "failure", "info", "message", "part", "size")

    def __init__(
        self,
        message: Message,
        part: PartitionState,
        event: Any,
        info: EventInfo | None,
        failure: DecodeFailure | None,
    ) -> None:
        self.message = message
        self.part = part
        self.event = event
        self.info = info
        self.failure = failure
        self.size = message.size


class Engine:
    """Consumes ``options.topics`` in one group and drives each message to a durable outcome."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        router: Router,
        sinks: OutcomeSinks,
        options: EngineOptions,
        *,
        metrics: EngineMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        yield_to: Callable[[], bool] | None = None,
        tracer: trace.Tracer | None = None,
        pacer: DeadlinePacer | None = None,
        loop_slice: LoopSlice | None = None,
    ) -> None:
        self._consumer = consumer
        #: The class's work waits for this rate limiter's tokens: lanes are picked when a token
        #: is free, earliest deadline first at that moment (see worker.pacing).
        self._pacer = pacer
        #: None: tracing off, and the hot path runs no tracing code at all.
        self._spans = MessageSpans(tracer) if tracer is not None else None
        self._router = router
        self._sinks = sinks
        self._opt = options
        self._tuning = options.tuning
        self._backoff = options.backoff
        self._metrics = metrics or EngineMetrics()
        self._clock = clock
        self._partitions: dict[TopicPartition, PartitionState] = {}
        ready: ReadyQueue
        if pacer is not None:
            ready = PacedReady(pacer)
        else:
            ready = DeadlineReady() if options.deadline_first else FifoReady()
        self._lanes: KeyLanes[_Work] = KeyLanes(
            self._process,
            max_in_flight=options.tuning.max_in_flight,
            max_lanes=2 * (options.tuning.max_buffered_messages + options.tuning.fetch_max_records),
            skip=self._skip_revoked,
            ready=ready,
            deadline=_deadline_of,
            quantum=1 if pacer is not None else FAIRNESS_QUANTUM,  # one token, one event
            loop_slice=loop_slice,
        )
        #: Background class beside urgent work: admission and runners share a bounded slice
        #: of each event-loop iteration (see worker.slicing).
        self._slice = loop_slice
        self._checkpoint = Checkpoint(
            consumer,
            self._metrics,
            map_budget=options.tuning.offset_map_max_bytes,
            group=options.group,
            tracer=tracer,
        )
        self._deadlines = DeadlineWatch(
            sinks, self._metrics, self._durably, at_risk_seconds=options.at_risk_seconds
        )
        self._yield_to = yield_to
        self._pressured = False
        #: Parked events being retried belong to no partition: their offsets are committed.
        self._parked = PartitionState(TopicPartition("skuflow.parked", -1), PartitionOffsets(None))
        self._buffered = 0
        self._buffered_bytes = 0
        self._paused: set[TopicPartition] = set()
        #: Bumped at every revocation: records fetched before it are not admitted after it.
        self._generation = 0
        self._over_budget = False
        self._below_low_water = anyio.Event()
        self._parked_queued = 0
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        self.joined = False
        self.draining = False
        self.fetch_heartbeat = clock()
        self._polled_at = clock()
        self.processed = 0
        self._register_gauges()

    # -- public surface --------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop fetching and drain (idempotent; safe from a signal handler's task)."""
        self.draining = True
        self._stop.set()

    @property
    def buffered(self) -> int:
        return self._buffered

    @property
    def in_flight(self) -> int:
        return self._lanes.in_flight

    @property
    def paused_partitions(self) -> int:
        return len(self._paused)

    def assignment(self) -> list[TopicPartition]:
        return sorted(self._partitions)

    @property
    def topics(self) -> tuple[str, ...]:
        return self._opt.topics

    def pressure(self) -> bool:
        """Work of this class waits to start and lower classes should step aside.

        Waiting while runners are free means the process (CPU, event loop) is the bottleneck:
        lower classes pause. Waiting because every runner is busy on I/O (e.g. the marketplace's
        rate limit) is not helped by starving them, unless a waiting deadline is at risk.
        """
        lanes = self._lanes
        if not lanes.waiting_lanes:  # (events behind a running one of their key wait by design)
            return False
        if self._pacer is not None and self._pacer.waiting:
            return False  # the work waits for the rate limiter's tokens: starving others won't help
        if lanes.in_flight < self._tuning.max_in_flight:
            return True
        earliest = lanes.earliest_waiting_deadline()
        return earliest is not None and earliest - time.time() < self._opt.at_risk_seconds

    @property
    def parked_in_flight(self) -> int:
        return self._parked.in_flight + self._parked_queued

    def submit_parked(self, message: Message) -> None:
        """Run a parked event again (claimed by the park retrier); never blocks."""
        decoded = self._router.decode(message)
        if isinstance(decoded, DecodeFailure):
            work = _Work(message, self._parked, None, None, decoded)
            key: Any = message.key if message.key is not None else "parked"
        else:
            info = self._router.describe(decoded)
            work = _Work(message, self._parked, decoded, info, None)
            key = info.ordering_key if info.ordering_key is not None else message.key
        self._parked_queued += 1
        self._buffered += 1
        self._buffered_bytes += work.size
        self._lanes.submit(key, work)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until :meth:`request_stop`, then drain, commit and leave the group."""
        listener = _Listener(self)
        self._consumer.subscribe(topics=list(self._opt.topics), listener=listener)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self._lanes.run)
                tg.start_soon(self._commit_loop)
                task_status.started()
                await self._fetch_loop()
                await self._drain()
                tg.cancel_scope.cancel()
        finally:
            # Shielded so a cancelled run still commits what is done, bounded so a broker that
            # is already gone cannot hold the shutdown hostage.
            with anyio.move_on_after(FINAL_COMMIT_SECONDS, shield=True):
                await self._checkpoint.commit(list(self._partitions.values()))
            self._metrics.flush()
            self._stopped.set()

    # -- fetching --------------------------------------------------------------------------------
    async def _fetch_loop(self) -> None:
        consumer = self._consumer
        opt = self._opt
        while not self._stop.is_set():
            self.fetch_heartbeat = self._clock()
            self._apply_backpressure()
            timeout_ms = opt.fetch_timeout_ms
            if self._over_budget or self._pressured:
                if self._over_budget:
                    # Every partition is paused: a fetch cannot return anything. Wait for the
                    # runners to drain below the low-water mark instead (beating regularly).
                    self._below_low_water = anyio.Event()
                    with anyio.move_on_after(opt.fetch_timeout_ms / 1000):
                        await self._below_low_water.wait()
                else:
                    await anyio.sleep(0.01)  # a higher class has work waiting: yield to it
                if self._clock() - self._polled_at < POLL_KEEPALIVE_SECONDS:
                    continue
                # Still a poll now and then, with every partition paused (it returns nothing):
                # the Kafka client counts polls as the consumer being alive, and one that has
                # not polled for max_poll_interval_ms leaves its group — a long ERP outage
                # that fills the buffer would otherwise hand every partition away.
                timeout_ms = 0
            batch = await consumer.getmany(
                timeout_ms=timeout_ms, max_records=self._tuning.fetch_max_records
            )
            self._polled_at = self._clock()
            # Records fetched under one assignment are admitted only while it lasts: the loop
            # suspends between chunks, and a rebalance meanwhile may revoke a partition (and
            # assign it afresh, from its committed offset). The rest of such a batch is dropped,
            # untracked: the partition's owner fetches it again from the committed offset.
            generation = self._generation
            for tp, records in batch.items():
                if generation != self._generation:
                    break
                part = self._partitions.get(tp)
                if part is None:
                    part = self._partitions[tp] = PartitionState(tp, PartitionOffsets(None))
                if part.revoked:
                    continue
                self._metrics.consumed.add(len(records), {"messaging.destination.name": tp.topic})
                sliced = self._slice
                for index, record in enumerate(records, 1):
                    if sliced is not None and not index % SLICED_ADMIT_CHUNK:
                        await sliced.turn()
                    if index % ADMIT_CHUNK == 1 and index > 1:
                        # A big fetch must not hold the loop: other classes' fetches, runners
                        # and probes get a turn every chunk.
                        await anyio.lowlevel.checkpoint()
                    if generation != self._generation:
                        break
                    self._admit(part, record)

    def _admit(self, part: PartitionState, record: Any) -> None:
        if not part.offsets.track(record.offset):
            self._metrics.skipped.add(1, {"messaging.destination.name": part.tp.topic})
            return
        message = Message(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value if record.value is not None else b"",
            headers=record.headers or (),
            timestamp_ms=record.timestamp,
        )
        decoded = self._router.decode(message)
        if isinstance(decoded, DecodeFailure):
            work = _Work(message, part, None, None, decoded)
            key: Any = message.key if message.key is not None else part.tp
        else:
            info = self._router.describe(decoded)
            work = _Work(message, part, decoded, info, None)
            if info.ordering_key is not None:
                key = info.ordering_key
            else:
                key = message.key if message.key is not None else part.tp
        self._buffered += 1
        self._buffered_bytes += work.size
        self._lanes.submit(key, work)

    def _under_low_water(self) -> bool:
        opt = self._tuning
        return (
            self._buffered <= opt.max_buffered_messages * opt.resume_ratio
            and self._buffered_bytes <= opt.max_buffered_bytes * opt.resume_ratio
        )

    def _apply_backpressure(self) -> None:
        """Pause partitions while over budget; resume below the low-water mark."""
        opt = self._tuning
        if self._over_budget:
            self._over_budget = not self._under_low_water()
        else:
            self._over_budget = (
                self._buffered >= opt.max_buffered_messages
                or self._buffered_bytes >= opt.max_buffered_bytes
            )
        self._pressured = self._yield_to is not None and self._yield_to()
        everything = self._over_budget or self._pressured
        assigned = self._consumer.assignment()
        wanted: set[TopicPartition] = set()
        for tp in assigned:
            part = self._partitions.get(tp)
            if everything or (
                part is not None
                and (part.map_full or part.offsets.window >= opt.max_buffered_messages)
            ):
                wanted.add(tp)
        to_pause = wanted - self._paused
        to_resume = (self._paused - wanted) & assigned
        if to_pause:
            self._consumer.pause(*to_pause)
            log.debug("paused", extra={"partitions": sorted(map(str, to_pause))})
        if to_resume:
            self._consumer.resume(*to_resume)
            log.debug("resumed", extra={"partitions": sorted(map(str, to_resume))})
        self._paused = wanted

    # -- processing ------------------------------------------------------------------------------
    def _skip_revoked(self, work: _Work) -> bool:
        if not work.part.revoked:
            return False
        self._release(work)
        return True

    def _release(self, work: _Work) -> None:
        self._buffered -= 1
        self._buffered_bytes -= work.size
        if self._over_budget and not self._below_low_water.is_set() and self._under_low_water():
            self._below_low_water.set()

    async def _process(self, work: _Work) -> None:
        """Run one message to a durable outcome, then complete its offset.

        A cancellation (revocation timeout, shutdown) leaves the offset incomplete, so it is
        never committed and the event is redone by whoever owns the partition next. With
        tracing on, the outcome is reached inside a ``process <topic>`` span, child of the
        producer's context (inline, not a coroutine of its own: this runs for every message).
        """
        part = work.part
        part.in_flight += 1
        started = self._clock()
        outcome = "cancelled"
        parked = part is self._parked
        if parked:
            self._parked_queued -= 1
        spans = self._spans
        span: trace.Span | None = None
        token: Token[Context] | None = None
        try:
            if spans is not None:
                message = work.message
                span, context = spans.start(f"process {message.topic}", message.headers)
                if span is not None and span.is_recording():
                    span.set_attributes(self._span_attributes(work))
                token = otel_context.attach(context)
            outcome = await self._execute(work)
            if not parked:
                part.offsets.complete(work.message.offset)
            self.processed += 1
        finally:
            if self._pacer is not None:
                self._pacer.release()  # a token this work did not spend goes to the next
            if token is not None:
                otel_context.detach(token)
                if span is not None:  # (None: not recorded, nothing to end)
                    _end(span, outcome)
            part.in_flight -= 1
            self._release(work)
            self._metrics.outcome(part.tp.topic, outcome, self._clock() - started)

    def _span_attributes(self, work: _Work) -> dict[str, Any]:
        message = work.message
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": message.topic,
            "messaging.destination.partition.id": str(message.partition),
            "messaging.consumer.group.name": self._opt.group,
            "messaging.kafka.offset": message.offset,
        }
        if message.key is not None:
            attributes["messaging.kafka.message.key"] = message.key.decode("utf-8", "replace")
        if message.parked_id is not None:
            attributes["skuflow.parked_id"] = message.parked_id
        info = work.info
        if info is not None:
            if info.event_id is not None:
                attributes["messaging.message.id"] = info.event_id
            attributes["skuflow.event_type"] = info.event_type
            attributes["skuflow.priority"] = info.priority
            if info.sku is not None:
                attributes["skuflow.sku"] = info.sku
            if info.order_id is not None:
                attributes["skuflow.order_id"] = info.order_id
            if info.deadline is not None:
                attributes["skuflow.deadline_slack_s"] = round(info.deadline - time.time(), 3)
        return attributes

    async def _reject(
        self, message: Message, failure: DecodeFailure, info: EventInfo | None
    ) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("error.type", failure.kind)
            span.set_status(Status(StatusCode.ERROR, f"{failure.kind}: {failure.reason}"))
        await self._durably("exception", self._sinks.reject, message, failure, info)
        self._metrics.exceptions.add(
            1, {"messaging.destination.name": message.topic, "skuflow.exception.kind": failure.kind}
        )

    async def _execute(self, work: _Work) -> str:
        """Drive one message to a durable outcome; return the outcome's kind."""
        message = work.message
        if work.failure is not None:
            await self._reject(message, work.failure, None)
            return "reject"
        info = work.info
        assert info is not None
        handler = self._router.handler_for(work.event)
        if handler is None:
            failure = DecodeFailure(
                "no_handler",
                f"no handler for event type {info.event_type!r} in this build; "
                "retry the exception once a handler is deployed",
            )
            await self._reject(message, failure, info)
            return "reject"
        watch = self._opt.deadline_first and info.deadline is not None
        stalls = 0  # waits for a dependency (they do not count as attempts)
        while True:
            if watch:
                await self._deadlines.check(message, info)
            message.attempts += 1
            try:
                outcome: Outcome = await handler(work.event, message)
            except Exception as exc:
                trace.get_current_span().record_exception(exc)
                if is_infrastructure(exc):
                    outcome = Retry(f"{type(exc).__name__}: {exc}", dependency=True)
                else:
                    log.exception("handler raised", extra=message.where())
                    outcome = Retry(f"handler raised {type(exc).__name__}: {exc}")
            if isinstance(outcome, Retry) and outcome.dependency:
                message.attempts -= 1
                stalls += 1
                await self._wait_to_retry(message, outcome, stalls)
                continue
            if isinstance(outcome, Done):
                if self._sinks.settles(message):
                    await self._durably("settle", self._sinks.done, message)
                if message.alert is not None:
                    await self._deadlines.applied(message, info)
                return "done"
            if isinstance(outcome, Retry):
                if message.attempts >= self._tuning.max_attempts:
                    outcome = Reject(
                        "retries_exhausted",
                        f"gave up after {message.attempts} attempts: {outcome.reason}",
                    )
                else:
                    await self._wait_to_retry(message, outcome, message.attempts)
                    continue
            if isinstance(outcome, Park):
                trace.get_current_span().add_event(
                    "parked",
                    {"skuflow.reason": outcome.reason, "skuflow.attempt": message.attempts},
                )
                await self._durably("park", self._sinks.park, message, outcome, info)
                return "park"
            rejected = DecodeFailure(outcome.kind, outcome.reason)
            await self._reject(message, rejected, info)
            return "reject"

    async def _wait_to_retry(self, message: Message, retry: Retry, count: int) -> None:
        """Sleep before the next attempt: the handler's delay, else the backoff of ``count``
        (the attempts so far, or for a dependency outage the waits so far, which are not
        attempts)."""
        delay = self._backoff.delay(count) if retry.after is None else retry.after
        if self._pacer is not None:
            self._pacer.release()  # no token sits idle through the wait
        where = {"messaging.destination.name": message.topic}
        span = trace.get_current_span()
        if retry.dependency:
            self._metrics.retries.add(1, {**where, "skuflow.retry.cause": "dependency"})
            span.add_event(
                "dependency_unavailable",
                {
                    "skuflow.reason": retry.reason,
                    "skuflow.stalls": count,
                    "skuflow.retry_in_s": delay,
                },
            )
            log.warning(
                "dependency unavailable; waiting (not counted as an attempt)",
                extra={**message.where(), "reason": retry.reason, "stalls": count,
                       "retry_in_s": delay},
            )  # fmt: skip
        else:
            self._metrics.retries.add(1, where)
            log.info(
                "retrying",
                extra={**message.where(), "attempt": count, "reason": retry.reason},
            )
            span.add_event(
                "retry",
                {"skuflow.attempt": count, "skuflow.reason": retry.reason,
                 "skuflow.retry_in_s": round(delay, 3)},
            )  # fmt: skip
        await anyio.sleep(delay)

    async def _durably(
        self, what: str, write: Callable[..., Awaitable[object]], *args: Any, **kwargs: Any
    ) -> None:
        """Retry an infrastructure write until it succeeds: the offset waits for it."""
        attempt = 0
        while True:
            try:
                await write(*args, **kwargs)
                return
            except Exception as exc:
                attempt += 1
                delay = self._backoff.delay(attempt)
                log.warning(
                    "durable write failed; retrying",
                    extra={"write": what, "error": type(exc).__name__, "retry_in_s": delay},
                )
                await anyio.sleep(delay)

    # -- commits ---------------------------------------------------------------------------------
    async def _commit_loop(self) -> None:
        while True:
            await anyio.sleep(self._tuning.commit_interval_seconds)
            self._metrics.flush()
            await self._checkpoint.commit([p for p in self._partitions.values() if not p.revoked])

    # -- rebalancing -----------------------------------------------------------------------------
    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        fresh = [tp for tp in assigned if tp not in self._partitions]
        self._partitions.update(await self._checkpoint.restore(fresh))
        self.joined = True
        log.info("partitions assigned", extra={"partitions": sorted(map(str, assigned))})

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._generation += 1  # what the fetch loop holds was fetched under the old assignment
        parts = [self._partitions[tp] for tp in revoked if tp in self._partitions]
        for part in parts:
            part.revoked = True
        for work in self._lanes.discard(lambda w: w.part.revoked):
            self._release(work)
        with anyio.move_on_after(self._tuning.revoke_timeout_seconds):
            await _wait_until(lambda: not any(part.in_flight for part in parts))
        cancelled = self._lanes.cancel_running(lambda w: w.part.revoked)
        if cancelled:
            log.warning("revocation cancelled in-flight work", extra={"cancelled": cancelled})
        await self._checkpoint.commit(parts)
        for part in parts:
            self._partitions.pop(part.tp, None)
            self._paused.discard(part.tp)
        log.info("partitions revoked", extra={"partitions": sorted(map(str, revoked))})

    # -- draining --------------------------------------------------------------------------------
    async def _drain(self) -> None:
        """Stop starting work; let in-flight work finish within the drain timeout."""
        self._lanes.close()
        with anyio.move_on_after(self._tuning.drain_timeout_seconds):
            await _wait_until(lambda: not self._lanes.in_flight)
        if self._lanes.in_flight:
            log.warning(
                "drain timeout: cancelling in-flight work",
                extra={"in_flight": self._lanes.in_flight},
            )

    def _register_gauges(self) -> None:
        gauges: list[tuple[str, str, str, Callable[[], float]]] = [
            ("skuflow.in_flight", "Messages being processed.", "{message}",
             lambda: self._lanes.in_flight),
            ("skuflow.buffered", "Messages fetched and not yet durable.", "{message}",
             lambda: self._buffered),
            ("skuflow.keys.active", "Keys with queued or running work.", "{key}",
             lambda: self._lanes.active_keys),
            ("skuflow.keys.blocked", "Keys waiting behind a running event.", "{key}",
             lambda: self._lanes.blocked_keys),
            ("skuflow.partitions.paused", "Partitions paused by backpressure.", "{partition}",
             lambda: len(self._paused)),
        ]  # fmt: skip
        attributes: dict[str, str | int] = {
            "skuflow.class": "urgent" if self._opt.deadline_first else "normal"
        }
        for name, description, unit, read in gauges:
            self._metrics.observe(name, description, unit, _labelled(read, attributes))
        self._metrics.observe(
            "messaging.kafka.consumer.lag", "Messages behind the high watermark.", "{message}",
            self._lag,
        )  # fmt: skip

    def _lag(self) -> list[tuple[float, dict[str, str | int]]]:
        out: list[tuple[float, dict[str, str | int]]] = []
        for tp, part in list(self._partitions.items()):
            try:
                high = self._consumer.highwater(tp)
            except Exception:  # not assigned any more
                continue
            watermark = part.offsets.watermark()
            if high is None or watermark is None:
                continue
            out.append(
                (
                    max(0, high - watermark),
                    {
                        "messaging.destination.name": tp.topic,
                        "messaging.destination.partition.id": str(tp.partition),
                    },
                )
            )
        return out


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._engine.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._engine.on_assigned(assigned)


def _labelled(read: Callable[[], float], attributes: dict[str, str | int]) -> Gauges:
    return lambda: [(read(), attributes)]


def _end(span: trace.Span, outcome: str) -> None:
    if span.is_recording():
        span.set_attribute("skuflow.outcome", outcome)
        if outcome == "cancelled":
            span.set_attribute("error.type", "cancelled")
            span.set_status(Status(StatusCode.ERROR, "cancelled (revocation or shutdown)"))
    span.end()


def _deadline_of(work: _Work) -> float | None:
    return work.info.deadline if work.info is not None else None


async def _wait_until(condition: Callable[[], bool], poll: float = 0.01) -> None:
    """Poll a cheap condition; used only in bounded drains (revocation, shutdown)."""
    while not condition():  # noqa: ASYNC110  # bounded by the caller's move_on_after
        await anyio.sleep(poll)


__all__ = ["Engine", "EngineOptions"]
