"""The FAISS index types a gallery can use, named without importing FAISS.

:mod:`reid.index.faiss_index` builds them; the config, ``tools/build_index.py`` and
``bench/index_speed.py`` offer this list, and must be able to do so before FAISS is loaded.
"""

from __future__ import annotations

#: Exact search first: it is the default and the reference the approximate ones are measured by.
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivfpq")
