"""Flat buffers of jagged arrays, for Numba kernels.

Numba kernels cannot walk awkward layouts; they want plain NumPy buffers: the ``offsets`` of a
jagged column (event ``i`` owns ``content[offsets[i]:offsets[i + 1]]``) and its ``content``.
A kernel that loops over events with these two buffers touches every value once and makes no
intermediate arrays, which is what makes an analysis fast. This module turns what a reader
hands out (a TTree's ``ListOffsetArray``, an RNTuple collection, a sliced or indexed view of
either) into exactly that form.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

__all__ = ["offsets_and_content"]

_LIST_TYPES = (ak.contents.ListOffsetArray, ak.contents.ListArray, ak.contents.RegularArray)


def offsets_and_content(array: ak.Array) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(offsets, content)`` of a one-level jagged numeric array, ready for a kernel.

    ``offsets`` is a contiguous int64 array of length ``len(array) + 1`` starting at 0 (so a
    kernel never does arithmetic in the reader's index type, e.g. uint32), and ``content`` a
    contiguous NumPy array of length ``offsets[-1]``. A packed
    ``ListOffsetArray`` (the usual case) costs no copy of the content; a sliced one is
    re-based; ``ListArray``, ``IndexedArray`` and ``RegularArray`` are packed first.
    Option types (missing values) and anything but ``var * number`` raise ``TypeError``.
    """
    layout = ak.to_layout(array)
    if isinstance(layout, ak.contents.NumpyArray) and layout.data.ndim == 2:
        layout = layout.to_RegularArray()
    if isinstance(layout, ak.contents.IndexedArray) or (
        isinstance(layout, _LIST_TYPES) and not isinstance(layout, ak.contents.ListOffsetArray)
    ):
        layout = ak.to_packed(layout, highlevel=False)
        if isinstance(layout, ak.contents.RegularArray):
            layout = layout.to_ListOffsetArray64(True)
    if not isinstance(layout, ak.contents.ListOffsetArray):
        raise TypeError(f"expected a jagged array (var * number), got {_type_of(array)}")
    content = layout.content
    if isinstance(content, ak.contents.IndexedArray):
        layout = ak.to_packed(layout, highlevel=False)
        content = layout.content
    if not isinstance(content, ak.contents.NumpyArray) or content.data.ndim != 1:
        raise TypeError(
            f"expected a jagged array of numbers without missing values (var * number), got {_type_of(array)}"
        )
    data = np.asarray(content.data)
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
        raise TypeError(f"expected a jagged array of numbers, got {_type_of(array)}")

    offsets = np.asarray(layout.offsets.data)
    start = int(offsets[0])
    stop = int(offsets[-1])
    offsets = offsets.astype(np.int64, copy=False)
    if start != 0:
        offsets = offsets - start
    data = data[start:stop]
    return np.ascontiguousarray(offsets), np.ascontiguousarray(data)


def _type_of(array: object) -> str:
    try:
        return str(ak.type(array))
    except Exception:  # not an awkward-convertible object
        return type(array).__name__
