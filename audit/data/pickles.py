"""Restricted, memory-bounded unpickling of CIFAR python batches.

CIFAR batches are pickles, and a pickle is a program. Two defences keep one from doing harm:

- only numpy array/scalar reconstruction and plain builtin types can be named (never an arbitrary callable);
- what the pickle can make the loader allocate is bounded by the file's own size (``bounded.allowance``).
  Before anything runs, every opcode is scanned: declared lengths must fit in the file, memo indices must be
  ones a pickler could have written, and each opcode is charged ``OPCODE_BYTES``. While it runs, every call
  that can allocate (``bytearray(n)``, ``bytes(n)``, array construction, text encoding, containers built
  from iterables) is charged what it may allocate *before* it is made; the first charge over the allowance
  ends the load with a one-line ``AuditError``.
"""

from __future__ import annotations

import io
import math
import operator
import pickle
import pickletools
import struct
from pathlib import Path

import numpy as np

from audit.data.bounded import allowance, human_bytes
from audit.errors import AuditError

OPCODE_BYTES = 256  # generous bound on what one opcode adds (an empty set is 216 bytes, plus stack and memo)
CONTAINER_ITEM_BYTES = 128  # per item of a list/tuple/set/dict built from an iterable (a numpy scalar or view)
TEXT_CODECS = {"latin1": 1, "latin-1": 1, "iso-8859-1": 1, "iso8859-1": 1, "l1": 1, "ascii": 1, "us-ascii": 1,
               "utf-8": 4, "utf8": 4}  # the codecs a pickle may use, with the most bytes per character


class _Forbidden(pickle.UnpicklingError):
    """A pickle asked for a global outside the whitelist; the message is its dotted name."""


class _OverBudget(pickle.UnpicklingError):
    """A pickle asked for more memory than its file size allows; the message says what it asked for."""


class _Budget:
    """The bytes a load may still allocate; ``charge`` refuses a request that would go over."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def charge(self, nbytes: int, what: str) -> None:
        self.used += int(nbytes)
        if self.used > self.limit:
            raise _OverBudget(f"{what} ({human_bytes(int(nbytes))})")


class _Unsupported(pickle.UnpicklingError):
    """A pickle builds something no CIFAR batch holds, in a way whose memory cannot be bounded up front."""


def _unsupported(what: str):
    return _Unsupported(what)


def _numpy_pickle_globals() -> dict[str, object]:
    """The numpy callables that pickled arrays and scalars refer to, taken from the installed numpy itself.

    Nothing is imported by name: numpy 1.x pickles say ``numpy.core.multiarray``, 2.x ``numpy._core...``.
    """
    return {
        "_reconstruct": np.zeros(1).__reduce_ex__(2)[0],
        "_frombuffer": np.zeros(1).__reduce_ex__(5)[0],
        "scalar": np.float64(0).__reduce__()[0],
    }


_NUMPY = _numpy_pickle_globals()
_NUMPY_NAMES = {(f"{core}.{module}", name): name for core in ("numpy.core", "numpy._core")
                for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                                     ("numeric", "_frombuffer"))}


def _text_cost(encoding, text_len: int) -> int:
    per_char = TEXT_CODECS.get(str(encoding).strip().lower().replace("_", "-"))
    if per_char is None:
        raise _unsupported(f"text codec {encoding!r}")
    return per_char * text_len


def _buffer_len(obj) -> int | None:
    try:
        return memoryview(obj).nbytes
    except TypeError:
        return None


def _array_cost(shape, dtype) -> int:
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise _unsupported("an array of Python objects")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return math.prod(operator.index(d) for d in shape) * dtype.itemsize


def _guarded_array_type(budget: _Budget) -> type:
    """An ndarray subclass for one load: building or restoring an array first charges its bytes."""

    class GuardedArray(np.ndarray):
        def __new__(cls, shape, dtype=float, buffer=None, offset=0, strides=None, order=None):
            cost = _array_cost(shape, dtype)
            if buffer is None:
                budget.charge(cost, f"an array of {cost} bytes")
            return super().__new__(cls, shape, dtype, buffer, offset, strides, order)

        def __setstate__(self, state):
            if not isinstance(state, tuple) or len(state) not in (4, 5) or _buffer_len(state[-1]) is None:
                raise _unsupported("array state without raw bytes")
            cost = _array_cost(state[-4], state[-3])
            budget.charge(cost, f"an array of {cost} bytes")
            super().__setstate__(state)

    return GuardedArray


def _guarded_builtins(budget: _Budget) -> dict[str, object]:
    """The builtin types a pickle may call, each charging what the call may allocate before it is made."""

    def sized(kind):
        def make(*args):
            if not args:
                return kind()
            first = args[0]
            if isinstance(first, int):
                budget.charge(operator.index(first), f"{kind.__name__}({first})")
            elif isinstance(first, str):
                budget.charge(_text_cost(args[1] if len(args) > 1 else "", len(first)), f"{kind.__name__} text")
            elif _buffer_len(first) is not None:
                budget.charge(_buffer_len(first), kind.__name__)
            elif isinstance(first, (list, tuple)):
                budget.charge(len(first), kind.__name__)
            else:
                raise _unsupported(f"{kind.__name__}({type(first).__name__})")
            return kind(*args)
        return make

    def text(*args):
        if len(args) >= 2 and _buffer_len(args[0]) is not None:
            budget.charge(_text_cost(args[1], _buffer_len(args[0])), "decoded text")
        elif len(args) > 1 or (args and not isinstance(args[0], (str, int, float, bool))):
            raise _unsupported(f"str{tuple(type(a).__name__ for a in args)}")
        return str(*args)

    def number(*args):
        if args and isinstance(args[0], (str, bytes, bytearray)):
            budget.charge(len(args[0]), "a number from text")
        return int(*args)

    def container(kind):
        def make(*args):
            if args:
                if not hasattr(args[0], "__len__"):
                    raise _unsupported(f"{kind.__name__}({type(args[0]).__name__})")
                budget.charge(CONTAINER_ITEM_BYTES * len(args[0]), f"a {kind.__name__} of {len(args[0])} items")
            return kind(*args)
        return make

    made = {kind.__name__: container(kind) for kind in (set, frozenset, list, tuple, dict)}
    made.update({"bytes": sized(bytes), "bytearray": sized(bytearray), "str": text, "int": number,
                 "float": float, "complex": complex, "bool": bool})
    return made


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy array/scalar reconstruction and plain builtin types, each within ``budget``."""

    def __init__(self, file, budget: _Budget):
        super().__init__(file, encoding="bytes")
        self.array_type = _guarded_array_type(budget)
        self.builtins = _guarded_builtins(budget)
        self.budget = budget

    def find_class(self, module: str, name: str):
        if module in ("builtins", "__builtin__") and name in self.builtins:
            return self.builtins[name]
        if (module, name) == ("_codecs", "encode"):
            # Python 3 writes bytes as _codecs.encode(text, "latin1") under protocols < 3
            return self._encode
        if (module, name) == ("numpy", "ndarray"):
            return self.array_type
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) in _NUMPY_NAMES:
            return getattr(self, "_numpy_" + _NUMPY_NAMES[(module, name)].lstrip("_"))
        raise _Forbidden(f"{module}.{name}")

    def _encode(self, text, encoding="utf-8", errors="strict"):
        if not isinstance(text, str):
            raise _unsupported(f"encoding a {type(text).__name__}")
        self.budget.charge(_text_cost(encoding, len(text)), "encoded text")
        return text.encode(encoding, errors)

    def _numpy_reconstruct(self, subtype, shape, dtype):
        if subtype is not self.array_type:
            raise _unsupported(f"an array of type {getattr(subtype, '__name__', subtype)}")
        cost = _array_cost(shape, dtype)
        self.budget.charge(cost, f"an array of {cost} bytes")
        return _NUMPY["_reconstruct"](subtype, shape, dtype)

    def _numpy_scalar(self, dtype, *args):
        self.budget.charge(np.dtype(dtype).itemsize, "a numpy scalar")
        return _NUMPY["scalar"](dtype, *args)

    def _numpy_frombuffer(self, buf, dtype, shape, order):
        return _NUMPY["_frombuffer"](buf, dtype, shape, order)  # a view of bytes the pickle already holds


def _scan(data: bytes, budget: _Budget) -> None:
    """Check every opcode before anything runs: lengths fit the data (pickletools raises otherwise), frames
    and memo indices are plausible, and each opcode is charged ``OPCODE_BYTES``."""
    count = 0
    for opcode, arg, pos in pickletools.genops(io.BytesIO(data)):
        count += 1
        if opcode.name == "FRAME" and arg > len(data) - pos:
            raise ValueError(f"a frame of {arg} bytes at offset {pos} runs past the end of the file")
        if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and arg > count:
            raise _OverBudget(f"memo slot {arg} after {count} opcodes")
    budget.charge(count * OPCODE_BYTES, f"{count} opcodes")


def _plain(obj):
    """``obj`` with guarded arrays (at the top level, or directly inside a top-level container) as ndarrays."""
    def one(value):
        return value.view(np.ndarray) if isinstance(value, np.ndarray) else value

    if isinstance(obj, dict):
        return {k: one(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [one(v) for v in obj]
    return one(obj)


def load_restricted_pickle(path: Path) -> object:
    """Unpickle ``path`` (bytes keys kept as bytes, as CIFAR needs) allowing only numpy arrays and plain data,
    and at most ``allowance(file size)`` bytes of allocation."""
    with open(path, "rb") as f:
        data = f.read()
    budget = _Budget(allowance(len(data)))
    try:
        _scan(data, budget)
        return _plain(_RestrictedUnpickler(io.BytesIO(data), budget).load())
    except _Forbidden as exc:
        raise AuditError(f"refusing to load '{path}': it is a pickle that would import {exc}; "
                         "only CIFAR-style batches of numpy arrays and plain data are accepted") from None
    except _Unsupported as exc:
        raise AuditError(f"refusing to load '{path}': the pickle builds {exc}, which no CIFAR batch holds") from None
    except (_OverBudget, MemoryError) as exc:
        asked = str(exc) or "more memory than is available"
        raise AuditError(f"refusing to load '{path}': the pickle asks for {asked}, beyond the "
                         f"{human_bytes(budget.limit)} a {human_bytes(len(data))} data file may use") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError, RecursionError, struct.error) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise AuditError(f"'{path}' is not a readable pickle ({type(exc).__name__}: {reason}); "
                         "re-download the CIFAR batch") from None

