"""Storage backends behind one small interface (see base.Storage)."""

from pgharbor.storage.base import ObjectInfo, Storage, check_key
from pgharbor.storage.factory import open_storage

__all__ = ["ObjectInfo", "Storage", "check_key", "open_storage"]
