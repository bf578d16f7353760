"""Key naming on a target. Each cluster owns one folder below the target root:

pgharbor-target.json                        which target this storage is (written at target add)
<cluster>/cluster.json                      descriptor (identity, written at placement)
<cluster>/wal/<TTTTTTTTXXXXXXXX>/<name>      WAL segments, .partial, .backup
<cluster>/wal/history/<TTTTTTTT>.history    timeline history files
<cluster>/backups/<id>/...                  a backup (see backup.manifest, backup.chunkmap)
chunks/...                                  the shared chunk store (see backup.chunks)
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgharbor.domain.wal import WalName


TARGET_MARKER = "pgharbor-target.json"


def descriptor_key(cluster: str) -> str:
    return f"{cluster}/cluster.json"


def wal_prefix(cluster: str) -> str:
    return f"{cluster}/wal/"


def wal_key(cluster: str, wal: WalName) -> str:
    return f"{cluster}/wal/{wal.group}/{wal.name}"
