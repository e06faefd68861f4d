"""encproxy.accept_balance: the workers' shared connection table and the decision to
leave a connection to a sibling (the worker's use of it is in test_worker.py, and a
real server's in tests/api/test_connection_spread.py)."""
from __future__ import annotations

import os

from encproxy.accept_balance import PAUSE, AcceptBalance, ConnectionTable


def test_claim_gives_the_lowest_slot_no_live_worker_holds():
    table = ConnectionTable(4)
    assert table.claim([]) == 0
    assert table.claim([0, None]) == 1
    assert table.claim([0, 2]) == 1
    assert table.claim([0, 1, 2, 3]) is None


def test_a_claimed_slot_starts_empty_whatever_its_last_worker_left():
    table = ConnectionTable(2)
    table.publish(0, 5)     # a worker that died without vacating
    assert table.fewest_elsewhere(1) == 5
    assert table.claim([]) == 0
    assert table.fewest_elsewhere(1) is None


def test_fewest_elsewhere_skips_its_own_slot_and_empty_ones():
    table = ConnectionTable(4)
    assert table.fewest_elsewhere(0) is None
    table.publish(0, 0)
    assert table.fewest_elsewhere(0) is None
    table.publish(1, 3)
    table.publish(3, 2)
    assert table.fewest_elsewhere(0) == 2
    assert table.fewest_elsewhere(3) == 0
    table.vacate(0)
    assert table.fewest_elsewhere(3) == 3


def test_the_table_is_shared_with_processes_forked_after_it():
    table = ConnectionTable(2)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only publishes
        table.publish(1, 7)
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert table.fewest_elsewhere(0) == 7


def test_a_worker_holding_more_yields_for_a_pause_then_takes_what_still_waits():
    table = ConnectionTable(2)
    mine, sibling = AcceptBalance(table, 0), AcceptBalance(table, 1)
    now = 100.0
    sibling.publish(0, now)
    assert mine.yields(1, now)
    assert mine.paused(now) and mine.paused(now + PAUSE * 0.99)
    assert not mine.paused(now + PAUSE)
    # Right after the pause, a connection still waiting is taken, though the sibling
    # still holds fewer: it has waited for it long enough.
    assert not mine.yields(1, now + PAUSE)
    # The next is left to the sibling again, however soon it comes.
    assert mine.yields(1, now + PAUSE + 0.001)
    # Long after a pause, the first look is no longer the one that ends it.
    assert mine.yields(1, now + 10 * PAUSE)


def test_no_worker_yields_to_one_holding_as_many_or_to_none():
    table = ConnectionTable(3)
    mine, sibling = AcceptBalance(table, 0), AcceptBalance(table, 1)
    assert not mine.yields(5, 1.0)          # no sibling accepting
    sibling.publish(2, 1.0)
    assert not mine.yields(2, 1.0)          # as many
    assert not mine.yields(1, 1.0)          # fewer
    assert not sibling.yields(2, 1.0)       # mine has published nothing: not accepting
    mine.publish(1, 1.0)
    assert sibling.yields(2, 1.0)
    assert not mine.paused(1.0)


def test_no_worker_leaves_a_connection_to_a_paused_sibling():
    # One client opening a connection per request: each worker in turn counts the last
    # connection it served until its loop sees it closed.
    table = ConnectionTable(2)
    first, second = AcceptBalance(table, 0), AcceptBalance(table, 1)
    first.publish(1, 1.0)                   # stale: its client has closed
    second.publish(0, 1.0)
    assert first.yields(1, 1.0)             # so it leaves the next connection to second
    second.publish(1, 1.001)                # which takes it, and is closed in turn
    first.publish(0, 1.002)                 # first sees its old one closed, still paused
    assert table.fewest_elsewhere(1) is None
    assert not second.yields(1, 1.003)      # second holds more, but takes the next itself
    first.publish(0, 1.0 + PAUSE)           # the pause over, first accepts again
    assert table.fewest_elsewhere(1) == 0 and second.yields(1, 1.0 + PAUSE)


def test_a_pause_ends_once_no_accepting_sibling_holds_fewer():
    table = ConnectionTable(2)
    mine, sibling = AcceptBalance(table, 0), AcceptBalance(table, 1)
    sibling.publish(0, 1.0)
    assert mine.yields(1, 1.0)
    assert mine.keeps_pausing(1, 1.001)         # the sibling still holds fewer
    sibling.publish(1, 1.002)                   # it took the connection
    assert not mine.keeps_pausing(1, 1.003) and not mine.paused(1.003)
    assert table.fewest_elsewhere(1) == 1       # mine accepts again, and says so
    assert not mine.keeps_pausing(5, 1.004)     # and a pause that ended stays ended
