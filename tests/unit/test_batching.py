"""Laying records out in producer batches: the partition ``send`` would pick, and each offset."""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from bus.batching import PartitionBatches, murmur2, partition_for


@given(st.binary(max_size=300))
def test_murmur2_is_aiokafkas_for_any_key(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@given(st.binary(min_size=1, max_size=80), st.lists(st.integers(0, 99), min_size=1, unique=True))
def test_a_key_lands_on_the_partition_the_default_partitioner_picks(
    key: bytes, partitions: list[int]
) -> None:
    ordered = sorted(partitions)
    assert partition_for(key, ordered) == DefaultPartitioner()(key, ordered, ordered)


class _Batch:
    """A producer batch that takes ``room`` records, then refuses (returns None)."""

    def __init__(self, room: int) -> None:
        self.records: list[bytes] = []
        self.room = room
        self.closed = False

    def record_count(self) -> int:
        return len(self.records)

    def append(self, *, timestamp: None, key: bytes, value: bytes, headers: Any) -> object:
        if len(self.records) == self.room:
            return None
        self.records.append(value)
        return object()

    def close(self) -> None:
        self.closed = True


def test_each_record_gets_its_batch_base_offset_plus_its_place() -> None:
    batches = PartitionBatches(lambda: _Batch(room=2))
    batches.add_topic("t", [2, 0, 1])
    keys = [f"case-{i}".encode() for i in range(9)]
    for i, key in enumerate(keys):
        batches.add("t", key, str(i).encode(), [])
    laid_out = batches.by_partition()
    assert all(b.closed for bs in laid_out.values() for b in bs)
    # Kafka gives each batch a base offset; say partition p's batches start at 100p, 100p + 10, …
    base = {tp: [100 * tp[1] + 10 * n for n in range(len(bs))] for tp, bs in laid_out.items()}
    offsets = batches.offsets(base)
    for i, (key, placed, offset) in enumerate(zip(keys, batches.placements, offsets, strict=True)):
        assert placed.partition == partition_for(key, [0, 1, 2])
        batch = laid_out[("t", placed.partition)][placed.batch]
        assert batch.records[placed.position] == str(i).encode()
        assert offset == base[("t", placed.partition)][placed.batch] + placed.position
