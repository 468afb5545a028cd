"""The task queue: Procrastinate, and the one module that imports it.

On PostgreSQL, jobs are rows in Procrastinate's tables inside DocSift's own database (no other
service to run), and `docsift worker` processes take them. `enqueue` inserts a job through the
caller's own transaction, so a job exists exactly when the rows it works on were committed.

On SQLite (single-machine mode) Procrastinate's in-memory connector is the broker and the API
process runs the worker itself (`Settings.runs_embedded_worker`). The database rows stay the
durable state: what a dead process left unfinished is deferred again at start-up (`resume`).

A worker killed mid-job stops sending heartbeats; the periodic `docsift.recover` job, run by any
live worker, asks Procrastinate for the jobs of workers silent longer than
`worker_stalled_seconds` and retries them. Jobs may therefore run more than once: every task is
written so that a second run finds its work done or redoes it from scratch (see
backend/batches/tasks.py).
"""

import importlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import procrastinate
from procrastinate.testing import InMemoryConnector
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.billing import ledger
from backend.config import Settings
from backend.db import libpq_url

if TYPE_CHECKING:
    from backend.state import AppState

log = logging.getLogger(__name__)

# Modules whose import registers tasks (`@task`); imported when a queue is built.
TASK_MODULES = (
    "backend.batches.tasks",
    "backend.documents.conversion",
    "backend.evaluation.runner",
    "backend.reviews.training",
    "backend.webhooks.delivery",
)
RECOVER_TASK = "docsift.recover"
RETENTION_TASK = "docsift.retention"
_PENDING = "docsift_pending_jobs"  # session.info key: jobs to defer after commit (in-memory mode)

TaskFn = Callable[..., Awaitable[None]]
F = TypeVar("F", bound=TaskFn)


@dataclass(frozen=True)
class TaskSpec:
    fn: TaskFn  # async fn(state, **kwargs)
    retries: int  # job-level retries after an unexpected exception (0: none)
    retry_wait: int  # seconds, doubled per attempt


_TASKS: dict[str, TaskSpec] = {}


def task(name: str, *, retries: int = 0, retry_wait: int = 2) -> Callable[[F], F]:
    """Register `async def fn(state, **kwargs)` as the queue task `name`."""

    def register(fn: F) -> F:
        _TASKS[name] = TaskSpec(fn=fn, retries=retries, retry_wait=retry_wait)
        return fn

    return register


def schema_sql() -> str:
    """Procrastinate's schema for PostgreSQL (applied by migration 0002)."""
    return procrastinate.schema.SchemaManager.get_schema()


@dataclass
class PendingJob:
    name: str
    kwargs_list: list[dict[str, Any]]
    lock: str | None
    schedule_in: float | None


def _options(lock: str | None, schedule_in: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {"lock": lock}
    if schedule_in:
        options["schedule_in"] = {"seconds": schedule_in}
    return options


class Queue:
    """DocSift's view of the queue: defer jobs, run a worker, recover stalled jobs."""

    def __init__(self, settings: Settings, *, pool_size: int = 4) -> None:
        self.settings = settings
        self.in_memory = not settings.is_postgres
        connector: Any = (
            InMemoryConnector()
            if self.in_memory
            else procrastinate.PsycopgConnector(
                conninfo=libpq_url(settings.database_url), min_size=1, max_size=pool_size
            )
        )
        self.app = procrastinate.App(connector=connector)
        for module in TASK_MODULES:
            importlib.import_module(module)
        for name, spec in _TASKS.items():
            self._register(name, spec)
        recover = self.app.task(name=RECOVER_TASK, pass_context=True, queueing_lock=RECOVER_TASK)(
            _recover
        )
        # Six-field cron: the last field is seconds.
        self.app.periodic(
            cron=f"* * * * * */{settings.worker_recover_seconds}", periodic_id="recover"
        )(recover)
        # Retention: erase documents past their retention period (backend/retention.py).
        retention = self.app.task(
            name=RETENTION_TASK, pass_context=True, queueing_lock=RETENTION_TASK
        )(_retention)
        self.app.periodic(cron=settings.retention_cron, periodic_id="retention")(retention)

    def _register(self, name: str, spec: TaskSpec) -> None:
        async def job(context: procrastinate.JobContext, **kwargs: Any) -> None:
            await spec.fn(context.additional_context["state"], **kwargs)

        retry: Any = (
            procrastinate.RetryStrategy(max_attempts=spec.retries, exponential_wait=spec.retry_wait)
            if spec.retries
            else False
        )
        self.app.task(name=name, pass_context=True, retry=retry)(job)

    async def open(self) -> None:
        await self.app.open_async()

    async def close(self) -> None:
        await self.app.close_async()

    async def enqueue(
        self,
        session: AsyncSession,
        name: str,
        kwargs_list: Iterable[dict[str, Any]],
        *,
        lock: str | None = None,
        schedule_in: float | None = None,
    ) -> None:
        """Defer jobs as part of `session`'s transaction: they exist if and only if it commits.

        On PostgreSQL the jobs are inserted through the session's own connection. In memory they
        wait in the session until `after_commit` (a worker must not see them before the rows).
        """
        kwargs_list = list(kwargs_list)
        if not kwargs_list:
            return
        if self.in_memory:
            session.info.setdefault(_PENDING, []).append(
                PendingJob(name, kwargs_list, lock, schedule_in)
            )
            return
        connection = await (await session.connection()).get_raw_connection()
        deferrer = self.app.configure_task(
            name, connection=connection.driver_connection, **_options(lock, schedule_in)
        )
        await deferrer.batch_defer_async(*kwargs_list)

    async def after_commit(self, session: AsyncSession) -> None:
        """Defer what `enqueue` kept for after the commit (in-memory mode only)."""
        for job in session.info.pop(_PENDING, []):
            await self.defer(job.name, job.kwargs_list, lock=job.lock, schedule_in=job.schedule_in)

    async def commit(self, session: AsyncSession) -> None:
        """Commit `session`, then hand over the jobs it enqueued."""
        await session.commit()
        await self.after_commit(session)

    def discard(self, session: AsyncSession) -> None:
        """Forget jobs enqueued in a transaction that was rolled back."""
        session.info.pop(_PENDING, None)

    async def defer(
        self,
        name: str,
        kwargs_list: Iterable[dict[str, Any]],
        *,
        lock: str | None = None,
        schedule_in: float | None = None,
    ) -> None:
        """Defer jobs on their own (no transaction to join)."""
        kwargs_list = list(kwargs_list)
        if kwargs_list:
            deferrer = self.app.configure_task(name, **_options(lock, schedule_in))
            await deferrer.batch_defer_async(*kwargs_list)

    async def defer_once(
        self, name: str, kwargs: dict[str, Any], *, lock: str, schedule_in: float | None = None
    ) -> bool:
        """Defer a job unless one with this lock is still waiting (its queueing lock): many
        requests in a row make one job. False when one was already waiting."""
        deferrer = self.app.configure_task(name, queueing_lock=lock, **_options(lock, schedule_in))
        try:
            await deferrer.defer_async(**kwargs)
        except procrastinate.exceptions.AlreadyEnqueued:
            return False
        return True

    async def job_state(self, name: str, lock: str) -> str | None:
        """ "doing" or "todo" for a job of `name` with this lock, else None."""
        for status in ("doing", "todo"):
            if await self.app.job_manager.list_jobs_async(task=name, lock=lock, status=status):
                return status
        return None

    async def has_unfinished_job(self, name: str, lock: str) -> bool:
        for status in ("todo", "doing"):
            if await self.app.job_manager.list_jobs_async(task=name, lock=lock, status=status):
                return True
        return False

    async def recover_stalled(self) -> int:
        """Retry the jobs of workers whose heartbeat stopped; returns how many."""
        stalled = await self.app.job_manager.get_stalled_jobs(
            seconds_since_heartbeat=self.settings.worker_stalled_seconds
        )
        for job in stalled:
            log.warning("retrying job %s (%s) of a stalled worker", job.id, job.task_name)
            await self.app.job_manager.retry_job(job)
        return len(stalled)

    async def run_worker(
        self,
        state: "AppState",
        *,
        concurrency: int | None = None,
        name: str = "docsift-worker",
        install_signal_handlers: bool = True,
        shutdown_graceful_timeout: float | None = None,
    ) -> None:
        """Run a worker until it is stopped (a signal, or cancelling the calling task)."""
        settings = self.settings
        await self.app.run_worker_async(
            name=name,
            concurrency=concurrency or settings.worker_concurrency,
            additional_context={"state": state},
            install_signal_handlers=install_signal_handlers,
            update_heartbeat_interval=settings.worker_heartbeat_seconds,
            stalled_worker_timeout=settings.worker_stalled_seconds,
            shutdown_graceful_timeout=(
                settings.worker_shutdown_seconds
                if shutdown_graceful_timeout is None
                else shutdown_graceful_timeout
            ),
            # Finished jobs are of no further use: their results live in DocSift's own tables.
            delete_jobs="successful",
            # The in-memory broker wakes its worker directly; polling is only a fallback.
            fetch_job_polling_interval=1.0 if self.in_memory else 5.0,
        )


async def _retention(context: procrastinate.JobContext, timestamp: int) -> None:
    from backend.retention import purge_expired

    await purge_expired(context.additional_context["state"])


async def _recover(context: procrastinate.JobContext, timestamp: int) -> None:
    from backend.webhooks.delivery import resume_orphans

    state: AppState = context.additional_context["state"]
    await state.queue.recover_stalled()
    await resume_orphans(state)
    await state.rate_limiter.prune()
    # Not only at start-up: a process that lives for weeks must not keep a lost hold that long.
    stale = ledger.stale_after(state.settings.model_total_timeout_seconds)
    if released := await ledger.release_stale(state.sessionmaker, older_than=stale):
        log.warning("released %d credit holds older than %s", released, stale)
