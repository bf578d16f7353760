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


def _ms(v: float) -> str:
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _cmp(ph: float | None, best: float | None, lower_is_better: bool) -> str:
    """pgharbor against the best pgBackRest: ``0.85x (1.18x faster)``."""
    if ph is None or not best:
        return "—"
    ratio = ph / best
    words = ("slower", "faster")
    return f"{ratio:.2f}× ({_verdict(ratio, lower_is_better, words)})"  # noqa: RUF001


def _target(ok: bool | None, text: str) -> str:
    if ok is None:
        return text
    return f"{'met' if ok else '**missed**'}: {text}"


class _Table:
    """The ratio table: one row per path, a column per tool (each pgBackRest measured)."""

    def __init__(self, r: dict[str, Any]) -> None:
        self.r = r
        v = r.get("versions", {})
        self.brs = [k for k in ("pgbackrest", "pgbackrest_new") if k in v]
        self.names = {k: v[k].replace("pgBackRest ", "pgBackRest ") for k in self.brs}
        self.lines: list[list[str]] = []

    def add(
        self,
        path: str,
        plain: str,
        values: dict[str, float | None],
        fmt: Callable[[float], str],
        lower_is_better: bool,
        target: str = "",
        goal: float | None = None,
        cells: dict[str, str] | None = None,
    ) -> None:
        """``values``: pgharbor's and each pgBackRest's number; ``goal``: the target
        ratio pgharbor / best pgBackRest (<= goal when lower is better, else >=)."""
        cells = cells or {}
        brv = [values[k] for k in self.brs if values.get(k) is not None]
        best = (min(brv) if lower_is_better else max(brv)) if brv else None
        ph = values.get("pgharbor")
        row = [path, plain or "—"]
        for k in self.brs:
            x = values.get(k)
            row.append(cells.get(k) or (fmt(x) if x is not None else "—"))
        row.append(cells.get("pgharbor") or (fmt(ph) if ph is not None else NA))
        row.append(_cmp(ph, best, lower_is_better))
        ok = None
        if goal is not None and ph is not None and best:
            ok = ph / best <= goal if lower_is_better else ph / best >= goal
        row.append(_target(ok, target) if target else "")
        self.lines.append(row)

    def render(self) -> str:
        head = ["path", "plain tools", *(self.names[k] for k in self.brs), "pgharbor",
                "pgharbor / best pgBackRest", "target"]  # fmt: skip
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(row) + " |" for row in self.lines]
        return "\n".join(out)


def rows_table(r: dict[str, Any]) -> str:
    t = _Table(r)
    brs = t.brs
    ms: Callable[[float], str] = lambda v: f"{_ms(v)} ms"  # noqa: E731
    sec: Callable[[float], str] = lambda v: f"{v:,.1f} s"  # noqa: E731
    if "archive_sync" in r:
        a = r["archive_sync"]
        zkey = "zstd_fsync" if "zstd_fsync" in a else "zstd1_fsync"
        level = a.get("zstd_level", 1 if zkey == "zstd1_fsync" else 3)
        for stat, label in (("median_ms", "p50"), ("p95_ms", "p95")):
            z = a[zkey][stat]
            plain = f"`zstd -{level}` durable {_ms(z)} · `cp` durable {_ms(a['cp_fsync'][stat])}"
            ph = a["pgharbor"][stat]
            target = ""
            if stat == "median_ms":
                target = f"≤ 0.9× newest, ≤ 1.2× zstd (pgharbor/zstd {ph / z:.2f}×)"  # noqa: RUF001
            t.add(
                f"`archive_command`, sync, ms per segment ({label}, {a['segments']} segments)",
                plain,
                {k: a[k][stat] for k in ("pgharbor", *brs)},
                ms,
                True,
                target,
                0.9 if stat == "median_ms" and ph / z <= 1.2 else (0.0 if target else None),
            )
        t.add(
            f"archived WAL stored ({_mb(a['wal_bytes'])} of WAL)",
            f"zstd -{level} {_mb(a[zkey]['repo_bytes'])}",
            {k: a[k]["repo_bytes"] for k in ("pgharbor", *brs)},
            _mb,
            True,
        )
    d = r.get("backlog_drain") or {}
    if d.get("pgharbor"):
        n = len(d["pgharbor"]["rounds"])
        t.add(
            f"async, a backlog of {d['segments']} `.ready` drained, segments/s (median of {n})",
            "",
            {k: d[k]["segments_per_s"] for k in ("pgharbor", *brs) if k in d},
            lambda v: f"{v:,.1f}",
            False,
            "≥ 1.2× newest",  # noqa: RUF001
            1.2,
        )
    lat = {k: d[k].get("archive_command") for k in ("pgharbor", *brs) if d.get(k)}
    if any(lat.values()):

        def calls(c: dict[str, Any]) -> str:
            a, h = c.get("all") or {}, c.get("ahead") or {}
            one = f"{_ms(a['median_ms'])} ms" if a else "—"
            two = f"{_ms(h['median_ms'])} ms (n={h['n']})" if h else "none"
            return f"all {one}; ahead {two}"

        cells = {k: calls(c) for k, c in lat.items() if c}
        ahead = (lat.get("pgharbor") or {}).get("ahead") or {}
        p50 = ahead.get("median_ms")
        t.add(
            "async `archive_command` while the backlog drains, p50: every call; the calls "
            "whose file the pusher had archived already (ahead)",
            "",
            {k: (c.get("ahead") or {}).get("median_ms") for k, c in lat.items() if c},
            ms,
            True,
            _target(p50 <= 5 if p50 is not None else None, "ahead p50 ≤ 5 ms"),
            None,
            cells,
        )
    live = r.get("live_load", {})
    timed = {k: live.get(f"{k}_async", {}) for k in ("pgharbor", *brs) if live.get(f"{k}_async")}
    if any("archive_command_median_ms" in e for e in timed.values()):
        cells = {
            k: f"{_ms(e['archive_command_median_ms'])} ms (p95 {_ms(e['archive_command_p95_ms'])})"
            for k, e in timed.items()
            if "archive_command_median_ms" in e
        }
        ph = timed.get("pgharbor", {}).get("archive_command_median_ms")
        t.add(
            f"async `archive_command` under {live['load_seconds']} s of pgbench, ms (p50, p95)",
            "",
            {k: e.get("archive_command_median_ms") for k, e in timed.items()},
            ms,
            True,
            "",
            None,
            cells,
        )
    f = r.get("replay_feed") or {}
    if f.get("pgharbor"):
        n = f["pgharbor"]["segments"]
        rounds = len(f["pgharbor"]["rounds"])

        def feed(e: dict[str, Any]) -> str:
            return f"{e['segments_per_s']:,.1f} ({_ms(e['p50_ms'])} / {_ms(e['p95_ms'])})"

        cells = {}
        for k in brs:
            parts = []
            for mode in ("async", "sync"):
                e = f.get(f"{k}_{mode}")
                if e:
                    parts.append(f"{mode} {feed(e)}")
            cells[k] = ", ".join(parts)
        cells["pgharbor"] = feed(f["pgharbor"])
        p95 = f["pgharbor"]["p95_ms"]
        t.add(
            f"`restore_command` over {n} segments, segments/s (p50 / p95 ms; median of {rounds})",
            f"`cp` {feed(f['cp'])}" if "cp" in f else "",
            {
                "pgharbor": f["pgharbor"]["segments_per_s"],
                **{k: f[f"{k}_async"]["segments_per_s"] for k in brs if f"{k}_async" in f},
            },
            lambda v: f"{v:,.1f}",
            False,
            f"≥ 1.3× newest async; p95 ≤ 30 ms (p95 {_ms(p95)} ms: "  # noqa: RUF001
            f"{'met' if p95 <= 30 else 'missed'})",
            1.3 if p95 <= 30 else 1e9,
            cells,
        )
    if "fetch_sync" in r:
        fs = r["fetch_sync"]
        t.add(
            "`restore_command` per segment, sync (no prefetch, outside a data directory), p50",
            "",
            {k: fs[k]["median_ms"] for k in ("pgharbor", *brs) if k in fs},
            ms,
            True,
        )
    if "backup_full" in r:
        b = r["backup_full"]
        bb = b["pg_basebackup"]
        cells = {
            k: f"{b[k]['mb_per_s']:,.0f} ({b[k]['seconds']:.1f} s)" for k in ("pgharbor", *brs)
        }
        t.add(
            f"full backup of {_mb(b['pgharbor']['logical_bytes'])}, MB/s (s)",
            f"`pg_basebackup -Ft -Z zstd` {bb['mb_per_s']:,.0f} ({bb['seconds']:.1f} s)",
            {k: b[k]["mb_per_s"] for k in ("pgharbor", *brs)},
            lambda v: f"{v:,.0f}",
            False,
            "≥ 1.0× newest",  # noqa: RUF001
            1.0,
            cells,
        )
        t.add(
            "full backup, peak RSS",
            f"pg_basebackup {bb['maxrss_mib']:,.0f} MiB",
            {k: b[k]["maxrss_mib"] for k in ("pgharbor", *brs)},
            lambda v: f"{v:,.0f} MiB",
            True,
        )
    if "backup_second" in r:
        b = r["backup_second"]
        cells = {
            k: f"{_mb(b[k]['stored_bytes'])} ({b[k]['seconds']:.1f} s)" for k in ("pgharbor", *brs)
        }
        t.add(
            f"second backup after updating {b['changed_rows']:,} rows (10 %), added (s); "
            "pgBackRest incr",
            "",
            {k: b[k]["stored_bytes"] for k in ("pgharbor", *brs)},
            _mb,
            True,
            "",
            None,
            cells,
        )
    if "restore" in r:
        s = r["restore"]
        t.add(
            "restore to a ready data directory, s",
            "",
            {k: s[k]["restore_seconds"] for k in ("pgharbor", *brs) if k in s},
            sec,
            True,
            "≤ 1.0× newest",  # noqa: RUF001
            1.0,
        )
        ph = s["pgharbor"]
        t.add(
            f"restore, then replay {ph['replay_segments']} segments through restore_command "
            "and promote, s (pgBackRest async archive-get)",
            "",
            {k: s[k]["replay_seconds"] for k in ("pgharbor", *brs) if k in s},
            sec,
            True,
        )
    if live:
        for key, label, fmt, lower in (
            ("peak_backlog", "peak backlog (.ready)", lambda v: f"{v:,.0f}", True),
            ("drain_seconds", "drain after the load, s", lambda v: f"{v:,.1f}", True),
            ("tps", "pgbench tps meanwhile", lambda v: f"{v:,.0f}", False),
        ):
            vals = {k: live[f"{k}_async"][key] for k in ("pgharbor", *brs)
                    if live.get(f"{k}_async", {}).get("available")}  # fmt: skip
            sync = live.get("pgharbor_sync", {})
            plain = f"pgharbor sync {fmt(sync[key])}" if sync.get("available") else ""
            t.add(f"archiving under {live['load_seconds']} s of pgbench, async: {label}",
                  plain, vals, fmt, lower)  # fmt: skip
    if "backup_big" in r:
        g = r["backup_big"]
        t.add(
            f"pgharbor backup of {_mb(g['database_bytes'])}: peak RSS, MB/s",
            "",
            {},
            str,
            True,
            cells={"pgharbor": f"{g['maxrss_mib']:,.0f} MiB, {g['mb_per_s']:,.0f} MB/s"},
        )
    return t.render()


def table(r: dict[str, Any]) -> str:
    size = r.get("size", {})
    m = r.get("machine", {})
    v = r.get("versions", {})
    lines = [rows_table(r), ""]
    lines.append(
        f"{size.get('mode', '?')} mode: database {_mb(r.get('database_bytes', 0))}, "
        f"{r.get('corpus', {}).get('segments', '?')} WAL segments, "
        f"zstd level {r.get('zstd_level', 3)} for all; "
        f"{m.get('cpus')} cores ({m.get('cpu_model')}), {m.get('ram_gib')} GiB RAM; "
        f"load average {m.get('loadavg_at_start')} at the start, "
        f"{m.get('loadavg_at_end')} at the end; total {r.get('total_seconds')} s; "
        f"pgharbor {v.get('pgharbor_source', '?')}; "
        + "; ".join(v[k] for k in ("pgbackrest", "pgbackrest_new") if k in v)
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
                    ("zstd", "zstd_fsync"),
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
            "zstd": a["zstd_fsync"]["repo_bytes"] / 1e6,
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
