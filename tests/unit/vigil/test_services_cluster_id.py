"""The KRaft cluster id handed to ``kafka-storage format``."""

from __future__ import annotations

import base64

from vigil.services import new_cluster_id


def test_an_id_starting_with_a_dash_is_drawn_again() -> None:
    # 0xf8 encodes to "-" as the first URL-safe base64 character: kafka-storage would read "-..." as an option.
    draws = iter([b"\xf8" + bytes(15), b"\x01" * 16])
    cluster_id = new_cluster_id(lambda: next(draws))
    assert cluster_id == base64.urlsafe_b64encode(b"\x01" * 16).decode().rstrip("=")


def test_ids_are_22_url_safe_characters_of_16_bytes() -> None:
    ids = {new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    for cluster_id in ids:
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
