"""The console shows a request's photos as thumbnails and opens the full picture, with the station's key; nothing
of it is cached by the browser."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from caresync import Replica, StationKey

from .support import client, run, running, sign_in

pytestmark = pytest.mark.filterwarnings("error")


def test_a_request_shows_its_photos_as_thumbnails_and_opens_them(tmp_path: Path) -> None:
    with Replica.open(tmp_path / "station.db", actor="desk") as desk:
        desk.install_station_key(StationKey.generate())
        ticket = desk.tickets.submit(title="Septic tank blocked", kind="repair", grid="changnan/dorm/3")
        buffer = io.BytesIO()
        Image.frombytes("RGB", (2000, 1500), os.urandom(2000 * 1500 * 3)).save(buffer, "JPEG", quality=85)
        photo = desk.attachments.add(ticket.id, buffer.getvalue(), caption="the tank <from the yard>")
        paper = desk.attachments.add(ticket.id, b"%PDF-1.4 the plumber's quote", kind="document")
        number = ticket.number or ticket.id
        thumb, full = desk.attachments.open(photo.id, thumbnail=True), desk.attachments.open(photo.id)

    async def go() -> None:
        with running(tmp_path) as app:
            async with client(app) as http:
                assert (await http.get(f"/attachments/{photo.id}")).status_code == 303  # signed in only
                await sign_in(http)
                page = await http.get(f"/requests/{number}")
                assert page.status_code == 200
                assert f'<img src="/attachments/{photo.id}?thumb=1"' in page.text
                assert "the tank &lt;from the yard&gt;" in page.text  # the caption, opened and escaped
                assert f'href="/attachments/{paper.id}"' in page.text
                small = await http.get(f"/attachments/{photo.id}", params={"thumb": "1"})
                assert small.status_code == 200 and small.headers["content-type"] == "image/jpeg"
                assert small.content == thumb and small.headers["cache-control"] == "no-store"
                whole = await http.get(f"/attachments/{photo.id}")
                assert whole.content == full and Image.open(io.BytesIO(whole.content)).size == (1600, 1200)
                document = await http.get(f"/attachments/{paper.id}")
                assert document.content == b"%PDF-1.4 the plumber's quote"
                assert document.headers["content-type"] == "application/octet-stream"
                assert (await http.get("/attachments/0123456789abcdef:9")).status_code == 404

    run(go())
