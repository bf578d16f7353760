"""The catalog schema, defined once (SQLAlchemy Core) for SQLite and PostgreSQL.

Alembic migrations in catalog/migrations build exactly this schema; a test compares
them. The hot path (catalog/lite.py) writes wal_copies with plain SQL and reads
clusters/placements/targets: keep those column names in step.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    true,
)

# The newest Alembic revision in catalog/migrations/versions (checked by a unit test).
SCHEMA_REVISION = "0010"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _times() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("modified_at", DateTime(timezone=True), nullable=False),
    ]


clusters = Table(
    "clusters",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("idc", String(128), nullable=False, server_default=""),
    Column("platform", String(128), nullable=False, server_default=""),
    Column("software", String(64), nullable=False, server_default="postgresql"),
    Column("version", String(64), nullable=False),
    Column("version_num", Integer, nullable=False),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("dsn", Text, nullable=False),
    Column("system_identifier", String(20), nullable=False),
    Column("wal_segment_size", BigInteger, nullable=False),
    Column("required_copies", Integer, nullable=False, server_default="1"),
    # async archiving: a resident pusher works ahead of archive_command
    Column("archive_async", Boolean, nullable=False, server_default=false()),
    Column("active", Boolean, nullable=False, server_default=true()),
    *_times(),
    UniqueConstraint("idc", "host", "port"),
)

targets = Table(
    "targets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("active", Boolean, nullable=False, server_default=true()),
    *_times(),
)

placements = Table(
    "placements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster_id", String(36), ForeignKey("clusters.id"), nullable=False),
    Column("target_id", String(36), ForeignKey("targets.id"), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("active", Boolean, nullable=False, server_default=true()),
    *_times(),
    UniqueConstraint("cluster_id", "target_id"),
)

wal_copies = Table(
    "wal_copies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster_id", String(36), ForeignKey("clusters.id"), nullable=False),
    Column("target_id", String(36), ForeignKey("targets.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("timeline", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("stored_size", BigInteger),
    Column("checksum", String(80), nullable=False),
    Column("archived_at", DateTime(timezone=True), nullable=False),
    # ok: durable on the target; failed: the attempt failed (detail says why)
    Column("status", String(16), nullable=False),
    Column("detail", Text),
    UniqueConstraint("cluster_id", "target_id", "name"),
    Index(None, "cluster_id", "name"),
)

backups = Table(
    "backups",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("cluster_id", String(36), ForeignKey("clusters.id"), nullable=False),
    # running: in progress (or died: see pid/host); ok: usable; failed: never usable;
    # expiring: an expire run is deleting it (never chosen by a restore); deleting: backup delete
    Column("status", String(16), nullable=False),
    Column("label", String(128), nullable=False),
    Column("timeline", Integer),
    Column("start_lsn", String(24)),
    Column("stop_lsn", String(24)),
    Column("start_time", DateTime(timezone=True), nullable=False),
    Column("stop_time", DateTime(timezone=True)),
    # xmin of a snapshot taken after the backup ended: xids below it are over
    Column("stop_xmin", BigInteger),
    Column("logical_bytes", BigInteger, nullable=False, server_default="0"),
    Column("stored_bytes", BigInteger, nullable=False, server_default="0"),
    Column("wal_start", String(24)),
    Column("wal_stop", String(24)),
    Column("pg_version_num", Integer),
    Column("host", String(255), nullable=False, server_default=""),
    Column("pid", Integer),
    Column("error", Text),
    *_times(),
    Index(None, "cluster_id", "status"),
)

backup_copies = Table(
    "backup_copies",
    metadata,
    Column("backup_id", String(40), ForeignKey("backups.id"), primary_key=True),
    Column("target_id", String(36), ForeignKey("targets.id"), primary_key=True),
    Column("stored_bytes", BigInteger, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),
)

# named restore points: made by pgharbor restore-point create, or found in archived WAL
restore_points = Table(
    "restore_points",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster_id", String(36), ForeignKey("clusters.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("lsn", String(24), nullable=False),  # the end of its WAL record
    Column("timeline", Integer, nullable=False),
    Column("time", DateTime(timezone=True)),  # known for created ones
    # created: by pgharbor; wal: found in the archived WAL (made with plain SQL)
    Column("source", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("cluster_id", "timeline", "lsn"),
    Index(None, "cluster_id", "name"),
)

# how far the archived WAL of each timeline has been scanned for restore points
wal_scans = Table(
    "wal_scans",
    metadata,
    Column("cluster_id", String(36), ForeignKey("clusters.id"), primary_key=True),
    Column("timeline", Integer, primary_key=True),
    Column("scanned_to", String(64), nullable=False),  # the last segment scanned
    Column("modified_at", DateTime(timezone=True), nullable=False),
)

# retention policy: the fleet default (scope "default") and per-cluster overrides (scope
# the cluster id); a NULL field falls back to the default row, then to no rule
retention_policies = Table(
    "retention_policies",
    metadata,
    Column("scope", String(36), primary_key=True),
    Column("cluster_id", String(36), ForeignKey("clusters.id")),
    Column("keep_last", Integer),
    Column("recovery_window_s", BigInteger),
    Column("min_backups", Integer),
    Column("modified_at", DateTime(timezone=True), nullable=False),
)

# pinned backups: kept by every expire run (until ``until``, when set)
backup_holds = Table(
    "backup_holds",
    metadata,
    Column("backup_id", String(40), ForeignKey("backups.id"), primary_key=True),
    Column("until", DateTime(timezone=True)),
    Column("reason", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# WAL gaps found by verify: runs of missing segments of one timeline (names compared only
# within it). pending: may still be in flight; lost: confirmed absent on every placement
# after the grace; resolved: the segments are back, or no longer expected
wal_gaps = Table(
    "wal_gaps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster_id", String(36), ForeignKey("clusters.id"), nullable=False),
    Column("timeline", Integer, nullable=False),
    Column("first_segment", String(24), nullable=False),
    Column("last_segment", String(24), nullable=False),
    Column("segments", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("lost_at", DateTime(timezone=True)),
    Column("resolved_at", DateTime(timezone=True)),
    Column("acked_at", DateTime(timezone=True)),
    Column("acked_by", String(128)),
    Column("ack_reason", Text),
    Index(None, "cluster_id", "state"),
)

# where the content verification of each cluster's archive got to (a slice per run)
verify_state = Table(
    "verify_state",
    metadata,
    Column("cluster_id", String(36), ForeignKey("clusters.id"), primary_key=True),
    Column("cursor", String(64), nullable=False, server_default=""),  # last WAL name read
    Column("backup_cursor", String(40), nullable=False, server_default=""),  # last backup
    Column("last_run_at", DateTime(timezone=True)),
)

# schedules: the fleet default (scope "default") and per-cluster overrides (scope the
# cluster id) of each kind; an override with enabled false turns the kind off there
schedules = Table(
    "schedules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(36), nullable=False),
    Column("cluster_id", String(36), ForeignKey("clusters.id")),
    Column("kind", String(16), nullable=False),  # backup, expire, verify, drill
    Column("cron", String(128), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("enabled", Boolean, nullable=False, server_default=true()),
    *_times(),
    UniqueConstraint("scope", "kind"),
)

# jobs: every run, scheduled or requested. One row per (schedule, cluster, fire time)
# makes each fire exactly one job however many nodes tick. ``token`` is the fencing
# token: raised by every claim; a result is only written under the token it was run with.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("cluster_id", String(36), ForeignKey("clusters.id"), nullable=False),
    Column("schedule_id", Integer, ForeignKey("schedules.id")),
    Column("fire_time", DateTime(timezone=True)),
    Column("reason", String(16), nullable=False),  # scheduled, requested, retry
    # queued, running, done, failed, skipped, missed
    Column("state", String(16), nullable=False),
    Column("node", String(128)),
    Column("lease_until", DateTime(timezone=True)),
    Column("token", BigInteger, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("queued_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("result", Text),  # JSON
    Column("error", Text),
    UniqueConstraint("schedule_id", "cluster_id", "fire_time"),
    Index(None, "state", "queued_at"),
    Index(None, "cluster_id", "kind", "state"),
)

# scheduler nodes (pgharbor serve): liveness
nodes = Table(
    "nodes",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
)

# events: state changes worth a human's attention, written once each (monitor/events.py)
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("cluster_id", String(36), ForeignKey("clusters.id")),
    Column("source", String(16), nullable=False),  # check, job
    Column("kind", String(32), nullable=False),  # the check service, or the job kind
    Column("state", String(16), nullable=False),  # OK..UNKNOWN, failed, refused
    Column("previous", String(16)),
    Column("message", Text, nullable=False),
    Column("actor", String(160)),  # who did it (an action of the API, the dashboard, the CLI)
    Index(None, "at"),
    Index(None, "cluster_id", "at"),
)

# the last state of each (cluster, check service): an event is written when it changes
check_states = Table(
    "check_states",
    metadata,
    Column("cluster_id", String(36), ForeignKey("clusters.id"), primary_key=True),
    Column("service", String(32), primary_key=True),
    Column("state", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("checked_at", DateTime(timezone=True), nullable=False),
)

# restore drills: a backup restored into a scratch folder, started, recovered and checked.
# running: in progress (its process: host and pid, heartbeat modified_at; one that is
# provably gone is marked failed by the next reader); ok; failed. ``checks``: JSON list of
# {name, ok, detail}. A backup's "drilled at" is its newest ok drill.
drills = Table(
    "drills",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster_id", String(36), ForeignKey("clusters.id"), nullable=False),
    Column("backup_id", String(40), nullable=False),  # no FK: a drill outlives its backup
    Column("target", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("restore_s", Float),
    Column("recovery_s", Float),
    Column("total_s", Float),
    Column("wal_segments", Integer),
    Column("bytes_restored", BigInteger),
    Column("reached_lsn", String(24)),
    Column("checks", Text),
    Column("error", Text),
    Column("scratch", Text),  # kept for a human (failure or --keep), else NULL
    Column("modified_at", DateTime(timezone=True), nullable=False),
    Index(None, "cluster_id", "started_at"),
    Index(None, "status"),
)

# the web front door (web/): API tokens, local users, browser sessions, sign-in attempts.
# No secret is stored in clear: a token and a password as argon2id hashes, a session id
# as its SHA-256 (the cookie carries the id, signed).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),  # the token's public lookup part
    Column("name", String(128), nullable=False, unique=True),
    Column("scope", String(16), nullable=False),  # read, operate, admin
    Column("secret_hash", Text, nullable=False),  # argon2id of the whole token
    Column("created_by", String(160), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
)

web_users = Table(
    "web_users",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("role", String(16), nullable=False),  # read, operate, admin
    Column("password_hash", Text, nullable=False),  # argon2id
    *_times(),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),  # SHA-256 of the session id
    Column("user_name", String(128), ForeignKey("web_users.name"), nullable=False),
    Column("client", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index(None, "user_name"),
    Index(None, "expires_at"),
)

signin_attempts = Table(
    "signin_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("user_name", String(128), nullable=False),
    Column("client", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index(None, "user_name", "at"),
    Index(None, "client", "at"),
)
