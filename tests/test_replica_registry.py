"""The registry of replica buckets (store/replicas.py): what a gateway believes about a bucket's stream
between two looks at it, with every order of a lookup, a refresh and a change forced through an
injected stream-info function that the test answers by hand."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from nats_s3.store import replicas
from nats_s3.store.errors import BucketNotFound, StoreUnavailable
from nats_s3.store.models import Origin

MIRROR = {"config": {"name": "OBJ_b", "mirror": {"name": "OBJ_b", "external": {"api": "$JS.hub.API"}}}}
OWN = {"config": {"name": "OBJ_b", "subjects": ["$O.b.M.>"]}}


class Answers:
    """stream_info whose every call waits until the test answers it."""

    def __init__(self) -> None:
        self.calls: list[asyncio.Future[dict[str, Any]]] = []

    async def __call__(self, bucket: str) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.calls.append(future)
        return await future


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_concurrent_first_lookups_share_one_question() -> None:
    async def run() -> None:
        answers = Answers()
        registry = replicas.ReplicaRegistry(answers)
        lookups = [asyncio.ensure_future(registry.origin("b")) for _ in range(5)]
        await _settle()
        assert len(answers.calls) == 1
        answers.calls[0].set_result(MIRROR)
        assert await asyncio.gather(*lookups) == [Origin("OBJ_b", "$JS.hub.API")] * 5
        await registry.close()

    asyncio.run(run())


def test_a_cancelled_lookup_does_not_cancel_the_others() -> None:
    async def run() -> None:
        answers = Answers()
        registry = replicas.ReplicaRegistry(answers)
        first, second = asyncio.ensure_future(registry.origin("b")), asyncio.ensure_future(registry.origin("b"))
        await _settle()
        first.cancel()
        await _settle()
        answers.calls[0].set_result(OWN)
        assert await second is None
        await registry.close()

    asyncio.run(run())


def test_a_stale_replica_is_asked_again_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a promotion, the first write that finds the answer stale is let through, not refused."""

    async def run() -> None:
        answers = Answers()
        registry = replicas.ReplicaRegistry(answers)
        registry.learn("b", MIRROR)
        assert await registry.origin("b") is not None  # fresh: no question
        assert not answers.calls
        monkeypatch.setattr(replicas, "REFRESH", 0.0)
        lookup = asyncio.ensure_future(registry.origin("b"))
        await _settle()
        assert not lookup.done() and len(answers.calls) == 1
        answers.calls[0].set_result(OWN)  # promoted meanwhile
        assert await lookup is None
        await registry.close()

    asyncio.run(run())


def test_a_stale_own_bucket_answers_at_once_and_refreshes_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        answers = Answers()
        registry = replicas.ReplicaRegistry(answers)
        registry.learn("b", OWN)
        monkeypatch.setattr(replicas, "REFRESH", 0.0)
        assert await registry.origin("b") is None  # no wait
        await _settle()
        assert len(answers.calls) == 1
        answers.calls[0].set_result(MIRROR)
        await _settle()
        monkeypatch.setattr(replicas, "REFRESH", 60.0)
        assert await registry.origin("b") == Origin("OBJ_b", "$JS.hub.API")
        await registry.close()

    asyncio.run(run())


def test_failures_keep_the_last_answer_and_a_missing_bucket_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> None:
        answers = Answers()
        registry = replicas.ReplicaRegistry(answers)
        registry.learn("b", MIRROR)
        monkeypatch.setattr(replicas, "REFRESH", 0.0)
        lookup = asyncio.ensure_future(registry.origin("b"))
        await _settle()
        answers.calls[0].set_exception(StoreUnavailable("NATS away"))
        assert await lookup == Origin("OBJ_b", "$JS.hub.API")  # still refused: still a replica

        first = asyncio.ensure_future(registry.origin("gone"))
        await _settle()
        answers.calls[1].set_exception(BucketNotFound("gone"))
        assert await first is None
        second = asyncio.ensure_future(registry.origin("gone"))
        await _settle()
        assert len(answers.calls) == 3  # asked again: it may be a replica by now
        answers.calls[2].set_result(MIRROR)
        assert await second is not None

        unknown = asyncio.ensure_future(registry.origin("new"))
        await _settle()
        answers.calls[3].set_exception(StoreUnavailable("NATS away"))
        with pytest.raises(StoreUnavailable):
            await unknown
        await registry.close()

    asyncio.run(run())


def test_a_failed_refresh_holds_the_old_answer_for_another_refresh_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """With NATS away, a replica's writes after one failed refresh do not each wait for another."""
    clock = [0.0]
    monkeypatch.setattr(replicas, "time", types.SimpleNamespace(monotonic=lambda: clock[0]))

    async def run() -> None:
        answers = Answers()
        registry = replicas.ReplicaRegistry(answers)
        registry.learn("b", MIRROR)
        clock[0] = 2 * replicas.REFRESH
        lookup = asyncio.ensure_future(registry.origin("b"))
        await _settle()
        answers.calls[0].set_exception(StoreUnavailable("NATS away"))
        assert await lookup is not None
        clock[0] += replicas.REFRESH / 2
        assert await asyncio.wait_for(registry.origin("b"), 1) is not None
        assert len(answers.calls) == 1
        await registry.close()

    asyncio.run(run())


def test_a_missing_answer_does_not_erase_what_was_learned_meanwhile() -> None:
    """A lookup that finds no stream, answered after a replicate command's learn() of the new mirror,
    leaves the new answer in place, and answers it."""

    async def run() -> None:
        answers = Answers()
        registry = replicas.ReplicaRegistry(answers)
        lookup = asyncio.ensure_future(registry.origin("b"))
        await _settle()
        registry.learn("b", MIRROR)  # the mirror is made while the question is out
        answers.calls[0].set_exception(BucketNotFound("b"))
        assert await lookup == Origin("OBJ_b", "$JS.hub.API")  # the newer answer stands
        assert await registry.origin("b") == Origin("OBJ_b", "$JS.hub.API")
        assert len(answers.calls) == 1
        await registry.close()

    asyncio.run(run())


def test_origin_names_its_domain() -> None:
    assert replicas.origin_in(OWN["config"]) is None
    origin = replicas.origin_in(MIRROR["config"])
    assert origin is not None and origin.domain == "hub"
    assert "JetStream domain hub" in origin.describe()
    assert Origin("OBJ_b", "$JS.imported.api.API").domain is None
