"""SSRC -> user map: hold-and-release order, bounds, eviction, reconnects, threads."""

from __future__ import annotations

import threading

from bot.voice.ssrc_map import SsrcMap


def test_hold_then_release_in_order() -> None:
    ssrc_map: SsrcMap[int] = SsrcMap()
    for seq in range(5):
        ssrc_map.hold(10, seq)
    ssrc_map.hold(20, 100)
    assert ssrc_map.held == 6
    assert ssrc_map.release() == []  # nothing mapped yet
    ssrc_map.bind(10, 777)
    assert ssrc_map.lookup(10) == 777
    assert ssrc_map.release() == [(777, seq) for seq in range(5)]
    assert ssrc_map.held == 1
    assert ssrc_map.release() == []  # released once only
    ssrc_map.bind(20, 888)
    assert ssrc_map.release() == [(888, 100)]
    assert ssrc_map.held == 0 and ssrc_map.dropped == 0


def test_per_ssrc_bound_drops_oldest() -> None:
    ssrc_map: SsrcMap[int] = SsrcMap(hold_per_ssrc=100)
    for seq in range(130):
        ssrc_map.hold(1, seq)
    assert ssrc_map.held == 100 and ssrc_map.dropped == 30
    ssrc_map.bind(1, 5)
    assert [item for _, item in ssrc_map.release()] == list(range(30, 130))


def test_unmapped_ssrc_bound_evicts_first_seen() -> None:
    ssrc_map: SsrcMap[str] = SsrcMap(max_unmapped=3)
    for ssrc in (1, 2, 3):
        ssrc_map.hold(ssrc, f"a{ssrc}")
        ssrc_map.hold(ssrc, f"b{ssrc}")
    ssrc_map.hold(4, "a4")
    assert ssrc_map.dropped == 2 and ssrc_map.held == 5
    for ssrc in (1, 2, 3, 4):
        ssrc_map.bind(ssrc, ssrc * 10)
    assert ssrc_map.release() == [(20, "a2"), (20, "b2"), (30, "a3"), (30, "b3"), (40, "a4")]


def test_reconnect_new_ssrc_same_user_and_disconnect() -> None:
    ssrc_map: SsrcMap[int] = SsrcMap()
    ssrc_map.bind(100, 42)
    ssrc_map.bind(200, 42)  # rejoined with a new SSRC
    assert ssrc_map.lookup(100) == ssrc_map.lookup(200) == 42
    ssrc_map.bind(300, 43)
    ssrc_map.forget_user(42)
    assert ssrc_map.lookup(100) is None and ssrc_map.lookup(200) is None
    assert ssrc_map.lookup(300) == 43


def test_take_for_a_binding_that_landed_after_release() -> None:
    ssrc_map: SsrcMap[int] = SsrcMap()
    ssrc_map.hold(7, 1)
    ssrc_map.hold(7, 2)
    assert ssrc_map.release() == []
    ssrc_map.bind(7, 70)
    assert ssrc_map.take(7) == [1, 2]
    assert ssrc_map.take(7) == [] and ssrc_map.held == 0
    assert ssrc_map.release() == []


def test_drain_reports_unmapped_as_none() -> None:
    ssrc_map: SsrcMap[int] = SsrcMap()
    ssrc_map.hold(1, 10)
    ssrc_map.hold(2, 20)
    ssrc_map.bind(2, 5)
    assert sorted(ssrc_map.drain(), key=lambda pair: pair[1]) == [(None, 10), (5, 20)]
    assert ssrc_map.held == 0


def test_bindings_from_another_thread_release_every_item_once_in_order() -> None:
    """The loop thread binds while the socket thread holds/looks up/releases."""
    ssrc_map: SsrcMap[int] = SsrcMap(hold_per_ssrc=10_000, max_unmapped=1000)
    ssrcs = list(range(1, 201))
    per_ssrc = 50
    done = threading.Event()

    def binder() -> None:
        for ssrc in ssrcs:
            ssrc_map.bind(ssrc, ssrc + 1000)
        done.set()

    delivered: dict[int, list[int]] = {ssrc: [] for ssrc in ssrcs}

    def deliver(user: int, item: tuple[int, int]) -> None:
        ssrc, seq = item
        assert user == ssrc + 1000
        delivered[ssrc].append(seq)

    thread = threading.Thread(target=binder)
    thread.start()
    for seq in range(per_ssrc):
        for ssrc in ssrcs:
            for user, item in ssrc_map.release():
                deliver(user, item)
            user = ssrc_map.lookup(ssrc)
            if user is None:
                ssrc_map.hold(ssrc, (ssrc, seq))
                continue
            for held in ssrc_map.take(ssrc):
                deliver(user, held)
            deliver(user, (ssrc, seq))
    thread.join()
    assert done.is_set()
    for user, item in ssrc_map.release():
        deliver(user, item)
    assert ssrc_map.held == 0 and ssrc_map.dropped == 0
    assert all(seqs == list(range(per_ssrc)) for seqs in delivered.values())
