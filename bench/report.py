"""The results as one Markdown table of pgharbor / pgBackRest ratios, and a PNG chart
(the archive backlog under load, and bars of the timings and sizes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

NA = "n/a (not implemented)"
Row = tuple[str, str, str, str, str, str]


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e7 else f"{n / 1e6:,.1f} MB"


def _verdict(ratio: float, lower_is_better: bool, words: tuple[str, str]) -> str:
    """``1.9x slower`` / ``2.0x faster`` (words: the bad word, the good word)."""
    if ratio <= 0:
        return "—"
    worse = ratio > 1 if lower_is_better else ratio < 1
    factor = ratio if ratio >= 1 else 1 / ratio
    if abs(factor - 1) < 0.05:
        return "same"
    return f"{factor:.2f}× {words[0] if worse else words[1]}"  # noqa: RUF001


def _row(
    what: str,
    ph: float | None,
    br: float | None,
    fmt: Callable[[float], str],
    lower_is_better: bool,
    words: tuple[str, str] = ("slower", "faster"),
    others: str = "",
    na: str = NA,
) -> Row:
    if ph is None or br is None:
        return (
            what,
            fmt(ph) if ph is not None else na,
            fmt(br) if br is not None else na,
            others,
            "—",
            "—",
        )
    ratio = ph / br if br else 0.0
    return (what, fmt(ph), fmt(br), others, f"{ratio:.2f}", _verdict(ratio, lower_is_better, words))


def rows(r: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    ms: Callable[[float], str] = lambda v: f"{v:,.0f} ms"  # noqa: E731
    sec: Callable[[float], str] = lambda v: f"{v:,.1f} s"  # noqa: E731
    small = ("bigger", "smaller")
    if "archive_sync" in r:
        a = r["archive_sync"]
        n = a["segments"]
        for stat, label in (("median_ms", "median"), ("p95_ms", "p95")):
            out.append(
                _row(
                    f"archive_command per segment, sync, {label} ({n} segments)",
                    a["pgharbor"][stat],
                    a["pgbackrest"][stat],
                    ms,
                    True,
                    others=f"cp+fsync {ms(a['cp_fsync'][stat])} · "
                    f"zstd -1 {ms(a['zstd1_fsync'][stat])}",
                )
            )
        out.append(
            _row(
                f"archived WAL stored ({_mb(a['wal_bytes'])} of WAL)",
                a["pgharbor"]["repo_bytes"],
                a["pgbackrest"]["repo_bytes"],
                _mb,
                True,
                small,
                others=f"zstd -1 {_mb(a['zstd1_fsync']['repo_bytes'])}",
            )
        )
    if "fetch_sync" in r:
        f = r["fetch_sync"]
        out.append(
            _row(
                "restore_command per segment, sync, median",
                f["pgharbor"]["median_ms"],
                f["pgbackrest"]["median_ms"],
                ms,
                True,
            )
        )
    if "live_load" in r:
        out.extend(_live_rows(r["live_load"]))
    if "restore" in r:
        s = r["restore"]
        ph, br = s["pgharbor"], s["pgbackrest"]
        out.append(
            _row(
                f"replay {ph['replay_segments']} segments through restore_command "
                f"(pgharbor {ph['restore_command']}, pgBackRest async)",
                ph["replay_seconds"],
                br["replay_seconds"],
                sec,
                True,
            )
        )
    if "backup_full" in r:
        b = r["backup_full"]
        bb = b["pg_basebackup"]
        out.append(
            _row(
                f"full backup ({_mb(b['pgharbor']['logical_bytes'])}), MB/s",
                b["pgharbor"]["mb_per_s"],
                b["pgbackrest"]["mb_per_s"],
                lambda v: f"{v:,.0f} MB/s",
                False,
                others=f"pg_basebackup -Ft -Z zstd {bb['mb_per_s']:,.0f} MB/s",
            )
        )
        out.append(
            _row(
                "full backup, stored",
                b["pgharbor"]["stored_bytes"],
                b["pgbackrest"]["stored_bytes"],
                _mb,
                True,
                small,
                others=f"pg_basebackup {_mb(bb['stored_bytes'])}",
            )
        )
        out.append(
            _row(
                "full backup, peak RSS",
                b["pgharbor"]["maxrss_mib"],
                b["pgbackrest"]["maxrss_mib"],
                lambda v: f"{v:,.0f} MiB",
                True,
                small,
                others=f"pg_basebackup {bb['maxrss_mib']:,.0f} MiB",
            )
        )
    if "restore" in r:
        s = r["restore"]
        out.append(
            _row(
                "restore to a ready data directory",
                s["pgharbor"]["restore_seconds"],
                s["pgbackrest"]["restore_seconds"],
                sec,
                True,
            )
        )
    if "backup_second" in r:
        b = r["backup_second"]
        what = f"second backup after updating {b['changed_rows']:,} rows (10 %)"
        out.append(
            _row(
                f"{what}: added bytes (pgBackRest incr)",
                b["pgharbor"]["stored_bytes"],
                b["pgbackrest"]["stored_bytes"],
                _mb,
                True,
                small,
            )
        )
        out.append(
            _row(f"{what}: time", b["pgharbor"]["seconds"], b["pgbackrest"]["seconds"], sec, True)
        )
    if "backup_big" in r:
        g = r["backup_big"]
        out.append(
            (
                f"pgharbor backup of {_mb(g['database_bytes'])}: peak RSS, MB/s",
                f"{g['maxrss_mib']:,.0f} MiB, {g['mb_per_s']:,.0f} MB/s",
                "",
                "",
                "—",
                "—",
            )
        )
    return out


def _live_rows(live: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    br = live["pgbackrest_async"]
    pa = live["pgharbor_async"] if live["pgharbor_async"]["available"] else None
    ps = live["pgharbor_sync"]
    metrics: list[tuple[str, str, Callable[[float], str], bool, tuple[str, str]]] = [
        ("peak backlog (.ready)", "peak_backlog", lambda v: f"{v:,.0f} segments", True,
         ("longer", "shorter")),
        ("drain after the load", "drain_seconds", lambda v: f"{v:,.1f} s", True,
         ("slower", "faster")),
        ("pgbench tps meanwhile", "tps", lambda v: f"{v:,.0f} tps", False, ("lower", "higher")),
    ]  # fmt: skip
    for label, ph in (("async", pa), ("pgharbor sync vs pgBackRest async", ps)):
        head = f"archiving under {live['load_seconds']} s of pgbench, {label}"
        for what, key, fmt, lower, words in metrics:
            mine = ph[key] if ph else None
            out.append(_row(f"{head}: {what}", mine, br[key], fmt, lower, words))
    return out


def table(r: dict[str, Any]) -> str:
    head = (
        "measurement",
        "pgharbor",
        "pgBackRest",
        "others",
        "ratio pgharbor/pgBackRest",
        "pgharbor is",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(r)]
    size = r.get("size", {})
    m = r.get("machine", {})
    lines.append("")
    lines.append(
        f"{size.get('mode', '?')} mode: database {_mb(r.get('database_bytes', 0))}, "
        f"{r.get('corpus', {}).get('segments', '?')} WAL segments, "
        f"zstd level {r.get('zstd_level', 3)} for both; "
        f"{m.get('cpus')} cores, {m.get('ram_gib')} GiB RAM; total {r.get('total_seconds')} s"
    )
    return "\n".join(lines)


def chart(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    colors = {"pgharbor": "#1f77b4", "pgBackRest": "#d62728", "other": "#7f7f7f"}
    ax = axes[0][0]
    live = r.get("live_load", {})
    styles = {
        "pgharbor_sync": ("pgharbor (sync)", "#1f77b4", "--"),
        "pgharbor_async": ("pgharbor (async)", "#1f77b4", "-"),
        "pgbackrest_async": ("pgBackRest (async)", "#d62728", "-"),
    }
    for key, (label, color, style) in styles.items():
        run = live.get(key, {})
        for i, one in enumerate(run.get("rounds", [])):
            t, n = zip(*one["samples"], strict=True)
            name = f"{label}, {run['tps']:,.0f} tps" if i == 0 else None
            ax.plot(t, n, style, color=color, label=name, alpha=1.0 if i == 0 else 0.45)
    ax.axvline(live.get("load_seconds", 0), color="black", linestyle=":", alpha=0.5)
    rounds = len(live.get("pgbackrest_async", {}).get("rounds", []))
    ax.set_title(f"archive backlog, {live.get('load_seconds', '?')} s of pgbench "
                 f"({rounds} round{'s' if rounds > 1 else ''}, later ones paler)")  # fmt: skip
    ax.set_xlabel("seconds")
    ax.set_ylabel(".ready segments")
    ax.legend()
    _bars(
        axes[0][1],
        "per segment, sync (median ms)",
        {
            "archive_command": {
                k: r["archive_sync"][v]["median_ms"]
                for k, v in (
                    ("pgharbor", "pgharbor"),
                    ("pgBackRest", "pgbackrest"),
                    ("cp+fsync", "cp_fsync"),
                    ("zstd -1", "zstd1_fsync"),
                )
            },
            "restore_command": {
                k: r["fetch_sync"][v]["median_ms"]
                for k, v in (("pgharbor", "pgharbor"), ("pgBackRest", "pgbackrest"))
            },
        }
        if "archive_sync" in r and "fetch_sync" in r
        else {},
        colors,
    )
    groups: dict[str, dict[str, float]] = {}
    if "backup_full" in r:
        b = r["backup_full"]
        groups["full backup"] = {
            "pgharbor": b["pgharbor"]["seconds"],
            "pgBackRest": b["pgbackrest"]["seconds"],
            "pg_basebackup": b["pg_basebackup"]["seconds"],
        }
    if "backup_second" in r:
        b = r["backup_second"]
        groups["2nd backup"] = {
            "pgharbor": b["pgharbor"]["seconds"],
            "pgBackRest": b["pgbackrest"]["seconds"],
        }
    if "restore" in r:
        s = r["restore"]
        groups["restore"] = {
            "pgharbor": s["pgharbor"]["restore_seconds"],
            "pgBackRest": s["pgbackrest"]["restore_seconds"],
        }
        groups["replay"] = {
            "pgharbor": s["pgharbor"]["replay_seconds"],
            "pgBackRest": s["pgbackrest"]["replay_seconds"],
        }
    _bars(axes[1][0], "time (s)", groups, colors)
    sizes: dict[str, dict[str, float]] = {}
    if "backup_full" in r:
        b = r["backup_full"]
        sizes["full backup"] = {
            "pgharbor": b["pgharbor"]["stored_bytes"] / 1e6,
            "pgBackRest": b["pgbackrest"]["stored_bytes"] / 1e6,
            "pg_basebackup": b["pg_basebackup"]["stored_bytes"] / 1e6,
        }
    if "backup_second" in r:
        b = r["backup_second"]
        sizes["2nd backup added"] = {
            "pgharbor": b["pgharbor"]["stored_bytes"] / 1e6,
            "pgBackRest": b["pgbackrest"]["stored_bytes"] / 1e6,
        }
    if "archive_sync" in r:
        a = r["archive_sync"]
        sizes["archived WAL"] = {
            "pgharbor": a["pgharbor"]["repo_bytes"] / 1e6,
            "pgBackRest": a["pgbackrest"]["repo_bytes"] / 1e6,
            "zstd -1": a["zstd1_fsync"]["repo_bytes"] / 1e6,
        }
    _bars(axes[1][1], "stored (MB)", sizes, colors)
    size = r.get("size", {})
    m = r.get("machine", {})
    fig.suptitle(
        f"pgharbor vs pgBackRest ({size.get('mode')} mode, "
        f"{m.get('cpus')} cores, {m.get('ram_gib')} GiB RAM)"
    )
    fig.tight_layout(h_pad=4.0)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _bars(ax: Any, title: str, groups: dict[str, dict[str, float]], colors: dict[str, str]) -> None:
    """Grouped bars: one group per measurement, one bar per tool (named under it), values
    written on top, the group's name below."""
    x = 0.0
    positions: list[float] = []
    names: list[str] = []
    for group, values in groups.items():
        start = x
        for tool, value in values.items():
            bar = ax.bar(x, value, 0.8, color=colors.get(tool, colors["other"]))
            text = f"{value:,.0f}" if value >= 10 else f"{value:.1f}"
            ax.bar_label(bar, labels=[text], fontsize=8)
            positions.append(x)
            names.append(tool)
            x += 1
        ax.text((start + x - 1) / 2, -0.27, group, transform=ax.get_xaxis_transform(),
                ha="center", va="top", fontsize=10, fontweight="bold")  # fmt: skip
        x += 0.8
    ax.set_xticks(positions, names, rotation=35, ha="right", fontsize=8)
    ax.margins(y=0.12)
    ax.set_title(title)


def main(argv: list[str]) -> int:
    """Render again from a results.json: ``report.py RESULTS.json [CHART.png]``."""
    import json

    results = json.loads(Path(argv[0]).read_text())
    print(table(results))
    if len(argv) > 1:
        chart(results, Path(argv[1]))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
