"""The store: the run index (SQLite), content-addressed blobs, and the queries over them."""

from florc.store.index import CheckpointRow, CorruptBlob, Store

__all__ = ["CheckpointRow", "CorruptBlob", "Store"]
