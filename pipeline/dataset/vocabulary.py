"""The label vocabulary: label names to the int64 indices the records carry, and vocabulary.csv."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Iterable

__all__ = ["Vocabulary"]


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Label name -> index. Indices are positions in sorted order, or the integers themselves.

    Integer mode (every label of the CSV is a non-negative integer) keeps each label's value,
    as the YouTube-8M extractor's integer labels do; otherwise names are sorted, so the
    indices depend only on the set of names, not on row order or sharding.
    """

    names: tuple[str, ...]
    integer: bool

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> Vocabulary:
        """The vocabulary of every label name in `labels` (duplicates and order do not matter)."""
        unique = set(labels)
        if unique and all(re.fullmatch(r"\d+", t) for t in unique):
            return cls(names=tuple(sorted(unique, key=int)), integer=True)
        return cls(names=tuple(sorted(unique)), integer=False)

    def index(self, name: str) -> int:
        """The int64 label index the records carry for `name`, one of this vocabulary's names."""
        if self.integer:
            return int(name)
        return self._positions[name]

    @property
    def _positions(self) -> dict[str, int]:
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = {n: i for i, n in enumerate(self.names)}
            object.__setattr__(self, "_cache", cache)
        return cache

    def rows(self) -> list[tuple[int, str]]:
        """`(index, name)` pairs in index order, the rows of vocabulary.csv."""
        return [(self.index(n), n) for n in self.names]

    def to_csv(self) -> str:
        """vocabulary.csv's text: an `Index,Name` header, then one row per label."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["Index", "Name"])
        writer.writerows(self.rows())
        return buf.getvalue()
