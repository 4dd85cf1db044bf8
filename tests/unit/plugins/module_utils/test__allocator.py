# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The next number: monotonic, skipping blocked numbers, wrapping, exhaustion without a walk."""

from __future__ import annotations

import random
import time

import pytest

from ansible_collections.netdev.tuntap.plugins.module_utils._allocator import (
    LeasedNumbers, RangeExhausted, TemplateAllocator, first_counter)


def take_n(allocator, count):
    return [allocator.take() for _run in range(count)]


@pytest.mark.parametrize("existing, expected", [
    ([], -1),            # nothing yet: the first number handed out is 0
    ([0], 0),
    ([3, 7, 1], 7),
    (iter([5, 2]), 5),   # any iterable
    (set(), -1),
])
def test_first_counter(existing, expected):
    assert first_counter(existing) == expected


@pytest.mark.parametrize("last, max_id, blocked, expected", [
    (-1, 99999, set(), [0, 1, 2, 3]),
    (11, 99999, set(), [12, 13, 14, 15]),
    (11, 99999, {12, 14}, [13, 15, 16, 17]),
    (11, 99999, {0, 1, 2, 5, 11}, [12, 13, 14, 15]),
    (2, 4, set(), [3, 4, 0, 1, 2]),
    (3, 4, {4, 0}, [1, 2, 3]),
    (4, 4, set(), [0, 1]),
    (9, 4, set(), [0, 1]),
    (9, 4, {0, 1}, [2, 3]),
    (10 ** 6, 5, {0}, [1, 2]),
    (-5, 3, set(), [0, 1]),
])
def test_numbers_handed_out(last, max_id, blocked, expected):
    allocator = TemplateAllocator("vnet%d", max_id, last, set(blocked))
    assert take_n(allocator, len(expected)) == expected
    assert allocator.last == expected[-1]
    assert allocator.taken == len(expected)


def test_max_id_zero_has_one_number():
    allocator = TemplateAllocator("t%d", 0, -1, set())
    assert allocator.take() == 0
    with pytest.raises(RangeExhausted):
        allocator.take()


def test_taken_numbers_are_never_repeated_until_exhausted():
    allocator = TemplateAllocator("vnet%d", 4, 2, {1})
    assert take_n(allocator, 4) == [3, 4, 0, 2]
    with pytest.raises(RangeExhausted):
        allocator.take()


def test_peek_does_not_take():
    allocator = TemplateAllocator("vnet%d", 99, 5, {6})
    assert allocator.peek() == 7
    assert allocator.peek() == 7
    assert allocator.last == 5
    assert allocator.taken == 0
    assert allocator.take() == 7
    assert allocator.peek() == 8


def test_blocked_set_is_taken_over_not_copied():
    blocked = {3}
    allocator = TemplateAllocator("vnet%d", 99, 0, blocked)
    assert allocator.take() == 1
    assert blocked == {1, 3}


def test_block_after_the_fact():
    # the kernel said the name exists: block it and take the next
    allocator = TemplateAllocator("vnet%d", 99, 0, set())
    number = allocator.take()
    assert number == 1
    allocator.block(2)
    assert allocator.take() == 3


@pytest.mark.parametrize("max_id, blocked", [
    (4, {0, 1, 2, 3, 4}),
    (0, {0}),
    (4, {0, 1, 2, 3, 4, 5, 99, -1}),     # out-of-range numbers are ignored in the count
])
def test_exhausted_range_raises(max_id, blocked):
    allocator = TemplateAllocator("vnet%d", max_id, 1, set(blocked))
    with pytest.raises(RangeExhausted) as exc:
        allocator.take()
    assert "vnet%d" in str(exc.value)
    assert allocator.taken == 0
    with pytest.raises(RangeExhausted):
        allocator.peek()


@pytest.mark.parametrize("blocked, expected", [
    ({0, 1, 2, 3, 5, 99, -1}, 4),          # out-of-range blocks do not count as using the range
    ({0, 1, 2, 3, -7}, 4),
    ({1, 2, 3, 4}, 0),
])
def test_one_free_number_is_found(blocked, expected):
    allocator = TemplateAllocator("vnet%d", 4, 4, set(blocked))
    assert allocator.take() == expected


def test_exhaustion_via_block_counts_once():
    allocator = TemplateAllocator("vnet%d", 2, -1, set())
    allocator.block(0)
    allocator.block(0)       # blocking twice must not count twice
    allocator.block(7)       # out of range: does not count
    allocator.block(-1)
    assert allocator.take() == 1
    assert allocator.take() == 2
    with pytest.raises(RangeExhausted):
        allocator.take()


def _timed(func):
    start = time.perf_counter()
    result = func()
    return result, time.perf_counter() - start


def test_huge_range_with_few_blocked_is_fast():
    # Finding a number must cost about len(blocked) steps, never max_id steps.
    max_id = 10 ** 9
    blocked = set(range(max_id - 500, max_id + 1)) | set(range(0, 500))
    allocator = TemplateAllocator("vnet%d", max_id, max_id - 600, blocked)
    numbers, elapsed = _timed(lambda: take_n(allocator, 200))
    # 100 before the blocked tail, then wrap over the blocked head
    assert numbers == list(range(max_id - 599, max_id - 500)) + list(range(500, 601))
    assert elapsed < 0.5


def test_exhaustion_of_a_huge_range_is_detected_by_counting():
    # Every number of a 10**9-wide range blocked is impossible to build; a fully
    # blocked small range next to a nearly free huge one shows the check does not
    # depend on max_id: both answers come back at once.
    full, elapsed_small = _timed(lambda: _exhausted(TemplateAllocator("t%d", 4, 2, {0, 1, 2, 3, 4})))
    assert full is True
    free, elapsed_huge = _timed(lambda: TemplateAllocator("t%d", 10 ** 9, 10 ** 9, {0, 1, 2}).take())
    assert free == 3
    assert elapsed_small < 0.05 and elapsed_huge < 0.05


def _exhausted(allocator):
    try:
        allocator.take()
    except RangeExhausted:
        return True
    return False


def test_exhaustion_check_does_not_walk_the_range():
    # Count membership tests: the search may look at len(blocked) + 1 candidates at most.
    class CountingSet(set):
        lookups = 0

        def __contains__(self, item):
            CountingSet.lookups += 1
            return set.__contains__(self, item)

    blocked = CountingSet(range(0, 50))
    allocator = TemplateAllocator("t%d", 10 ** 9, 10 ** 9, blocked)
    assert allocator.take() == 50
    assert CountingSet.lookups <= len(blocked) + 3

    CountingSet.lookups = 0
    exhausted = CountingSet(range(0, 5))
    allocator = TemplateAllocator("t%d", 4, 1, exhausted)
    with pytest.raises(RangeExhausted):
        allocator.take()
    assert CountingSet.lookups == 0   # decided by the count alone


@pytest.mark.parametrize("template, number, expected", [
    ("vnet%d", 3, "vnet3"),
    ("%d.x", 42, "42.x"),
])
def test_render(template, number, expected):
    assert TemplateAllocator(template, 99, -1, set()).render(number) == expected


# -- leased numbers asked one at a time ------------------------------------------------------

def asked(leased: set):
    """LeasedNumbers over ``leased`` that records what was asked and whether all were read."""
    log = {"asked": [], "read_all": 0}

    def has(number):
        log["asked"].append(number)
        return number in leased

    def numbers():
        log["read_all"] += 1
        return sorted(leased)
    return LeasedNumbers(has=has, count=len(leased), numbers=numbers), log


def test_leases_are_asked_for_the_candidates_only():
    leased, log = asked(set(range(0, 30000)) - {30001})
    allocator = TemplateAllocator("vnet%d", 99999, 29999, set(), leased=leased)
    assert take_n(allocator, 3) == [30000, 30001, 30002]
    assert log["read_all"] == 0 and len(log["asked"]) <= 3


def test_leased_numbers_right_after_the_counter_are_skipped():
    leased, log = asked({12, 13, 15})
    allocator = TemplateAllocator("vnet%d", 99999, 11, {16}, leased=leased)
    assert take_n(allocator, 3) == [14, 17, 18]
    assert log["read_all"] == 0


def test_a_range_that_may_be_full_is_counted_exactly():
    # 4 of 5 numbers leased and 1 blocked: the count says the range may be full, so every leased
    # number is read and exhaustion is reported as with a set.
    leased, log = asked({0, 1, 2, 3})
    allocator = TemplateAllocator("t%d", 4, -1, {4}, leased=leased)
    with pytest.raises(RangeExhausted):
        allocator.take()
    assert log["read_all"] == 1
    # The count is an upper bound (names under the prefix that are not the template's numbers):
    # it says the range may be full, the exact read finds one number free.
    leased, log = asked({0, 1})
    leased.count = 3
    allocator = TemplateAllocator("t%d", 3, -1, {3}, leased=leased)
    assert allocator.take() == 2 and log["read_all"] == 1
    # Far from full: walked one number at a time, never read whole.
    leased, log = asked({0, 1, 3})
    allocator = TemplateAllocator("t%d", 4, -1, {4}, leased=leased)
    assert allocator.take() == 2 and log["read_all"] == 0


@pytest.mark.parametrize("seed", range(40))
def test_asking_one_at_a_time_hands_out_what_a_set_would(seed):
    rng = random.Random(seed)
    max_id = rng.choice([5, 20, 200])
    leased = {n for n in range(max_id + 1) if rng.random() < 0.4}
    blocked = {n for n in range(max_id + 1) if rng.random() < 0.2}
    last = rng.randint(-1, max_id + 3)
    count = rng.randint(1, max_id + 2)
    by_set = TemplateAllocator("t%d", max_id, last, set(blocked) | leased, window=4, unknown=lambda n: n % 3 == 0)
    one_by_one = TemplateAllocator("t%d", max_id, last, set(blocked), window=4, unknown=lambda n: n % 3 == 0,
                                   leased=asked(leased)[0])
    expected, got = [], []
    for allocator, out in ((by_set, expected), (one_by_one, got)):
        try:
            for _take in range(count):
                out.append(allocator.take())
        except RangeExhausted:
            out.append("exhausted")
    assert got == expected
    assert one_by_one.unknown_numbers == by_set.unknown_numbers
