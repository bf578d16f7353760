"""Every key on a target, named here and nowhere else:

pgharbor-target.json                        which target this storage is (written at target add)
<cluster>/cluster.json                      the cluster's claim of its folder (written at placement)
<cluster>/wal/<TTTTTTTTXXXXXXXX>/<name>      WAL segments, .partial, .backup
<cluster>/wal/history/<TTTTTTTT>.history    timeline history files
<cluster>/quarantine/<name>.<when>.<pid>     a corrupt WAL copy, set aside when it was replaced
<cluster>/backups/<id>/manifest             a backup (see backup.manifest)
<cluster>/backups/<id>/chunkmap/<NNNNNN>    its chunk ids (see backup.chunkmap)
chunks/packs/<id[:2]>/<id>                  the shared chunk store (see backup.chunks)
chunks/index/<id>                           a pack's index
chunks/quarantine/<id>                      an index that could not be read, set aside
chunks/partitions/<cluster>/<id>            a pack the cluster's backups wrote or rely on
chunks/refs/<cluster>/<backup>[.running]    which backups use the store
chunks/leases/<kind>.<host>-<pid>-<random>  who relies on the store now (see backup.lease)
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pgharbor.domain.wal import WalName


TARGET_MARKER = "pgharbor-target.json"
PACKS = "chunks/packs/"
INDEXES = "chunks/index/"
QUARANTINE = "chunks/quarantine/"
REFS = "chunks/refs/"
LEASES = "chunks/leases/"
PARTITIONS = "chunks/partitions/"


def descriptor_key(cluster: str) -> str:
    return f"{cluster}/cluster.json"


def wal_prefix(cluster: str) -> str:
    return f"{cluster}/wal/"


def history_prefix(cluster: str) -> str:
    return f"{cluster}/wal/history/"


def wal_key(cluster: str, wal: WalName) -> str:
    return f"{cluster}/wal/{wal.group}/{wal.name}"


def quarantined_wal_key(cluster: str, name: str, stamp: str, pid: int) -> str:
    return f"{cluster}/quarantine/{name}.{stamp}.{pid}"


def backup_prefix(cluster: str, backup_id: str) -> str:
    """Everything of one backup on a target (manifest and chunk map) is below this."""
    return f"{cluster}/backups/{backup_id}/"


def manifest_key(cluster: str, backup_id: str) -> str:
    return f"{backup_prefix(cluster, backup_id)}manifest"


def part_key(cluster: str, backup_id: str, n: int) -> str:
    """Part ``n`` of a backup's chunk map."""
    return f"{backup_prefix(cluster, backup_id)}chunkmap/{n:06d}"


def pack_key(pack: str) -> str:
    return f"{PACKS}{pack[:2]}/{pack}"


def index_key(pack: str) -> str:
    return f"{INDEXES}{pack}"


def quarantine_key(pack: str) -> str:
    return f"{QUARANTINE}{pack}"


def partition_prefix(cluster: str) -> str:
    """The markers of the packs a cluster's backups load the indexes of (backup.chunks)."""
    return f"{PARTITIONS}{cluster}/"


def partition_key(cluster: str, pack: str) -> str:
    return f"{partition_prefix(cluster)}{pack}"


def ref_key(cluster: str, backup_id: str, running: bool = False) -> str:
    return f"{REFS}{cluster}/{backup_id}" + (".running" if running else "")


# Reading keys back (catalog rebuild): what a listed key is, or None.
def descriptor_cluster(key: str) -> str | None:
    """The cluster whose descriptor ``key`` is (``<cluster>/cluster.json``)."""
    cluster, slash, rest = key.partition("/")
    return cluster if slash and rest == "cluster.json" and cluster != "chunks" else None


def wal_name_of(cluster: str, key: str) -> str | None:
    """The file name of a WAL key of ``cluster`` (segment, .partial, .backup, .history)."""
    rest = key.removeprefix(wal_prefix(cluster))
    if rest == key or rest.count("/") != 1:
        return None
    return rest.partition("/")[2]


def manifest_backup(cluster: str, key: str) -> str | None:
    """The backup id of a manifest key of ``cluster``."""
    rest = key.removeprefix(f"{cluster}/backups/")
    backup_id, slash, tail = rest.partition("/")
    return backup_id if rest != key and slash and tail == "manifest" else None
