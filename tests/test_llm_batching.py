"""Scheduling logic of the batched llama.cpp engine: prefix matching, slot choice, admission.

Pure bookkeeping (no model), so these run in milliseconds; the real-model checks are in
``test_llm_llamacpp_batched.py``.
"""

from __future__ import annotations

import pytest

from tooldojo.llm.llamacpp_engine import (
    PASS_TILE,
    EngineStats,
    SlotTable,
    common_prefix_length,
    draft_room,
    is_looping,
    lookup_draft,
)


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ([], [1, 2], 0),
        ([1, 2, 3], [1, 2, 3], 3),
        ([1, 2, 3], [1, 2, 3, 4], 3),
        ([1, 2, 3, 4], [1, 2, 9, 4], 2),
        ([5], [6], 0),
        (list(range(1000)), [*range(777), -1, *range(778, 1000)], 777),
    ],
)
def test_common_prefix_length(a, b, expected):
    assert common_prefix_length(a, b) == expected
    assert common_prefix_length(b, a) == expected


def test_common_prefix_length_matches_a_plain_loop_on_every_split():
    base = list(range(64))
    for cut in range(64):
        other = [*base[:cut], -1, *base[cut + 1 :]]
        assert common_prefix_length(base, other) == cut


def _run(table: SlotTable, tokens: list[int], need: int = 10):
    claim = table.claim(tokens, need)
    assert claim is not None
    table.apply(claim, tokens)
    table.slots[claim.target].tokens = list(tokens)  # the engine decodes the rest
    return claim


def test_a_new_prompt_starts_from_the_longest_cached_prefix():
    table = SlotTable(n_slots=4, capacity=1000)
    system = list(range(100))
    first = _run(table, [*system, 1000, 1001])
    table.release(first.target)
    other = _run(table, [7, 8, 9])
    table.release(other.target)
    second = table.claim([*system, 2000], need=10)
    assert second is not None
    # The idle slot holding the shared system prompt is reused in place: no copy needed.
    assert second.target == second.source == first.target and second.reuse == 100


def test_a_prefix_held_by_a_busy_slot_is_copied_to_an_idle_one():
    table = SlotTable(n_slots=3, capacity=1000)
    system = list(range(100))
    busy = _run(table, [*system, 1])  # stays busy
    claim = table.claim([*system, 2], need=10)
    assert claim is not None
    assert claim.source == busy.target and claim.target != busy.target and claim.reuse == 100


def test_a_short_prefix_is_recomputed_rather_than_copied():
    table = SlotTable(n_slots=3, capacity=1000)
    _run(table, [*range(10), 1])  # stays busy
    claim = table.claim([*range(10), 2], need=10)
    assert claim is not None and claim.reuse == 0 and claim.source == claim.target


def test_a_cached_prefix_away_from_the_busy_slots_is_copied_next_to_them():
    table = SlotTable(n_slots=4, capacity=1000)
    system = list(range(100))
    for tokens in ([1], [2], [3], [*system, 4]):
        _run(table, tokens)
    for index in (2, 3):
        table.release(index)
    # Slots 0 and 1 busy, slot 3 holds the prefix: in place would cost a second pass a step.
    claim = table.claim([*system, 5], need=10)
    assert claim is not None and claim.reuse == 100
    assert (claim.source, claim.target) == (3, 2)
    assert table.busy_runs() == 1


def test_the_last_prompt_token_is_always_decoded_again():
    table = SlotTable(n_slots=2, capacity=1000)
    first = _run(table, [1, 2, 3])
    table.release(first.target)
    again = table.claim([1, 2, 3], need=10)
    assert again is not None and again.reuse == 2  # its logits give the first new token


def test_no_reuse_when_nothing_is_shared_and_lru_idle_slot_is_overwritten():
    table = SlotTable(n_slots=2, capacity=1000)
    a = _run(table, [1, 2])
    table.release(a.target)
    b = _run(table, [3, 4])
    table.release(b.target)
    claim = table.claim([9, 9, 9], need=10)
    assert claim is not None and claim.reuse == 0
    assert claim.target == a.target  # least recently used


def test_admission_waits_for_a_free_slot_and_for_cells():
    table = SlotTable(n_slots=2, capacity=100)
    assert table.claim([1], need=60) is not None
    assert table.claim([2], need=60) is None  # 120 cells of worst case > 100
    assert table.claim([2], need=40) is not None
    assert table.claim([3], need=1) is None  # both slots busy
    table.release(0)
    assert table.claim([3], need=1) is not None


def test_eviction_picks_the_least_recently_used_idle_slot_with_tokens():
    table = SlotTable(n_slots=3, capacity=1000)
    a = _run(table, [1])
    b = _run(table, [2])
    assert table.evictable() is None  # busy slots are never evicted
    table.release(b.target)
    table.release(a.target)
    assert table.evictable() == b.target


def test_hit_rate_counts_reused_over_prompt_tokens():
    stats = EngineStats(prompt_tokens=200, reused_tokens=150)
    assert stats.hit_rate == 0.75
    assert EngineStats().hit_rate == 0.0
    assert stats.merged(EngineStats(prompt_tokens=200)).hit_rate == 0.375


def test_prefix_store_names_states_by_their_tokens_and_keeps_the_newest(tmp_path):
    import os

    from tooldojo.llm.llamacpp_engine import PrefixStore

    store = PrefixStore(tmp_path, max_files=2)
    assert store.path_for([1, 2, 3]) == store.path_for([1, 2, 3])
    assert store.path_for([1, 2, 3]) != store.path_for([1, 2, 4])
    for age, tokens in enumerate(([1], [2], [3])):
        path = store.path_for(tokens)
        path.write_bytes(b"x")
        os.utime(path, (age, age))
    store.prune()
    assert sorted(tmp_path.glob("*.kv")) == sorted([store.path_for([2]), store.path_for([3])])


def test_busy_runs_counts_runs_of_consecutive_busy_slots():
    table = SlotTable(n_slots=6, capacity=1000)
    assert table.busy_runs() == 0
    for index in (0, 1, 3):
        table.slots[index].busy = True
    assert table.busy_runs() == 2
    assert table.busy_runs(also=2) == 1  # filling the gap joins the runs
    assert table.busy_runs(also=5) == 3


def test_a_new_prompt_goes_next_to_the_busy_slots_so_one_pass_serves_them():
    table = SlotTable(n_slots=6, capacity=1000)
    for index, tokens in enumerate(([1], [2], [3], [4], [5], [6])):
        claim = _run(table, tokens)
        assert claim.target == index
    for index in (5, 4, 3, 0):  # slot 5 is released first: the least recently used
        table.release(index)
    # Slots 1 and 2 still busy; every idle slot holds an old prompt.
    claim = table.claim([99], need=10)
    assert claim is not None and claim.reuse == 0
    assert claim.target in (0, 3)  # not the least recently used slot 5, which would split
    assert table.busy_runs() == 1


def test_without_prefix_reuse_every_prompt_is_computed_from_scratch():
    table = SlotTable(n_slots=2, capacity=1000, reuse_prefixes=False)
    first = _run(table, [1, 2, 3, 4])
    table.release(first.target)
    again = table.claim([1, 2, 3, 4, 5], need=10)
    assert again is not None and again.reuse == 0


@pytest.mark.parametrize(
    "ids, runs", [([], 0), ([3], 1), ([0, 1, 2, 3], 1), ([0, 1, 3], 2), ([0, 2, 4, 6], 4)]
)
def test_id_runs(ids, runs):
    from tooldojo.llm.llamacpp_engine import _id_runs

    assert _id_runs(ids) == runs


def test_requests_go_to_a_free_engine_unless_another_holds_a_long_prefix():
    from types import SimpleNamespace

    from tooldojo.llm.llamacpp import LOAD_TOKENS, LlamaCppChatModel

    def engine(cached: list[int], load: int):
        table = SlotTable(n_slots=4, capacity=1000)
        table.slots[0].tokens = cached
        return SimpleNamespace(table=table, load=load, max_active=2)

    tools_block = list(range(3 * LOAD_TOKENS))
    warm, cold = engine(tools_block, load=2), engine([], load=0)
    model = LlamaCppChatModel.__new__(LlamaCppChatModel)
    model._engines = [warm, cold]
    assert model._engine_for([*tools_block, 99]) is cold  # the warm engine's batch is full
    warm.load = 1
    assert model._engine_for([*tools_block, 99]) is warm  # a place free, a long prefix
    assert model._engine_for([*range(30), 99]) is cold  # a short prefix: spread the load


def test_a_prompt_with_nothing_cached_fills_a_gap_rather_than_an_empty_slot():
    table = SlotTable(n_slots=4, capacity=1000)
    for tokens in ([1], [2], [3]):
        _run(table, tokens)  # slots 0, 1, 2 busy
    table.release(1)  # slot 1 idle (holds [2]), slot 3 empty
    claim = table.claim([99], need=10)
    assert claim is not None and claim.reuse == 0
    # Slot 3 is empty, but a sequence there would cost a second llama.cpp pass every step.
    assert claim.target == 1
    assert table.busy_runs() == 1


def test_prompt_lookup_guesses_what_followed_the_last_tokens_before():
    ngrams: dict = {}
    sequence = [5, 1, 2, 3, 4, 9, 9, 1, 2, 3]
    assert lookup_draft(sequence, ngrams, 0, limit=3) == [4, 9, 9]  # after 1 2 3
    assert lookup_draft(sequence, ngrams, len(sequence), limit=1) == [4]
    # The newest occurrence wins; only a 2-gram match: 7 8 -> what followed 8 last time.
    sequence = [7, 8, 1, 6, 7, 8, 2, 0, 7, 8]
    assert lookup_draft(sequence, {}, 0, limit=4) == [2, 0, 7, 8]
    assert lookup_draft([1, 2, 3, 4], {}, 0, limit=4) == []  # nothing repeats
    assert lookup_draft([1], {}, 0, limit=4) == []


def test_guesses_fill_a_pass_up_to_the_tile_and_never_past_the_batch():
    assert draft_room(1, 512) == PASS_TILE - 1
    assert draft_room(8, 512) == PASS_TILE - 8
    assert draft_room(PASS_TILE, 512) == 0
    assert draft_room(PASS_TILE + 1, 512) == PASS_TILE - 1
    assert draft_room(10, 12) == 2
    assert draft_room(512, 512) == 0


def test_a_short_cycle_over_the_last_64_tokens_is_a_loop():
    prefix = list(range(100, 140))
    assert is_looping(prefix + [7, 8, 9, 10, 11, 12] * 11)  # a 6-token cycle, 66 tokens
    assert is_looping([5] * 64)
    assert not is_looping([5] * 63)  # too short to tell
    assert not is_looping(prefix + list(range(64)))  # no cycle
    assert not is_looping(list(range(17)) * 4)  # a 17-token cycle is longer than LOOP_PERIOD
    assert not is_looping([1, 2] * 30 + [3, 4, 5, 6])  # the cycle was left
