"""How many bytes encproxy moves at a time (DESIGN.md §5).

Reading, encrypting and sending about 1 MiB per step is where Python's per-call
costs stop mattering: 64 KiB steps ran at a fifth of the speed, and larger ones
gained nothing measurable.  Every layer that streams bodies (the file store,
the S3 backend's client, the encryption layer) moves pieces of this size.
"""
from __future__ import annotations

PIECE = 1 << 20
