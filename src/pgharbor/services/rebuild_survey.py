"""Catalog rebuild, first step: what the targets say the fleet is (services.rebuild).

Each URL's marker names its target (id and name); each cluster folder's descriptor
(services.descriptors) names the cluster and the target it was claimed through. Nothing
is written here: every refusal (a URL that is not a pgharbor target, two URLs for one
target or one name, descriptors that disagree on a cluster's identity) comes before the
catalog is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pgharbor.errors import Conflict, PgharborError, UsageError
from pgharbor.model import Cluster
from pgharbor.services.descriptors import IDENTITY, attributes
from pgharbor.services.rules import check_name
from pgharbor.settings import Settings
from pgharbor.storage.base import Storage
from pgharbor.storage.claim import CLUSTER_FORMAT, TARGET_FORMAT, read_json
from pgharbor.storage.factory import open_storage, shown_url, validate_url
from pgharbor.storage.layout import TARGET_MARKER, descriptor_cluster


@dataclass
class FoundTarget:
    url: str
    id: str
    name: str
    priority: int  # its position in the list of URLs, from 1
    storage: Storage
    descriptors: dict[str, dict[str, Any]] = field(default_factory=dict)  # cluster -> doc


@dataclass
class FoundCluster:
    cluster: Cluster  # without a DSN
    targets: list[FoundTarget]  # in priority order


@dataclass
class Survey:
    targets: list[FoundTarget]
    clusters: list[FoundCluster]
    problems: list[str]  # descriptors that were skipped, and why

    def close(self) -> None:
        for t in self.targets:
            t.storage.close()


def _marker(storage: Storage, url: str) -> tuple[str, str]:
    doc = read_json(storage, TARGET_MARKER)
    if doc is None:
        raise UsageError(
            f"{shown_url(url)} is not a pgharbor target: it has no {TARGET_MARKER}",
            hint="give the URLs of the targets the lost catalog knew",
        )
    if doc.get("format") != TARGET_FORMAT or not all(
        isinstance(doc.get(k), str) and doc.get(k) for k in ("id", "name")
    ):
        raise Conflict(f"{shown_url(url)}: {TARGET_MARKER} is not a pgharbor target marker")
    return str(doc["id"]), check_name("target", str(doc["name"]))


def open_target(settings: Settings, url: str, priority: int) -> FoundTarget:
    """The target at ``url``, named by its marker. Its options in the config file are
    keyed by that name, which is not known yet: the marker is read with the default
    options, then with each ``[targets.NAME]`` table whose marker says NAME."""
    validate_url(url)
    first: PgharborError | None = None
    for name in [None, *sorted(settings.targets)]:
        storage = None
        try:
            storage = open_storage(url, settings.target_options(name or ""))
            target_id, found = _marker(storage, url)
        except PgharborError as exc:
            first = first or exc
            if storage is not None:
                storage.close()
            continue
        if name is not None and found != name:
            storage.close()
            continue
        if name is None and found in settings.targets:  # reopened with its own options
            storage.close()
            storage = open_storage(url, settings.target_options(found))
        return FoundTarget(url, target_id, found, priority, storage)
    assert first is not None
    raise first


def _check_distinct(targets: list[FoundTarget]) -> None:
    for i, t in enumerate(targets):
        for u in targets[:i]:
            if u.id == t.id:
                raise Conflict(
                    f"{shown_url(u.url)} and {shown_url(t.url)} are the same target "
                    f"({u.name}, id {t.id}): give each target once"
                )
            if u.name == t.name:
                raise Conflict(
                    f"{shown_url(u.url)} and {shown_url(t.url)} are two targets named "
                    f"{t.name!r} (ids {u.id} and {t.id}): a catalog holds one of them",
                    hint="rebuild from the targets of one fleet",
                )


def _descriptor_problem(t: FoundTarget, cluster: str, doc: dict[str, Any]) -> str | None:
    """Why a descriptor is not used, or None."""
    where = f"{cluster}/cluster.json on target {t.name}"
    if doc.get("format") != CLUSTER_FORMAT:
        return f"{where}: unknown format {doc.get('format')!r}"
    if doc.get("name") != cluster:
        return f"{where}: names cluster {doc.get('name')!r}"
    if not all(isinstance(doc.get(k), str) and doc[k] for k in IDENTITY[:3]):
        return f"{where}: no cluster id, name or system identifier"
    if type(doc.get("wal_segment_size")) is not int or doc["wal_segment_size"] <= 0:
        return f"{where}: bad WAL segment size {doc.get('wal_segment_size')!r}"
    if doc.get("target_id") not in (None, t.id):
        return (
            f"{where}: claimed through another target (id {doc['target_id']}): the same "
            "storage under two target names; skipped"
        )
    return None


def read_descriptors(t: FoundTarget, problems: list[str]) -> None:
    """The target's valid cluster descriptors; the others are skipped and reported."""
    for obj in t.storage.list(""):
        cluster = descriptor_cluster(obj.key)
        if cluster is None:
            continue
        try:
            check_name("cluster", cluster)
            doc = read_json(t.storage, obj.key)
        except PgharborError as exc:
            problems.append(f"{obj.key} on target {t.name}: {exc}")
            continue
        if doc is None:
            continue  # removed meanwhile
        why = _descriptor_problem(t, cluster, doc)
        if why is None:
            t.descriptors[cluster] = doc
        else:
            problems.append(why)


def _merge(name: str, found: list[tuple[FoundTarget, dict[str, Any]]]) -> FoundCluster:
    """One cluster from its descriptors on several targets: the identity must agree;
    the attributes come from the descriptor written last."""
    t0, d0 = found[0]
    for t, d in found[1:]:
        for k in IDENTITY:
            if str(d.get(k)) != str(d0.get(k)):
                raise Conflict(
                    f"cluster {name!r}: its descriptors on targets {t0.name} and {t.name} "
                    f"disagree ({k} {d0.get(k)} and {d.get(k)}): two clusters under one "
                    "name; rebuild from the targets of one of them"
                )
    _, newest = max(found, key=lambda td: str(td[1].get("written_at") or ""))
    cluster = Cluster(
        id=str(d0["cluster_id"]),
        name=name,
        system_identifier=str(d0["system_identifier"]),
        wal_segment_size=int(d0["wal_segment_size"]),
        **attributes(newest),
    )
    return FoundCluster(cluster, [t for t, _ in found])


def survey(settings: Settings, urls: list[str]) -> Survey:
    """Open every URL in order and read what it holds; refusals raise before anything
    is written (and close what was opened)."""
    if not urls:
        raise UsageError("give at least one --target URL")
    targets: list[FoundTarget] = []
    try:
        for i, url in enumerate(urls, 1):
            targets.append(open_target(settings, url, i))
        _check_distinct(targets)
        problems: list[str] = []
        by_name: dict[str, list[tuple[FoundTarget, dict[str, Any]]]] = {}
        for t in targets:
            read_descriptors(t, problems)
            for name, doc in t.descriptors.items():
                by_name.setdefault(name, []).append((t, doc))
        clusters = [_merge(name, found) for name, found in sorted(by_name.items())]
        ids: dict[str, str] = {}
        for fc in clusters:
            other = ids.setdefault(fc.cluster.id, fc.cluster.name)
            if other != fc.cluster.name:
                raise Conflict(
                    f"clusters {other!r} and {fc.cluster.name!r} have the same id "
                    f"{fc.cluster.id} in their descriptors"
                )
    except BaseException:
        for t in targets:
            t.storage.close()
        raise
    return Survey(targets, clusters, problems)
