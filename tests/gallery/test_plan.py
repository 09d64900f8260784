"""Verify/retry/pass decisions and report payloads (docs/hath-protocol.md §6, §1.3)."""

from __future__ import annotations

import hashlib
import random

from hathd.gallery.plan import (
    MAX_DLFAILS,
    GalleryPlan,
    Outcome,
    accept_digest,
    dlfails_add,
    dlfetch_add,
    failure_key,
    low_disk,
)

MIB = 1024 * 1024


def test_accept_digest() -> None:
    digest = hashlib.sha1(b"x").hexdigest()
    assert accept_digest(digest, digest, 1)
    assert accept_digest(digest.upper(), digest, 1)
    assert not accept_digest(digest, hashlib.sha1(b"y").hexdigest(), 1)
    assert accept_digest(None, "anything", 1)  # unknown hash, size > 0
    assert not accept_digest(None, "anything", 0)
    assert not accept_digest(digest, digest, 0)


def test_low_disk_threshold() -> None:
    assert low_disk(1000 * MIB - 1, 0, 1000 * MIB)
    assert not low_disk(1000 * MIB, 0, 1000 * MIB)
    assert low_disk(1500 * MIB, 600 * MIB, 1000 * MIB)


def test_payloads() -> None:
    assert dlfetch_add(42, 3, 7003, "org", 2) == "42;3;7003;org;2"
    assert failure_key("img.example", 7003, "1280") == "img.example-7003-1280"


def test_dlfails_caps_at_fifty() -> None:
    assert dlfails_add([]) is None
    assert dlfails_add(["a-1-org"]) == "a-1-org"
    keys = [f"h-{i}-org" for i in range(80)]
    report = dlfails_add(keys, random.Random(1))
    assert report is not None
    sent = report.split(";")
    assert len(sent) == MAX_DLFAILS
    assert set(sent) <= set(keys)
    assert len(set(sent)) == MAX_DLFAILS


def test_all_good_in_one_pass() -> None:
    plan = GalleryPlan(3)
    batch = plan.next_pass()
    assert batch == [0, 1, 2]
    plan.record(0, Outcome.KEPT)
    for i in (1, 2):
        plan.begin_try(i)
        plan.record(i, Outcome.DOWNLOADED)
    assert plan.complete
    assert (plan.kept, plan.downloaded) == (1, 2)
    assert plan.next_pass() is None


def test_retry_on_later_pass_and_give_up_after_three_tries() -> None:
    plan = GalleryPlan(2, tries_per_file=3, max_passes=9)
    passes = []
    while (batch := plan.next_pass()) is not None:
        passes.append(batch)
        for i in batch:
            n = plan.begin_try(i)
            if i == 0 and n == 2:
                plan.record(i, Outcome.DOWNLOADED)
            elif i == 0:
                plan.record(i, Outcome.FAILED, failure_key("h", 1, "org"))
            else:
                plan.record(i, Outcome.FAILED, failure_key("h", 2, "org"))
    assert passes == [[0, 1], [0, 1], [1]]
    assert not plan.complete
    assert plan.given_up() == [1]
    assert plan.tries == [2, 3]
    assert plan.failed_tries == 4
    # One key per distinct failure, in order of first failure (J162 logFailure skips repeats).
    assert plan.failures == ["h-1-org", "h-2-org"]


def test_dlfails_add_sends_each_key_once() -> None:
    assert dlfails_add(["a-1-org", "b-2-org", "a-1-org", "a-1-org"]) == "a-1-org;b-2-org"


def test_pass_limit() -> None:
    # Only the pass limit and the per-file tries stop a gallery: no gallery-wide failure
    # budget (J162 limits passes only), so a one-file gallery gets every pass.
    plan = GalleryPlan(1, tries_per_file=100, max_passes=4)
    count = 0
    while (batch := plan.next_pass()) is not None:
        count += 1
        plan.begin_try(batch[0])
        plan.record(batch[0], Outcome.FAILED)
    assert count == 4
    assert plan.failed_tries == 4
    plan = GalleryPlan(1)  # the defaults: 3 tries per file, 9 passes
    tries = 0
    while (batch := plan.next_pass()) is not None:
        tries += 1
        plan.begin_try(batch[0])
        plan.record(batch[0], Outcome.FAILED, "h-1-org")
    assert tries == 3
    assert plan.failures == ["h-1-org"]
    plan = GalleryPlan(10, tries_per_file=100, max_passes=4)
    count = 0
    while (batch := plan.next_pass()) is not None:
        count += 1
        plan.begin_try(batch[0])
        plan.record(batch[0], Outcome.FAILED)
        for i in batch[1:]:
            plan.record(i, Outcome.KEPT)
    assert count == 4


def test_pacing() -> None:
    plan = GalleryPlan(1, success_delay=1.0, failure_delay=5.0)
    assert plan.delay_after(Outcome.DOWNLOADED) == 1.0
    assert plan.delay_after(Outcome.FAILED) == 5.0
    assert plan.delay_after(Outcome.KEPT) == 0.0
