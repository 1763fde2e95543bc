"""The frame of the gateway's messages to its audit writer process (sink.py says what
they hold): a 4-byte big-endian length, then that many bytes of JSON."""

from __future__ import annotations

import struct

FRAME = struct.Struct(">I")
