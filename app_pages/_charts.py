"""Plotly figures built from plotly's own JSON, for the pages' charts: no validation, and numeric arrays already in
the form plotly sends them, so drawing a chart costs a few ms however the process came to it."""

from __future__ import annotations

import base64

import numpy as np
from plotly.graph_objects import Figure

# plotly.js typed arrays (plotly's ``_plotly_utils.utils.plotlyjsShortTypes``) and the int types int64 narrows to
TYPED_CODES = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4"}
TYPED_CODES |= {"float32": "f4", "float64": "f8"}
TYPED_INTS = {"i": (np.int8, np.int16, np.int32), "u": (np.uint8, np.uint16, np.uint32)}


def figure(data: list[dict], layout: dict) -> Figure:
    """A plotly figure from plotly's own JSON (traces with their ``type``, a layout), not validated: a few ms
    where building it through plotly's checked setters took 0.1-0.3 s per draw at any size. ``st.plotly_chart``
    sends ``to_dict()`` as it is; the charts' JSON equals what the validated figures gave. The traces' numeric
    arrays are given as plotly.js typed arrays (``typed_array``), as plotly would write them."""
    traces = [{key: typed_array(value) for key, value in trace.items()} for trace in data]
    return Figure({"data": traces, "layout": layout}, _validate=False)


def typed_array(value):
    """A numeric numpy array as the plotly.js typed array that plotly's ``to_json`` writes for it ({'dtype': 'f8',
    'bdata': base64}; int64 narrowed to the smallest int type that holds it), anything else as it is. plotly does
    the same with each array in ``to_dict`` (``_plotly_utils.utils.to_typed_array_spec``), through narwhals: 20-60
    ms a page, most of it narwhals' first look at its plugins in a fresh process."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "iuf" or value.ndim != 1:
        return value
    if value.size == 0:
        return []
    if value.dtype.kind in "iu" and value.dtype.itemsize == 8:
        low, high = value.min(), value.max()
        narrow = [t for t in TYPED_INTS[value.dtype.kind] if np.iinfo(t).min <= low and high <= np.iinfo(t).max]
        if not narrow:
            return value
        value = value.astype(narrow[0])
    code = TYPED_CODES.get(value.dtype.name)
    if code is None:
        return value
    return {"dtype": code, "bdata": base64.b64encode(np.ascontiguousarray(value)).decode("ascii")}
