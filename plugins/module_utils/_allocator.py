# Copyright (c) netdev.tuntap contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Choosing the next number for a template: monotonic, wrapping, never into a blocked name.

Pure logic. The caller gathers which numbers are blocked (devices present in the
target namespace, names leased to others, names released less than reuse_delay
ago) as one set, so the search costs set look-ups, never system calls, and the
exhaustion check is a count rather than a walk over the whole range.

Which devices exist is known only for the names looked up (a namespace is not listed whole
on every run): ``unknown(number)`` says whether a number's name was looked up. A number
handed out whose name was not is taken all the same, and the allocator records it with
the next free numbers after it (a window) in ``unknown_numbers``: the caller looks their
names up and allocates again.
"""

from __future__ import annotations

from collections.abc import Iterable

from ansible_collections.netdev.tuntap.plugins.module_utils._names import render


class RangeExhausted(Exception):
    """Every number from 0 to max_id is blocked."""


def first_counter(existing_numbers: Iterable[int]) -> int:
    """The counter for a template seen for the first time: above every matching device."""
    return max(existing_numbers, default=-1)


class LeasedNumbers:
    """The numbers of a template that leases hold, asked one at a time.

    ``has(number)`` answers for one number; ``count`` is at least how many there are (the
    allocator reads them all, ``numbers()``, only when the range may be full).
    """

    def __init__(self, has, count: int, numbers):
        self.has = has
        self.count = count
        self.numbers = numbers


class TemplateAllocator:
    """Hands out numbers for one template, starting after ``last``.

    ``blocked`` is taken over (not copied): numbers handed out are added to it so a
    batch never gets the same number twice.
    """

    def __init__(self, template: str, max_id: int, last: int, blocked: set[int], unknown=None, window: int = 1,
                 leased=None):
        self.template = template
        self.max_id = max_id
        self.last = last
        self.taken = 0
        self._blocked = blocked
        self._blocked_in_range = sum(1 for n in blocked if 0 <= n <= max_id)
        self._unknown = unknown
        self.window = max(1, window)
        self.unknown_numbers: set[int] = set()  # numbers to look up before the allocation stands
        # Numbers leased, asked one at a time (see LeasedNumbers) instead of all read into
        # ``blocked``: a registry of 30 000 leases costs a look-up per candidate, not a load.
        self._leased = leased

    def _is_blocked(self, number: int) -> bool:
        return number in self._blocked or (self._leased is not None and self._leased.has(number))

    def block(self, number: int) -> None:
        """Mark a number unusable (e.g. the kernel said the name exists)."""
        if number not in self._blocked:
            self._blocked.add(number)
            if 0 <= number <= self.max_id:
                self._blocked_in_range += 1

    def peek(self) -> int:
        """The number ``take`` would return, without taking it."""
        span = self.max_id + 1
        if self._leased is not None and self._blocked_in_range + self._leased.count >= span:
            # So many leases that the range may be full: only every leased number, counted
            # exactly, says whether it is.
            for number in self._leased.numbers():
                self.block(number)
            self._leased = None
        if self._blocked_in_range >= span:
            raise RangeExhausted(self.template)
        # A counter above max_id (max_id was lowered since) wraps straight to 0.
        candidate = self.last + 1 if 0 <= self.last < self.max_id else 0
        # Bounded by len(blocked) + leased.count + 1 steps: at least one number is free.
        while self._is_blocked(candidate):
            candidate = candidate + 1 if candidate < self.max_id else 0
        return candidate

    def render(self, number: int) -> str:
        return render(self.template, number)

    def take(self) -> int:
        number = self.peek()
        if self._unknown is not None and number not in self.unknown_numbers and self._unknown(number):
            self.unknown_numbers.update(self._next_free(number, self.window))
        self.last = number
        self.taken += 1
        self.block(number)
        return number

    def _next_free(self, number: int, count: int) -> list:
        """``number`` and the numbers after it that are not blocked, ``count`` in all (fewer
        when the range has fewer), wrapping after max_id."""
        found = []
        for _step in range(self.max_id + 1):
            if not self._is_blocked(number):
                found.append(number)
                if len(found) == count:
                    break
            number = number + 1 if number < self.max_id else 0
        return found
