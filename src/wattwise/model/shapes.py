"""BUTTER network shapes, parameter counts (NTP) and the width search.

Pure functions, no I/O. Widths include the output layer; ``depth == len(widths)``.

Example:
    >>> from wattwise.model.shapes import network_widths, ntp
    >>> w = network_widths("rectangle", 5, 65536, n_in=26, n_out=11)
    >>> ntp(26, w)
    65435
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from wattwise.errors import ConfigurationError

__all__ = ["SHAPES", "network_widths", "ntp", "shape_widths", "size_error"]

SHAPES: tuple[str, ...] = (
    "rectangle",
    "rectangle_residual",
    "trapezoid",
    "exponential",
    "wide_first_2x",
    "wide_first_4x",
    "wide_first_8x",
    "wide_first_16x",
)


def ntp(n_in: int, widths: Sequence[int]) -> int:
    """Number of trainable parameters of a Dense stack with biases.

    Args:
        n_in: input width (features).
        widths: layer widths, output layer included.

    Returns:
        ``sum((w[l-1] + 1) * w[l])`` with ``w[0] = n_in``.
    """
    total = 0
    prev = int(n_in)
    for w in widths:
        total += (prev + 1) * int(w)
        prev = int(w)
    return total


def _check_shape_args(shape: str, depth: int, n_out: int) -> None:
    if shape not in SHAPES:
        raise ConfigurationError(
            f"shape={shape!r} is not a BUTTER shape; expected one of {', '.join(SHAPES)}"
        )
    if not isinstance(depth, int) or depth < 2:
        raise ConfigurationError(f"depth={depth!r} must be an int >= 2 (layers incl. output)")
    if not isinstance(n_out, int) or n_out < 1:
        raise ConfigurationError(f"n_out={n_out!r} must be a positive int (output width)")


def shape_widths(shape: str, depth: int, w0: int, n_out: int) -> list[int]:
    """Widths of a BUTTER network of ``shape`` with first-layer width ``w0``.

    Args:
        shape: one of :data:`SHAPES`.
        depth: number of Dense layers, output included (>= 2).
        w0: width of the first hidden layer.
        n_out: output width.

    Returns:
        The list of ``depth`` widths. Depth 2 gives ``[w0, n_out]`` for every shape.
    """
    _check_shape_args(shape, depth, n_out)
    if depth == 2:
        return [int(w0), int(n_out)]
    if shape in ("rectangle", "rectangle_residual"):
        return [int(w0)] * (depth - 1) + [int(n_out)]
    if shape == "trapezoid":
        beta = (w0 - n_out) / (depth - 1)
        return [round(w0 - beta * k) for k in range(depth)]
    if shape == "exponential":
        beta = math.exp(math.log(n_out / w0) / (depth - 1))
        return [max(int(n_out), round(w0 * beta**k)) for k in range(depth)]
    m = int(shape[len("wide_first_") : -1])
    return [int(w0)] + [max(1, round(w0 / m))] * (depth - 2) + [int(n_out)]


def network_widths(shape: str, depth: int, size: int, n_in: int, n_out: int) -> list[int]:
    """The BUTTER width search: widths whose NTP is closest to ``size``.

    Integer bisection on ``w0`` in ``[1, 2**30)``; the evaluated candidate with the smallest
    ``|NTP - size|`` wins (first wins ties). BUTTER rejected networks with
    ``|NTP - size| / size > 0.2``; see :func:`size_error`.

    Args:
        shape: one of :data:`SHAPES`.
        depth: layers incl. output (>= 2).
        size: target number of trainable parameters.
        n_in: input width.
        n_out: output width.

    Returns:
        The widths (output included).
    """
    _check_shape_args(shape, depth, n_out)
    if not isinstance(size, int) or size < 1:
        raise ConfigurationError(f"size={size!r} must be a positive int (target parameter count)")
    if not isinstance(n_in, int) or n_in < 1:
        raise ConfigurationError(f"n_in={n_in!r} must be a positive int (input width)")
    lo, hi = 1, 2**30
    best: list[int] | None = None
    best_err = -1
    while lo < hi:
        c = (lo + hi) // 2
        widths = shape_widths(shape, depth, c, n_out)
        p = ntp(n_in, widths)
        err = abs(p - size)
        if best is None or err < best_err:
            best, best_err = widths, err
        if p < size:
            lo = c + 1
        elif p > size:
            hi = c
        else:
            break
    assert best is not None
    return best


def size_error(shape: str, depth: int, size: int, n_in: int, n_out: int) -> float:
    """Relative error ``|NTP - size| / size`` of the searched network (BUTTER kept <= 0.2)."""
    return abs(ntp(n_in, network_widths(shape, depth, size, n_in, n_out)) - size) / size
