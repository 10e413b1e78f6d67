"""One-pass kernels through NumPy's own BLAS (used by :mod:`gradsight.optim` and ``Dense``).

The update rules live in :mod:`gradsight.optim` and the layers in :mod:`gradsight.engine`; this
module only performs some of their lines in as few passes over memory as the installed
libraries allow:

* ``param ← param − rate·d`` (:func:`subtract_scaled`): BLAS axpy, y ← y + α·x in place,
  multiply and add fused. NumPy needs two passes (η·d into a scratch array, then the
  subtraction), on one thread.
* ``y ← α·x + β·y`` (:func:`scale_add`): OpenBLAS' axpby, a running average (momentum,
  Adam's m and v) in one pass instead of two or three.
* ``param ← param + α·leftᵀ·right`` (:func:`product_kernel`): a gradient that is a product —
  a Dense layer's ∂C/∂W = aᵀδ and ∂C/∂b = δᵀ·1 — applied by one accumulating BLAS product
  (gemm, gemv with β = 1), without ever storing the gradient: C ← α·AᵀB + 1·C *is* the
  update w ← w − η·aᵀδ for α = −η. Without the transpose, ``z ← X·W + z`` is a Dense
  layer's forward pass with z filled with b beforehand (``torch.addmm``).

NumPy does not expose axpy or an accumulating product, but the OpenBLAS it runs its matrix
products on does. Found through threadpoolctl (only a library that NumPy's own package
brought) and called through ctypes, these functions share the thread pool of NumPy's
products: the update is split over the same, still warm, threads. Each function is checked
on a probe with a known answer before it is trusted; only the symbol names whose integer
width is known are used (``…64_``: 64-bit, scipy-openblas32: 32-bit).

Where NumPy's BLAS cannot be reached, axpy falls back to SciPy's, on chunks of 8,192
entries: SciPy ships its own OpenBLAS beside NumPy's, and called on more than 10,000 entries
its axpy starts a second pool of BLAS threads, whose busy-waiting then fights NumPy's
threads for the cores (a 2-core machine slows down several times). Chunks keep it on the
calling thread. Products then have no kernel (the caller stores the gradient and uses
axpy). Arrays below 32 entries (descent's x) keep NumPy's two passes.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["subtract_scaled", "scale_add", "product_kernel", "reuse_product", "backend"]

_CHUNK = 8192
_BLAS_MIN = 32
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enums
# (symbol pattern, integer type): scipy-openblas64 (NumPy's wheels), an ILP64 OpenBLAS with
# the usual suffix, scipy-openblas32
_SYMBOLS = (("scipy_cblas_{}64_", ctypes.c_int64), ("cblas_{}64_", ctypes.c_int64),
            ("scipy_cblas_{}", ctypes.c_int32))


class _Functions:
    """axpy, gemm, gemv (and axpby where present) of NumPy's BLAS for one dtype (ctypes
    functions), with the ctypes types of their integers and scalars. The functions have no
    declared argument types: kernels pass ready-made ctypes objects, which skips a
    conversion per argument and call."""

    def __init__(self, axpy: Any, gemm: Any, gemv: Any, integer: Any, scalar: Any,
                 axpby: Any = None) -> None:
        self.axpy, self.gemm, self.gemv = axpy, gemm, gemv
        self.axpby = axpby  # y ← α·x + β·y: an OpenBLAS extension, None where it is missing
        self.integer, self.scalar = integer, scalar

    def ints(self, *values: int) -> tuple[Any, ...]:
        return tuple(self.integer(value) for value in values)


_NUMPY_BLAS: dict[np.dtype, _Functions | None] = {}
_SCIPY_AXPY: dict[np.dtype, Callable[..., Any] | None] = {}


def _numpy_blas_paths() -> list[str]:
    """Files of the BLAS libraries that NumPy's own package brought (via threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return []
    home = os.path.dirname(os.path.dirname(os.path.realpath(np.__file__)))
    own = (os.path.join(home, "numpy") + os.sep, os.path.join(home, "numpy.libs") + os.sep)
    return [info["filepath"] for info in threadpool_info()
            if info.get("user_api") == "blas"
            and os.path.realpath(info["filepath"]).startswith(own)]


def _bind(library: Any, pattern: str, integer: Any, letter: str,
          scalar: Any) -> _Functions | None:
    names = [pattern.format(letter + name) for name in ("axpy", "gemm", "gemv")]
    found: list[Any] = [getattr(library, name, None) for name in names]
    if any(function is None for function in found):
        return None
    axpy, gemm, gemv = found
    axpby = getattr(library, pattern.format(letter + "axpby"), None)
    for function in (*found, axpby):
        if function is not None:
            function.restype = None
    return _Functions(axpy, gemm, gemv, integer, scalar, axpby)


def _probe(functions: _Functions, dtype: np.dtype) -> bool:
    """Whether axpy, gemm and gemv give known answers (small integers: exact in any order)
    and leave the entries around their outputs alone; axpby, optional, is dropped if it
    does not."""
    try:
        x, y = np.arange(1, 8, dtype=dtype), np.full(7, 10.0, dtype=dtype)
        _Axpy(functions, x[1:6], y[1:6])(-2.0)
        axpy_ok = np.array_equal(y, np.array([10, 6, 4, 2, 0, -2, 10], dtype=dtype))
        left = np.arange(12, dtype=dtype).reshape(4, 3) - 5
        right = np.arange(8, dtype=dtype).reshape(4, 2) - 3
        out = np.full((5, 2), 7.0, dtype=dtype)
        _Product(functions, out[1:4], left, right)(-1.0)
        expected = np.full((5, 2), 7.0, dtype=dtype)
        expected[1:4] -= left.T @ right
        weights = np.arange(1, 5, dtype=dtype)
        vector = np.full(4, 7.0, dtype=dtype)
        _Product(functions, vector[1:3], right, weights)(2.0)
        expected_vector = np.full(4, 7.0, dtype=dtype)
        expected_vector[1:3] += 2 * (right.T @ weights)
        if functions.axpby is not None:  # optional: dropped if it does not compute α·x + β·y
            y = np.full(7, 10.0, dtype=dtype)
            _Axpby(functions, x[1:6], y[1:6])(2.0, 0.5)
            if not np.array_equal(y, np.array([10, 9, 11, 13, 15, 17, 10], dtype=dtype)):
                functions.axpby = None
        return bool(axpy_ok and np.array_equal(out, expected)
                    and np.array_equal(vector, expected_vector))
    except Exception:  # pragma: no cover - a library that cannot be called is not used
        return False


def _numpy_blas(dtype: np.dtype) -> _Functions | None:
    """NumPy's own BLAS functions for ``dtype``, or None where they cannot be reached."""
    if dtype in _NUMPY_BLAS:
        return _NUMPY_BLAS[dtype]
    _NUMPY_BLAS[dtype] = None
    letter = "s" if dtype == np.float32 else "d"
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    for path in _numpy_blas_paths():
        try:
            library = ctypes.CDLL(path)
        except OSError:  # pragma: no cover
            continue
        for pattern, integer in _SYMBOLS:
            functions = _bind(library, pattern, integer, letter, scalar)
            if functions is not None and _probe(functions, dtype):
                _NUMPY_BLAS[dtype] = functions
                return functions
    return None


def _scipy_blas_axpy(dtype: np.dtype) -> Callable[..., Any] | None:
    """SciPy's ``saxpy``/``daxpy`` for ``dtype`` if it updates y in place, else None."""
    if dtype not in _SCIPY_AXPY:
        _SCIPY_AXPY[dtype] = None
        try:
            from scipy.linalg import blas
        except ImportError:  # pragma: no cover - scipy comes with scikit-learn
            return None
        axpy = blas.saxpy if dtype == np.float32 else blas.daxpy
        probe = np.zeros(4, dtype=dtype)
        if axpy(np.ones_like(probe), probe, a=1.0) is probe and bool(probe.all()):
            _SCIPY_AXPY[dtype] = axpy
    return _SCIPY_AXPY[dtype]


def backend(dtype: Any = np.float32) -> str:
    """What performs SGD's update for arrays of ``dtype``: ``"numpy-blas"`` (NumPy's BLAS,
    on its threads: axpy and accumulating products), ``"scipy-blas"`` (SciPy's axpy, on
    chunks) or ``"numpy"`` (two passes)."""
    resolved = np.dtype(dtype)
    if resolved in (np.float32, np.float64) and _numpy_blas(resolved) is not None:
        return "numpy-blas"
    return "scipy-blas" if _scipy_blas_axpy(resolved) is not None else "numpy"


# ---- kernels for fixed arrays: pointers and sizes read once ---------------------------------
def _dropped() -> None:
    return None


class _Kernel:
    """A kernel holds raw pointers to its arrays: a copy (deepcopy, pickle) of whatever holds
    it gets None instead — the optimizer states that cache kernels rebuild them on demand."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any]) -> None:
        return None

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _dropped, ()


class _Axpy(_Kernel):
    """``y ← y + α·x`` in place, one call to NumPy's BLAS."""

    __slots__ = ("function", "scalar", "arrays", "size", "tail")

    def __init__(self, functions: _Functions, x: np.ndarray, y: np.ndarray) -> None:
        self.function, self.scalar = functions.axpy, functions.scalar
        self.arrays = (x, y)  # kept: the pointers refer to them
        one = functions.integer(1)
        self.size = functions.integer(y.size)
        self.tail = (ctypes.c_void_p(x.ctypes.data), one, ctypes.c_void_p(y.ctypes.data), one)

    def __call__(self, alpha: float) -> None:
        self.function(self.size, self.scalar(alpha), *self.tail)


class _Axpby(_Kernel):
    """``y ← α·x + β·y`` in place, one call to NumPy's BLAS (OpenBLAS' axpby)."""

    __slots__ = ("function", "scalar", "arrays", "size", "x", "y")

    def __init__(self, functions: _Functions, x: np.ndarray, y: np.ndarray) -> None:
        self.function, self.scalar = functions.axpby, functions.scalar
        self.arrays = (x, y)  # kept: the pointers refer to them
        one = functions.integer(1)
        self.size = functions.integer(y.size)
        self.x, self.y = (ctypes.c_void_p(x.ctypes.data), one), (ctypes.c_void_p(y.ctypes.data),
                                                                 one)

    def __call__(self, alpha: float, beta: float) -> None:
        self.function(self.size, self.scalar(alpha), *self.x, self.scalar(beta), *self.y)


class _ScipyChunkedAxpy(_Kernel):
    """``y ← y + α·x`` in place, SciPy's axpy on chunks (views made once)."""

    __slots__ = ("axpy", "chunks")

    def __init__(self, axpy: Callable[..., Any], x: np.ndarray, y: np.ndarray) -> None:
        self.axpy = axpy
        flat_x, flat_y = x.reshape(-1), y.reshape(-1)  # views: both are C-contiguous
        self.chunks = [(flat_x[start:start + _CHUNK], flat_y[start:start + _CHUNK])
                       for start in range(0, flat_y.size, _CHUNK)]

    def __call__(self, alpha: float) -> None:
        axpy = self.axpy
        for x, y in self.chunks:
            axpy(x, y, a=alpha)


class _Product(_Kernel):
    """``out ← out + α·leftᵀ·right`` (or ``+ α·left·right``) in place: gemm for a matrix
    ``out`` (its rows may be a row-slice of a larger array), gemv for a vector ``out`` and a
    vector ``right``."""

    __slots__ = ("function", "scalar", "head", "left", "tail", "arrays", "transpose_left")

    def __init__(self, functions: _Functions, out: np.ndarray, left: np.ndarray,
                 right: np.ndarray, transpose_left: bool = True) -> None:
        self.arrays = (out, left, right)  # kept: the pointers refer to them
        self.transpose_left = transpose_left
        self.scalar, rows, inner = functions.scalar, *left.shape
        pointer, enum, ints = ctypes.c_void_p, ctypes.c_int, functions.ints
        target = (functions.scalar(1.0), pointer(out.ctypes.data),
                  functions.integer(out.strides[0] // out.itemsize if out.ndim == 2 else 1))
        head: tuple[Any, ...]
        if out.ndim == 1:  # y (inner) ← α·Aᵀ·x + y
            self.function = functions.gemv
            head = (enum(_ROW_MAJOR), enum(_TRANS), *ints(rows, inner))
            tail = (*ints(inner), pointer(right.ctypes.data), *ints(1))
        else:
            self.function, columns = functions.gemm, out.shape[1]
            if transpose_left:  # C (inner × n) ← α·Aᵀ·B + C, A = left (rows × inner)
                head = (enum(_ROW_MAJOR), enum(_TRANS), enum(_NO_TRANS),
                        *ints(inner, columns, rows))
            else:  # C (rows × n) ← α·A·B + C, B = right (inner × n)
                head = (enum(_ROW_MAJOR), enum(_NO_TRANS), enum(_NO_TRANS),
                        *ints(rows, columns, inner))
            tail = (*ints(inner), pointer(right.ctypes.data), *ints(columns))
        self.head, self.tail = head, (*tail, *target)
        self.left = pointer(left.ctypes.data)

    def rebind(self, left: np.ndarray) -> bool:
        """Use ``left`` instead of the left factor (same shape, dtype, layout): a new batch
        view of the same data costs a pointer, not a new kernel. False if it does not fit."""
        old = self.arrays[1]
        if left.shape != old.shape or left.dtype != old.dtype or not left.flags.c_contiguous:
            return False
        self.arrays = (self.arrays[0], left, self.arrays[2])
        self.left = ctypes.c_void_p(left.ctypes.data)
        return True

    def __call__(self, alpha: float) -> None:
        self.function(*self.head, self.scalar(alpha), self.left, *self.tail)


def _contiguous(*arrays: np.ndarray) -> bool:
    return all(a.flags.c_contiguous for a in arrays)


def _axpy_kernel(x: np.ndarray, y: np.ndarray) -> Callable[[float], None] | None:
    """The kernel for ``y += α·x``, or None where NumPy must do it (small, mixed dtypes,
    non-contiguous or read-only arrays, no BLAS reachable)."""
    if (y.size < _BLAS_MIN or x.dtype != y.dtype or x.shape != y.shape
            or y.dtype not in (np.float32, np.float64)
            or not (_contiguous(x, y) and y.flags.writeable)):
        return None
    functions = _numpy_blas(y.dtype)
    if functions is not None:
        return _Axpy(functions, x, y)
    axpy = _scipy_blas_axpy(y.dtype)
    return None if axpy is None else _ScipyChunkedAxpy(axpy, x, y)


def product_kernel(out: np.ndarray, left: np.ndarray, right: np.ndarray,
                   transpose_left: bool = True) -> _Product | None:
    """A kernel ``k(α)``: ``out ← out + α·leftᵀ·right`` in place by one BLAS call, for
    ``left`` (N × m) and ``right`` (N × n) or (N,), ``out`` (m × n) or (m,); with
    ``transpose_left=False``, ``out ← out + α·left·right`` for ``left`` (N × m), ``right``
    (m × n), ``out`` (N × n). None where it cannot be done so (dtypes, layout, no NumPy BLAS):
    then compute the product with NumPy instead."""
    if transpose_left:
        fits = (right.shape[:1] == left.shape[:1] and out.ndim in (1, 2)
                and out.shape == (left.shape[1], *right.shape[1:]))
    else:
        fits = (right.ndim == 2 and right.shape[0] == left.shape[-1]
                and out.shape == (left.shape[0], right.shape[1]))
    if (not fits or left.ndim != 2 or 0 in left.shape or 0 in out.shape
            or out.dtype not in (np.float32, np.float64)
            or any(a.dtype != out.dtype for a in (left, right))
            or not (_contiguous(out, left, right) and out.flags.writeable)):
        return None
    functions = _numpy_blas(out.dtype)
    return None if functions is None else _Product(functions, out, left, right, transpose_left)


def reuse_product(kernel: _Product | None, out: np.ndarray, left: np.ndarray,
                  right: np.ndarray, transpose_left: bool = True) -> _Product | None:
    """:func:`product_kernel` for these arrays, reusing ``kernel`` when it was made for the
    same ``out`` and ``right``: a new ``left`` of the same shape (the next batch's view)
    only moves its pointer."""
    if (kernel is not None and kernel.arrays[0] is out and kernel.arrays[2] is right
            and kernel.transpose_left == transpose_left
            and (kernel.arrays[1] is left or kernel.rebind(left))):
        return kernel
    return product_kernel(out, left, right, transpose_left)


def _cached_kernel(state: dict[str, Any], key: str, y: np.ndarray, x: np.ndarray,
                   build: Callable[[np.ndarray, np.ndarray], Any]) -> Any:
    """``build(x, y)``, kept in ``state[key]`` while it is asked for the same two arrays."""
    cached = state.get(key)  # (y, x, kernel or None)
    if cached is None or cached[0] is not y or cached[1] is not x:
        cached = state[key] = (y, x, build(x, y))
    return cached[2]


def _axpby_kernel(x: np.ndarray, y: np.ndarray) -> _Axpby | None:
    """The kernel for ``y ← α·x + β·y``, or None where NumPy must do it."""
    functions = _numpy_blas(y.dtype) if _axpy_kernel(x, y) is not None else None
    return None if functions is None or functions.axpby is None else _Axpby(functions, x, y)


def subtract_scaled(param: np.ndarray, d: np.ndarray, rate: float,
                     state: dict[str, Any]) -> None:
    """``param ← param − rate·d`` in place: BLAS axpy where it applies, else two NumPy passes
    through the scratch buffer (``η·d``, then the subtraction)."""
    kernel = _cached_kernel(state, "axpy", param, d, _axpy_kernel)
    if kernel is not None:
        kernel(-rate)
        return
    scratch = state["scratch"]
    np.multiply(d, rate, out=scratch)
    param -= scratch


def scale_add(y: np.ndarray, x: np.ndarray, alpha: float, beta: float,
              state: dict[str, Any], key: str = "axpby") -> None:
    """``y ← α·x + β·y`` in place (a running average's update): one BLAS axpby pass where
    NumPy's BLAS has it, else NumPy's passes through ``state["scratch"]`` (``x`` may be that
    scratch array: it is then overwritten). The kernel is kept in ``state[key]``."""
    kernel = _cached_kernel(state, key, y, x, _axpby_kernel)
    if kernel is not None:
        kernel(alpha, beta)
        return
    y *= beta
    if alpha == 1:
        y += x
    else:
        np.multiply(x, alpha, out=state["scratch"])
        y += state["scratch"]
