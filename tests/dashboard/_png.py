"""Just enough PNG decoding to count a screenshot's drawn pixels (no imaging library needed).

Reads the 8-bit, non-interlaced RGB and RGBA images Chromium writes and undoes
the per-row filters of the PNG specification.
"""

from __future__ import annotations

import struct
import zlib

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {2: 3, 6: 4}  # colour type -> channels: RGB, RGBA


def pixels(png: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """Width, height and every pixel's RGB(A) tuple, row by row."""
    assert png.startswith(_SIGNATURE), "not a PNG"
    position, data, header = len(_SIGNATURE), b"", None
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        body = png[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            data += body
    assert header is not None, "no IHDR chunk"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in _CHANNELS and interlace == 0, f"unsupported PNG {header}"
    channels = _CHANNELS[colour]
    raw = zlib.decompress(data)
    stride = width * channels
    rows: list[bytearray] = []
    previous = bytearray(stride)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            line[i] = (line[i] + _predict(kind, left, up, corner)) & 0xFF
        rows.append(line)
        previous = line
    found = [tuple(line[x * channels : x * channels + 3]) for line in rows for x in range(width)]
    return width, height, found


def _predict(kind: int, left: int, up: int, corner: int) -> int:
    if kind == 0:
        return 0
    if kind == 1:
        return left
    if kind == 2:
        return up
    if kind == 3:
        return (left + up) // 2
    guess = left + up - corner  # Paeth
    by_left, by_up, by_corner = abs(guess - left), abs(guess - up), abs(guess - corner)
    if by_left <= by_up and by_left <= by_corner:
        return left
    return up if by_up <= by_corner else corner


def coloured(png: bytes, *, tolerance: int = 40) -> int:
    """How many pixels are clearly coloured (a channel spread above ``tolerance``: not grey/white).

    Text and grid lines are grey; the chart's bars are green, red and blue, so
    this counts the bars (and the legend's swatches) alone.
    """
    _, _, found = pixels(png)
    return sum(1 for pixel in found if max(pixel) - min(pixel) > tolerance)
