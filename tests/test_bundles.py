"""Relay bundles through a real server: an offline courier's handheld, a second courier who carries its bundles
(twice, and an older one late), the server's sealed answer carried back; nothing readable in the carrier's bag."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from caresync_server.testing import ServerProcess

from caresync import BundleError, Replica, StationKey
from caresync.field import courier
from caresync.sync.bundles.bag import Bag
from caresync.sync.bundles.format import check_bundle, read_file
from caresync.sync.bundles.relay import deliver, import_answers, make_bundle, write_bundle
from caresync.trust.keys import unseal_value
from tests.server_support import enroll

SECRETS = ["需要办理低保证明-甲", "pension form for Mrs Zhou-乙", "phone 13907981234-丙"]


def _bytes_of(path: Path) -> bytes:
    """The SQLite file and its journals, as they lie on disk."""
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_relay_round_trip_duplicate_stale_and_replayed(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'server.db'}"
    tokens = {
        name: enroll(database, name, role=role, grids=grids)
        for name, role, grids in [
            ("station", "station", [""]),
            ("courier-a", "courier", ["changnan"]),
            ("courier-b", "courier", ["changnan"]),
            ("courier-twin", "courier", ["changnan"]),
        ]
    }
    station_key = StationKey.generate()
    server = ServerProcess(database, tmp_path).start()
    try:
        with (
            Replica.open(tmp_path / "station.db", actor="clerk-zhang") as station,
            Replica.open(tmp_path / "a.db", actor="chen") as a,
            Replica.open(tmp_path / "twin.db", actor="twin") as twin,
        ):
            station.mailboxes.add(code="MB-07", name="Lane 7 mailbox", grid="changnan/lane-7")
            station.parcels.register(code="R-1", grid="changnan/lane-7", direction="to_resident", summary="reply")
            station.sync(server.url, token=tokens["station"])
            a.sync(server.url, token=tokens["courier-a"])  # once, at the station's wifi: the device is known
            courier.remember_station_key(a, station_key.public_key)

            # courier A's phone has no data plan: it works offline and writes bundles
            courier.pickup(a, "E-1", mailbox="MB-07", contents=SECRETS[0])
            courier.pickup(a, "E-2", mailbox="MB-07", contents=SECRETS[1])
            old = write_bundle(a, tmp_path / "old.bundle")
            courier.pickup(a, "E-3", mailbox="MB-07", contents=SECRETS[2])
            new = write_bundle(a, tmp_path / "new.bundle")
            assert len(old["ops"]) < len(new["ops"]) == a.unsent_count()

            # courier B carries them: the new one twice, the old one late
            bag_path = tmp_path / "b" / "carried.db"
            bag_path.parent.mkdir()
            with Bag(bag_path) as bag:
                assert bag.take(tmp_path / "new.bundle", now_ms=new["created_ms"])[1] is True
                assert bag.take(tmp_path / "new.bundle", now_ms=new["created_ms"])[1] is False
                bag.take(tmp_path / "old.bundle", now_ms=new["created_ms"])
                assert [b.status for b in bag.carried()] == ["carried", "carried"]
                done = deliver(bag, server.url, token=tokens["courier-b"], courier="b", now_ms=new["created_ms"])
                by_id = {d.bundle: d for d in done}
                assert by_id[new["id"]].status == by_id[old["id"]].status == "delivered"
                assert sum(d.stored for d in done) == len(new["ops"])  # each op stored once, whatever the order
                assert bag.export_answers(a.id[:6], tmp_path / "answers.bundle", now_ms=new["created_ms"]) == 2
                for secret in [*SECRETS, "reply"]:
                    assert secret.encode() not in _bytes_of(bag_path), secret
                    assert secret.encode() not in (tmp_path / "answers.bundle").read_bytes()

            # A imports the answers: its ops are acknowledged, the station's parcel arrives
            got = import_answers(a, tmp_path / "answers.bundle")
            assert got.answers == 2 and got.acked == len(new["ops"]) and got.refused == 0
            assert a.unsent_count() == 0 and a.parcels.by_code("R-1") is not None
            digest = a.state_digest()
            again = import_answers(a, tmp_path / "answers.bundle")  # a duplicated answer changes nothing
            assert again.received == 0 and a.state_digest() == digest

            # a replayed bundle, delivered by someone else later, changes nothing on the server
            with Bag(tmp_path / "c.db") as other:
                other.take(tmp_path / "old.bundle", now_ms=new["created_ms"])
                (replayed,) = deliver(other, server.url, token=tokens["courier-twin"], courier="c", now_ms=0)
                assert replayed.status == "delivered" and replayed.stored == 0
                assert replayed.duplicates == len(old["ops"])

            twin.sync(server.url, token=tokens["courier-twin"])
            assert a.state_digest() == twin.state_digest()

            # the station opens what the residents asked for; the hashes prove it intact
            station.sync(server.url, token=tokens["station"])
            hops = [station.parcels.by_code(f"E-{i}").hops[-1] for i in (1, 2, 3)]  # type: ignore[union-attr]
            opened = [unseal_value(station_key, h.contents or "") for h in hops]
            assert [v for v, _ in opened] == SECRETS
            assert [h for _, h in opened] == [h.content_hash for h in hops]

            # A's next bundle reports the answer imported and brings what the station did since; an older answers
            # file imported again afterwards does not move the relay cursor back
            station.parcels.register(code="R-2", grid="changnan/lane-7", direction="to_resident")
            station.sync(server.url, token=tokens["station"])
            write_bundle(a, tmp_path / "receipts.bundle")
            with Bag(bag_path) as bag:
                bag.take(tmp_path / "receipts.bundle", now_ms=new["created_ms"])
                deliver(bag, server.url, token=tokens["courier-b"], courier="b", now_ms=new["created_ms"])
                bag.export_answers(a.id, tmp_path / "all.bundle", now_ms=new["created_ms"])
            assert import_answers(a, tmp_path / "all.bundle").received == 1 and a.parcels.by_code("R-2") is not None
            cursor = a.device_log.store.get_meta("relay_cursor")
            import_answers(a, tmp_path / "answers.bundle")
            assert a.device_log.store.get_meta("relay_cursor") == cursor
            log = httpx.get(server.url + "/v1/relays", headers={"Authorization": f"Bearer {tokens['station']}"}).json()
            entry = next(r for r in log["relays"] if r["bundle"] == new["id"])
            events = [e["event"] for e in entry["events"]]
            assert {"made", "carried", "delivered", "answer_handed", "answer_imported"} <= set(events)
            assert entry["device"] == "courier-a" and entry["in_transit_ms"] is not None
            assert next(r for r in log["relays"] if r["bundle"] == old["id"])["deliveries"] == 2
            forged = json.loads((tmp_path / "new.bundle").read_text())
            forged["ops"][0]["actor"] = "someone-else"
            posted = httpx.post(
                server.url + "/v1/relay",
                json={"courier": "b", "bundle": forged},
                headers={"Authorization": f"Bearer {tokens['courier-b']}"},
            ).json()
            assert posted["status"] == "refused" and posted["code"] == "bundle_forged" and "answer" not in posted
            with Replica.open(tmp_path / "stranger.db", actor="stranger") as stranger:
                stranger.parcels.register(code="S-1", grid="changnan/lane-7")
                refusals = {
                    "bundle_expired": make_bundle(a, now_ms=new["created_ms"] - 8 * 24 * 3_600_000),
                    "device_unknown": make_bundle(stranger),  # never enrolled nor synced: the server cannot place it
                }
            for code, bundle in refusals.items():
                answer = httpx.post(
                    server.url + "/v1/relay",
                    json={"courier": "b", "bundle": bundle},
                    headers={"Authorization": f"Bearer {tokens['courier-b']}"},
                ).json()
                assert (answer["status"], answer["code"]) == ("refused", code), answer
            denied = httpx.get(server.url + "/v1/relays", headers={"Authorization": f"Bearer {tokens['courier-b']}"})
            assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    finally:
        server.stop()


def test_forged_altered_expired_and_misdirected_bundles_change_nothing(tmp_path: Path, make_replica) -> None:  # type: ignore[no-untyped-def]
    a = make_replica("a")
    b = make_replica("b")
    a.parcels.register(code="E-9", grid="changnan/lane-7")
    bundle = make_bundle(a, ttl_hours=1)
    check_bundle(bundle, now_ms=bundle["created_ms"])

    altered = json.loads(json.dumps(bundle))
    altered["ops"][0]["body"]["summary"] = "changed on the way"
    with pytest.raises(BundleError, match="altered"):
        check_bundle(altered)
    forged = dict(bundle, public_key=b.device_key.public_key.hex())  # type: ignore[union-attr]
    with pytest.raises(BundleError, match="forged"):
        check_bundle(forged)
    with pytest.raises(BundleError, match="expired"):
        check_bundle(bundle, now_ms=bundle["expires_ms"] + 1)

    (tmp_path / "x.bundle").write_text(json.dumps(altered))
    with Bag(tmp_path / "bag.db") as bag:
        with pytest.raises(BundleError, match="altered"):
            bag.take(tmp_path / "x.bundle", now_ms=bundle["created_ms"])
        assert bag.carried() == []
    (tmp_path / "junk.bundle").write_bytes(b"\x00not json")
    with pytest.raises(BundleError, match="not a caresync bundle"):
        read_file(tmp_path / "junk.bundle")
    # an ops bundle given to a device as if it were answers is refused, and changes nothing
    write_bundle(a, tmp_path / "ops.bundle")
    digest = b.state_digest()
    with pytest.raises(BundleError, match="give it to a courier"):
        import_answers(b, tmp_path / "ops.bundle")
    assert b.state_digest() == digest


def test_an_answer_not_signed_by_the_server_cannot_stop_a_device_from_sending_its_work(
    tmp_path: Path,
) -> None:
    """A carrier knows the device's public key (it is in every bundle), so it can seal anything to the device;
    only the server's signature makes an answer's acknowledgements believable."""
    from caresync.sync.bundles.format import BUNDLE_FORMAT, seal_answer
    from caresync.sync.netsync import SERVER_KEY_META
    from caresync.trust.keys import DeviceKey

    server_key, carrier_key = DeviceKey.generate(), DeviceKey.generate()
    with Replica.open(tmp_path / "kiosk.db", actor="kiosk") as kiosk:
        kiosk.tickets.submit(title="Lift broken", kind="repair", grid="changnan/lane-7")
        kiosk.tickets.submit(title="Stair light", kind="repair", grid="changnan/lane-7")
        bundle = make_bundle(kiosk)
        claim = {"ops": [], "cursor": "0", "acked": [[kiosk.id, 1, 2]], "refused": [], "more": False}

        def answers_file(name: str, signer: DeviceKey) -> Path:
            answer = seal_answer(
                kiosk.device_key.public_key,
                claim,
                server_key=signer,
                origin=kiosk.id,
                bundle_id=bundle["id"],
                now_ms=bundle["created_ms"],
            )
            path = tmp_path / name
            path.write_text(json.dumps({"caresync_bundle": BUNDLE_FORMAT, "type": "answers", "answers": [answer]}))
            return path

        # a device that never met the server directly cannot tell: it keeps its work queued
        kept = import_answers(kiosk, answers_file("unknown.answers", carrier_key), now_ms=bundle["created_ms"])
        assert kept.answers == 1 and kept.acked == 0 and kiosk.unsent_count() == 2

        kiosk.device_log.store.set_meta(SERVER_KEY_META, server_key.public_key.hex())  # what enrolment or a sync keeps
        with pytest.raises(BundleError, match="not signed by the sync server"):
            import_answers(kiosk, answers_file("forged.answers", carrier_key), now_ms=bundle["created_ms"])
        assert kiosk.unsent_count() == 2
        real = import_answers(kiosk, answers_file("real.answers", server_key), now_ms=bundle["created_ms"])
        assert real.acked == 2 and kiosk.unsent_count() == 0
