"""Decode a local TTree's baskets straight into the final NumPy buffers.

uproot reads a branch basket by basket: each basket is decompressed into its own buffer,
interpreted into its own array (a byte-swapping copy), and the arrays are concatenated (another
copy), all with Python in between. For a fast codec (LZ4) that array building, not the codec,
bounds the read. Here each basket is decompressed *into its place* in one preallocated array
per branch and byte-swapped there while it is still in the cache (a basket stored uncompressed
is copied and swapped in one pass): no per-basket arrays, no concatenation.

What is handled is what NanoAOD-like analyses read: branches of plain numbers (``AsDtype``)
and arrays with a counter branch (``Muon_pt[nMuon]``, uproot's ``AsJagged`` without a header),
in a memory-mapped local file, baskets compressed with ZSTD, LZ4, ZLIB or LZMA or stored
uncompressed, free-standing or embedded in the branch. Jagged contents are laid out with the
counter branch (as ROOT reads them), and every basket's size is checked against the counts.
:func:`basket_decoder` returns None for anything else, and the caller reads with uproot. The
result has exactly the awkward type and values that uproot's ``tree.arrays(columns)`` gives.
"""

from __future__ import annotations

import lzma
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import cramjam
import numpy as np
import uproot
import xxhash

__all__ = ["BasketDecoder", "basket_decoder"]

# A basket's TKey (big-endian): fNbytes, fVersion, fObjlen, fDatime, fKeylen, fCycle; then,
# just before the end of the key, the TBasket's fVersion, fBufferSize, fNevBufSize, fNevBuf, fLast.
_KEY = struct.Struct(">ihiIhh")
_BASKET = struct.Struct(">Hiiii")
# Each compressed block: algorithm, method, compressed and uncompressed sizes (3 bytes little-endian).
_BLOCK = struct.Struct("<2sB3s3s")
_LZ4_CHECKSUM = struct.Struct(">Q")

_NUMBER_KINDS = "biuf"  # bool, signed, unsigned, floating


class BasketError(Exception):
    """A basket whose header or data does not fit its branch (the file is damaged)."""


@dataclass(frozen=True)
class _Column:
    name: str
    branch: Any  # uproot TBranch
    stored: np.dtype  # as in the file (big-endian)
    counter: _Column | None  # the counter branch of a jagged column
    entry_offsets: np.ndarray  # first entry of each basket, and the branch's entry count
    free_baskets: int  # baskets 0 .. free_baskets - 1 have keys of their own; the others are embedded


@dataclass(frozen=True)
class _Basket:
    """One basket of a branch, its header read."""

    number: int
    entry_start: int
    entry_stop: int
    raw_bytes: int  # uncompressed: data, then entry offsets (if any)
    border: int  # bytes of data
    chunk: np.ndarray | None  # free-standing baskets: the (compressed) bytes after the key
    data: np.ndarray | None  # embedded baskets: the data (uproot read it with the branch)

    @property
    def compressed(self) -> bool:
        return self.data is None and len(self.chunk) != self.raw_bytes


class BasketDecoder:
    """Reads some columns of an open local TTree, entry range by entry range (see the module).

    Make one with :func:`basket_decoder`.
    """

    def __init__(self, source: uproot.source.file.MemmapSource, columns: Sequence[_Column]):
        self._source = source
        self._columns = list(columns)
        self._counters = {c.counter.name: c.counter for c in self._columns if c.counter is not None}

    def read(self, start: int, stop: int) -> ak.Array:
        """Entries ``[start, stop)`` as uproot's ``tree.arrays(columns, library="ak")`` would give them.

        Raises :class:`BasketError` for a damaged basket and uproot's ``OSError`` for a short file.
        """
        decoded: dict[tuple[str, int, int], np.ndarray] = {}  # a counter is decoded once per read

        def flat(column: _Column, first: int, last: int) -> np.ndarray:
            key = (column.name, first, last)
            if key not in decoded:
                itemsize = column.stored.itemsize
                decoded[key] = self._fill(column, first, last, lambda entry: (entry - first) * itemsize)
            return decoded[key]

        cumulative = {
            name: self._cumulative_counts(counter, start, stop, flat) for name, counter in self._counters.items()
        }
        contents = []
        for column in self._columns:
            if column.counter is None:
                contents.append(ak.contents.NumpyArray(flat(column, start, stop)))
                continue
            contents.append(self._jagged(column, start, stop, *cumulative[column.counter.name]))
        return ak.Array(ak.contents.RecordArray(contents, [c.name for c in self._columns], length=stop - start))

    def _jagged(
        self, column: _Column, start: int, stop: int, first: int, cumulative: np.ndarray
    ) -> ak.contents.Content:
        """The ``ListOffsetArray`` of a jagged column, with ``cumulative`` counts from entry ``first``."""
        ends = cumulative[start - first : stop - first + 1]
        base = int(ends[0])
        itemsize = column.stored.itemsize

        def position(entry: int) -> int:
            return (int(cumulative[entry - first]) - base) * itemsize

        content = ak.contents.NumpyArray(self._fill(column, start, stop, position))
        return ak.contents.ListOffsetArray(ak.index.Index64(ends - base if base else ends), content)

    def _cumulative_counts(
        self, counter: _Column, start: int, stop: int, flat: Callable[[_Column, int, int], np.ndarray]
    ) -> tuple[int, np.ndarray]:
        """``(first, cumulative)``: counts summed from entry ``first`` (``cumulative[0] = 0``).

        They cover the whole baskets that hold ``[start, stop)`` in every column that uses
        ``counter``, so that a basket cut by the range can be sliced at the right item.
        """
        users = [_basket_entry_range(c, start, stop) for c in self._columns if c.counter is counter]
        first = min(u[0] for u in users)
        counts = flat(counter, first, max(u[1] for u in users))
        if counts.dtype.kind == "i" and len(counts) and counts.min() < 0:
            raise BasketError(f"branch {counter.name!r} holds a negative count")
        cumulative = np.empty(len(counts) + 1, np.int64)
        cumulative[0] = 0
        np.cumsum(counts, dtype=np.int64, out=cumulative[1:])
        return first, cumulative

    def _fill(self, column: _Column, start: int, stop: int, position: Callable[[int], int]) -> np.ndarray:
        """Decode the baskets holding ``[start, stop)`` into one native array.

        ``position(entry)`` is the byte where ``entry``'s data starts in the output (for entries
        of the baskets cut by the range, outside ``[0, position(stop)]``). A basket wholly inside
        the range is decompressed in place: its trailing entry offsets spill over into some
        slack at the end and are overwritten by the next basket.
        """
        size = position(stop)
        baskets = [self._basket(column, number) for number in _basket_numbers(column, start, stop)]
        for basket in baskets:  # before allocating: sizes from a damaged counter could be anything
            held = position(basket.entry_stop) - position(basket.entry_start)
            if held != basket.border:
                counted = "entries" if column.counter is None else f"counts in {column.counter.name!r}"
                raise BasketError(
                    f"basket {basket.number} of branch {column.name!r} holds {basket.border} bytes, "
                    f"its {counted} make {held}"
                )
        slack = max((b.raw_bytes - b.border for b in baskets if b.compressed), default=0)
        out = np.empty(size + slack, np.uint8)
        native = column.stored.newbyteorder("=")
        for basket in baskets:
            begin = position(basket.entry_start)
            end = begin + basket.border
            low, high = max(begin, 0), min(end, size)
            if low == begin and high == end and basket.compressed:
                _decompress(basket, out[begin : begin + basket.raw_bytes], column.name)
                if native != column.stored:  # to native order while it is in the cache
                    out[low:high].view(column.stored).byteswap(inplace=True)
                continue
            data = basket.data if basket.data is not None else basket.chunk
            if basket.compressed:
                data = np.empty(basket.raw_bytes, np.uint8)
                _decompress(basket, data, column.name)
            # copied and turned to native order in one pass
            out[low:high].view(native)[...] = data[low - begin : high - begin].view(column.stored)
        return out[:size].view(native)

    def _basket(self, column: _Column, number: int) -> _Basket:
        branch = column.branch
        entry_start, entry_stop = (int(e) for e in column.entry_offsets[number : number + 2])
        if number >= column.free_baskets:  # embedded: uncompressed, read with the branch
            data = branch.basket(number).data
            return _Basket(number, entry_start, entry_stop, len(data), len(data), None, data)
        seek = int(branch.member("fBasketSeek")[number])
        nbytes = int(branch.member("fBasketBytes")[number])
        raw = self._source.chunk(seek, seek + nbytes).raw_data  # a short file raises uproot's OSError
        if nbytes < _KEY.size:
            raise BasketError(f"basket {number} of branch {column.name!r} is {nbytes} bytes, shorter than its key")
        key_nbytes, _, raw_bytes, _, key_length, _ = _KEY.unpack_from(raw, 0)
        if not _KEY.size + _BASKET.size < key_length <= nbytes:
            raise BasketError(f"basket {number} of branch {column.name!r} has a key of {key_length} bytes")
        _, _, _, entries, last = _BASKET.unpack_from(raw, key_length - _BASKET.size - 1)
        border = last - key_length
        if key_nbytes != nbytes or entries != entry_stop - entry_start or not 0 <= border <= raw_bytes:
            raise BasketError(
                f"basket {number} of branch {column.name!r} does not match the branch: {key_nbytes} bytes "
                f"(branch: {nbytes}), {entries} entries (branch: {entry_stop - entry_start}), "
                f"{border} bytes of data of {raw_bytes}"
            )
        return _Basket(number, entry_start, entry_stop, raw_bytes, border, raw[key_length:], None)


def basket_decoder(tree: Any, columns: Sequence[str]) -> BasketDecoder | None:
    """A decoder of ``columns`` of ``tree`` if every one can be decoded here (see the module), else None."""
    if not isinstance(tree, uproot.behaviors.TTree.TTree):
        return None
    source = tree.file.source
    if not isinstance(source, uproot.source.file.MemmapSource) or source.fallback is not None:
        return None
    counters: dict[str, _Column] = {}
    try:  # each name once, as uproot's tree.arrays gives it
        return BasketDecoder(source, [_column(tree[name], name, counters) for name in dict.fromkeys(columns)])
    except _Unsupported:
        return None


class _Unsupported(Exception):
    """A branch this module does not decode: the caller reads with uproot."""


def _column(branch: Any, name: str, counters: dict[str, _Column]) -> _Column:
    """``name``'s column; ``counters`` (by name) makes every user of one counter share its column."""
    if branch.branches:
        raise _Unsupported(name)
    try:
        interpretation = branch.interpretation
    except Exception as exc:  # noqa: BLE001 - uproot cannot interpret it either: let uproot say why
        raise _Unsupported(name) from exc
    counter = None
    if type(interpretation) is uproot.interpretation.jagged.AsJagged:
        counter_branch = branch.count_branch
        if interpretation.header_bytes != 0 or counter_branch is None:
            raise _Unsupported(name)
        if counter_branch.name not in counters:
            counters[counter_branch.name] = _column(counter_branch, counter_branch.name, counters)
        counter = counters[counter_branch.name]
        if counter.counter is not None or counter.stored.kind not in "iu":
            raise _Unsupported(name)
        interpretation = interpretation.content
    stored = _plain_dtype(interpretation, name)
    try:
        entry_offsets = np.asarray(branch.entry_offsets, np.int64)
    except ValueError as exc:  # baskets that do not add up: uproot's read explains it
        raise _Unsupported(name) from exc
    return _Column(name, branch, stored, counter, entry_offsets, branch.num_baskets - len(branch.embedded_baskets))


def _plain_dtype(interpretation: Any, name: str) -> np.dtype:
    """The stored dtype of a plain number (no fixed-size inner dimensions, no conversion)."""
    if type(interpretation) is not uproot.interpretation.numerical.AsDtype:
        raise _Unsupported(name)
    stored = interpretation.from_dtype
    if stored.shape != () or stored.kind not in _NUMBER_KINDS or interpretation.to_dtype != stored.newbyteorder("="):
        raise _Unsupported(name)
    return stored


def _basket_numbers(column: _Column, start: int, stop: int) -> range:
    """The baskets holding entries ``[start, stop)``."""
    offsets = column.entry_offsets
    if stop > offsets[-1]:
        raise BasketError(f"branch {column.name!r} has {offsets[-1]} entries, entries up to {stop} were asked for")
    if stop <= start:
        return range(0)
    first = int(np.searchsorted(offsets, start, side="right")) - 1
    last = int(np.searchsorted(offsets, stop, side="left"))
    return range(first, last)


def _basket_entry_range(column: _Column, start: int, stop: int) -> tuple[int, int]:
    """The entries of the whole baskets holding ``[start, stop)``."""
    numbers = _basket_numbers(column, start, stop)
    if not numbers:
        return start, start
    return int(column.entry_offsets[numbers[0]]), int(column.entry_offsets[numbers[-1] + 1])


def _decompress(basket: _Basket, out: np.ndarray, name: str) -> None:
    """Decompress ``basket`` into ``out`` (its first ``basket.raw_bytes`` bytes), block by block."""
    chunk = basket.chunk
    read = written = 0
    while read < len(chunk):
        if read + _BLOCK.size > len(chunk):
            raise BasketError(f"basket {basket.number} of branch {name!r}: a compressed block is cut off")
        algorithm, _, compressed, uncompressed = _BLOCK.unpack_from(chunk, read)
        compressed = int.from_bytes(compressed, "little")
        uncompressed = int.from_bytes(uncompressed, "little")
        data = chunk[read + _BLOCK.size : read + _BLOCK.size + compressed]
        target = out[written : written + uncompressed]
        if len(data) != compressed or len(target) != uncompressed or written + uncompressed > basket.raw_bytes:
            raise BasketError(f"basket {basket.number} of branch {name!r}: block sizes do not fit the basket")
        try:
            done = _decompress_block(algorithm, data, target)
        except Exception as exc:  # noqa: BLE001 - the codecs' errors: corrupt data
            raise BasketError(f"basket {basket.number} of branch {name!r} does not decompress: {exc}") from None
        if done != uncompressed:
            raise BasketError(
                f"basket {basket.number} of branch {name!r}: a block decompressed to {done} bytes, "
                f"its header says {uncompressed}"
            )
        read += _BLOCK.size + compressed
        written += uncompressed
    if written != basket.raw_bytes:
        raise BasketError(
            f"basket {basket.number} of branch {name!r} decompressed to {written} bytes, "
            f"its key says {basket.raw_bytes}"
        )


def _decompress_block(algorithm: bytes, data: np.ndarray, target: np.ndarray) -> int:
    """Decompress one block into ``target``; the number of bytes written."""
    if algorithm == b"ZS":
        return cramjam.zstd.decompress_into(data, target)
    if algorithm == b"L4":
        (checksum,) = _LZ4_CHECKSUM.unpack_from(data, 0)
        data = data[_LZ4_CHECKSUM.size :]
        if xxhash.xxh64(data).intdigest() != checksum:
            raise ValueError("LZ4 checksum mismatch")
        return cramjam.lz4.decompress_block_into(data, target, output_len=len(target))
    if algorithm == b"ZL":
        return cramjam.zlib.decompress_into(data, target)
    if algorithm == b"XZ":
        decoded = np.frombuffer(lzma.decompress(data), np.uint8)
        target[: len(decoded)] = decoded
        return len(decoded)
    raise ValueError(f"unsupported compression algorithm {algorithm!r}")
