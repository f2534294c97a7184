"""Activities in temporalio's `ActivityEnvironment` with fake clients (the fast tier): what they
heartbeat, how they resume from a failed attempt's progress, and how their errors reach the
workflow (type, retryability, progress carried, Retry-After honoured)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.incoming import IncomingActivities
from mahak_client.errors import MahakPermanentError, MahakTransientError
from mahak_sync.config import Settings
from mahak_sync.errors import ErrorType
from workflows.incoming_types import EntityCounts, EntityProgress, EntitySyncResult, SyncEntityInput

REQUEST = SyncEntityInput(entity="products", run_id="run-1")
STARTED = datetime(2026, 1, 1, tzinfo=UTC)


class FakeSync:
    """Stands in for `IncomingSync`: reports two pages of progress, then ends as told."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.resumed_from: EntityProgress | None = None

    async def sync_entity(
        self, request: SyncEntityInput, *, resume: EntityProgress | None, on_progress: Any
    ) -> EntitySyncResult:
        self.resumed_from = resume
        progress = resume or EntityProgress(entity=request.entity, started_at=STARTED)
        for page in (1, 2):
            progress = progress.model_copy(
                update={
                    "pages": progress.pages + 1,
                    "cursor": 100 * page,
                    "counts": progress.counts + EntityCounts(fetched=10, inserted=10),
                }
            )
            on_progress(progress)
        if self.error is not None:
            raise self.error
        return EntitySyncResult(
            entity=request.entity,
            counts=progress.counts,
            cursor=progress.cursor,
            pages=progress.pages,
        )


def _activities(fake: FakeSync) -> IncomingActivities:
    activities = IncomingActivities(None, None, Settings(_env_file=None))  # type: ignore[arg-type,call-arg]
    activities.sync = fake  # type: ignore[assignment]
    return activities


def _environment(*, resume: EntityProgress | None = None) -> tuple[ActivityEnvironment, list[Any]]:
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.append(details)
    if resume is not None:
        env.info = dataclasses.replace(
            env.info,
            heartbeat_details=[resume.model_dump(mode="json")],
            heartbeat_timeout=timedelta(seconds=30),
        )
    return env, beats


async def test_sync_entity_heartbeats_each_page() -> None:
    env, beats = _environment()
    result = await env.run(_activities(FakeSync()).sync_entity, REQUEST)
    assert (result.pages, result.cursor, result.counts.inserted) == (2, 200, 20)
    assert [details[0].cursor for details in beats] == [100, 200]


async def test_a_retried_attempt_resumes_the_counts_of_the_failed_one() -> None:
    earlier = EntityProgress(
        entity="products",
        started_at=STARTED,
        pages=5,
        cursor=500,
        counts=EntityCounts(fetched=50, inserted=50),
    )
    env, _ = _environment(resume=earlier)
    fake = FakeSync()
    result = await env.run(_activities(fake).sync_entity, REQUEST)
    assert fake.resumed_from == earlier
    assert (result.pages, result.counts.inserted) == (7, 70)


async def test_an_outage_is_retryable_carries_the_progress_and_honours_retry_after() -> None:
    env, _ = _environment()
    outage = MahakTransientError(
        "503 from Mahak", endpoint="GetAllData", status_code=503, retry_after=42
    )
    with pytest.raises(ApplicationError) as raised:
        await env.run(_activities(FakeSync(outage)).sync_entity, REQUEST)
    err = raised.value
    assert err.type == ErrorType.MAHAK_UNAVAILABLE and not err.non_retryable
    assert err.next_retry_delay == timedelta(seconds=42)
    carried = EntityProgress.from_details(err.details)
    assert carried is not None and (carried.pages, carried.cursor) == (2, 200)


async def test_a_refusal_is_not_retried() -> None:
    env, _ = _environment()
    refusal = MahakPermanentError("Mahak refused the request", endpoint="GetAllData")
    with pytest.raises(ApplicationError) as raised:
        await env.run(_activities(FakeSync(refusal)).sync_entity, REQUEST)
    assert raised.value.type == ErrorType.MAHAK_REFUSED and raised.value.non_retryable
