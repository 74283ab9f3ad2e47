"""Attachments converge: added, removed and erased on several replicas, with partitions and cut transfers.

Hypothesis draws a script over three replicas: attachments added (documents of one to three chunks, small
photos with thumbnails) on tickets and a resident, removed (observed-remove: only what the remover saw),
erased with the resident's data; pairwise syncs (the partitions are the pairs never synced for a while); and
cut transfers, where the ops arrive but only some chunks of the blobs do. After a final full exchange every
replica holds the same state, every blob a live attachment names is whole and opens to the bytes captured, and
no replica holds a blob that no live attachment names.
"""

from __future__ import annotations

import io
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from caresync import IntentError, Replica, StationKey
from caresync.testing import FakeClock

GRID = "changnan/dorm/3"
N = 3

step = st.one_of(
    st.tuples(st.just("add"), st.integers(0, N - 1), st.integers(0, 3), st.integers(1, 700_000)),
    st.tuples(st.just("photo"), st.integers(0, N - 1), st.integers(0, 3), st.integers(0, 10**6)),
    st.tuples(st.just("remove"), st.integers(0, N - 1), st.integers(0, 3), st.integers(0, 9)),
    st.tuples(st.just("redact"), st.integers(0, N - 1), st.just(0), st.just(0)),
    st.tuples(st.just("sync"), st.integers(0, N - 1), st.integers(0, N - 1), st.just(0)),
    st.tuples(st.just("cut"), st.integers(0, N - 1), st.integers(0, N - 1), st.integers(0, 3)),
)


def _photo(seed: int) -> bytes:
    rnd = random.Random(seed)
    image = Image.new("RGB", (64 + seed % 50, 48), (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _cut(into: Replica, source: Replica, chunks: int) -> None:
    """The ops of ``source`` reach ``into``, then the link drops after ``chunks`` chunks of the blobs it wants."""
    into.apply_ops(source.export_ops(into.version_vector()))
    blobs, other = into.device_log.blobs, source.device_log.blobs
    left = chunks
    for ref in blobs.wanted():
        state = other.state(ref.blob)
        if state is None:
            continue
        blobs.declare(state.manifest)
        for n in blobs.missing(ref.blob):
            data = other.chunk(ref.blob, n)
            if left == 0:
                return
            if data is not None:
                blobs.put_chunk(state.manifest, n, data)
                left -= 1


def _run(steps: list[tuple[Any, ...]]) -> None:
    key = StationKey.generate()
    with tempfile.TemporaryDirectory() as folder:
        replicas = [
            Replica.open(Path(folder) / f"r{i}.db", actor=f"worker-{i}", now_ms=FakeClock(1_800_000_000_000 + i))
            for i in range(N)
        ]
        try:
            for r in replicas:
                r.install_station_key(key)
            first = replicas[0]
            records = [
                first.tickets.submit(title="Septic tank", kind="repair", grid=GRID).id,
                first.tickets.submit(title="Mediation", kind="dispute", grid=GRID).id,
                first.residents.register(name="Zhang Min", grid=GRID).id,
            ]
            records.append(first.visits.record(resident_id=records[2], outcome="well").id)  # erased with her
            for r in replicas[1:]:
                first.sync_with(r)
            captured: dict[str, bytes] = {}
            for kind, a, b, c in steps:
                r = replicas[a]
                if kind == "add":
                    data = random.Random(c).randbytes(c)
                    captured[r.attachments.add(records[b], data, kind="document").id] = data
                elif kind == "photo":
                    added = r.attachments.add(records[b], _photo(c))
                    captured[added.id] = r.attachments.open(added.id)
                elif kind == "remove":
                    live = r.attachments.list(records[b])
                    if live:
                        r.attachments.remove(live[c % len(live)].id)
                elif kind == "redact":
                    r.residents.redact(records[2], fields=["attachments"], reason="asked to be forgotten")
                elif kind == "sync" and a != b:
                    r.sync_with(replicas[b])
                elif kind == "cut" and a != b:
                    _cut(r, replicas[b], c)
            for _ in range(2):
                for i in range(N):
                    for j in range(i + 1, N):
                        replicas[i].sync_with(replicas[j])
            digests = {r.state_digest() for r in replicas}
            assert len(digests) == 1
            listings = [[[x.id for x in r.attachments.list(rid)] for rid in records] for r in replicas]
            assert all(listing == listings[0] for listing in listings)
            lives = [{(ref.op, ref.blob) for ref in r.device_log.blobs.named()} for r in replicas]
            assert all(live == lives[0] for live in lives)  # every replica agrees which attachments still live
            for r in replicas:
                named = {ref.blob for ref in r.device_log.blobs.named()}
                for rid in records:
                    for attachment in r.attachments.list(rid):
                        if attachment.blob in named:
                            assert r.attachments.open(attachment.id) == captured[attachment.id]
                        else:  # erased with the resident (on her record, or on a knock at her door)
                            with pytest.raises(IntentError, match="erased"):
                                r.attachments.open(attachment.id)
                        if attachment.thumb is not None and attachment.thumb in named:
                            assert r.attachments.held(attachment.id, thumbnail=True)
                assert r.device_log.blobs.held() == named  # nothing dead is kept, nothing live is missing
        finally:
            for r in replicas:
                r.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=14))
def test_attachments_converge_and_every_live_blob_is_whole_everywhere(steps: list[tuple[Any, ...]]) -> None:
    _run(steps)


@pytest.mark.soak
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=40))
def test_soak_attachments_converge(steps: list[tuple[Any, ...]]) -> None:
    _run(steps)
