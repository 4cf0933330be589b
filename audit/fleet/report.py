"""`audit fleet report`: the fleet view, read from the Parquet lake alone through DuckDB
(Hive partitions, DuckDB's bundled Parquet reader; extension downloads are switched off) —
per org spend, recomputed vs reported AWU, waste by kind and budget use; the top waste across
the fleet; the orgs ranked by waste share. Markdown, HTML or JSON (§7 keys)."""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta
from typing import Any

from audit.engine.findings import KINDS
from audit.engine.model import format_iso_ms
from audit.fleet.config import FleetConfig, is_remote_lake
from audit.fleet.lake import LakeError

__all__ = ["WASTE_KINDS", "fleet_report", "render"]

#: kinds whose wasted AWU is spend that bought nothing (AWU_MISMATCH is a billing
#: difference, the others carry no waste); kinds can overlap, so their sum is an upper bound
WASTE_KINDS = ("CEILING_BREACH", "RETRY", "RETRY_LOOP", "REDUNDANT_RETRIEVAL")
_TOP = 10

_TOTALS_SQL = """
SELECT org, count(*), coalesce(sum(billable), 0), coalesce(sum(tokens), 0),
       coalesce(sum(awu), 0), coalesce(sum(coalesce(reported_awu, 0)), 0),
       coalesce(sum(credits), 0), coalesce(sum(cost_usd), 0)
FROM {actions} WHERE {where} GROUP BY org
"""
_FINDINGS_SQL = """
SELECT org, kind, count(*), coalesce(sum(wasted_awu), 0)
FROM {findings} WHERE {where} GROUP BY org, kind
"""
_TOP_SQL = """
SELECT org, kind, key, agent, action_name, started_at, wasted_awu, wasted_usd, explanation
FROM {findings} WHERE {where} AND kind IN ({kinds}) AND wasted_awu > 0
ORDER BY wasted_awu DESC, org, id LIMIT {limit}
"""
_USED_SQL = """
SELECT org, substr(day, 1, 7) AS period, coalesce(sum(credits), 0)
FROM {actions} WHERE org IN ({orgs}) GROUP BY 1, 2
"""
_META_SQL = "SELECT org, org_id, is_sandbox, budget_period, budget_credits FROM {meta}"


class _Lake:
    """DuckDB over the lake: one in-memory connection, no extension ever fetched."""

    def __init__(self, fleet: FleetConfig):
        import duckdb

        self.root = fleet.lake.rstrip("/")
        self.db = duckdb.connect(":memory:")
        self.db.execute("SET autoinstall_known_extensions = false")
        self.db.execute("SET autoload_known_extensions = false")
        if is_remote_lake(self.root):
            from audit.fleet.lake import Lake

            self.db.register_filesystem(Lake(self.root).filesystem)
        self._error = duckdb.Error

    def scan(self, pattern: str) -> str:
        path = f"{self.root}/{pattern}".replace("'", "''")
        keys = ", ".join(f"'{k}': VARCHAR" for k in ("org", "day") if f"{k}=" in pattern)
        return f"read_parquet('{path}', hive_partitioning = true, hive_types = {{{keys}}})"

    def rows(self, sql: str, params: list[Any] | None = None, **tables: str) -> list[Any]:
        names = {
            "actions": "org=*/day=*/actions.parquet",
            "findings": "org=*/day=*/findings.parquet",
            "meta": "org=*/org.parquet",
        }
        text = sql.format(**{k: self.scan(v) for k, v in names.items()}, **tables)
        try:
            return self.db.execute(text, params or []).fetchall()
        except self._error as exc:
            if "No files found" in str(exc):
                raise LakeError(
                    f"the lake {self.root} holds no fleet data yet: run `audit fleet run` first"
                ) from None
            raise LakeError(f"lake {self.root}: {' '.join(str(exc).split())}") from None


def _where(
    orgs: list[str], since: datetime | None, until: datetime | None
) -> tuple[str, list[Any]]:
    clauses = [f"org IN ({', '.join('?' * len(orgs))})"]
    params: list[Any] = list(orgs)
    if since is not None:
        clauses += ["day >= ?", "started_at >= ?"]
        params += [since.date().isoformat(), format_iso_ms(since)]
    if until is not None:
        clauses += ["day <= ?", "started_at < ?"]
        params += [until.date().isoformat(), format_iso_ms(until)]
    return " AND ".join(clauses), params


def _totals(row: Any) -> dict[str, Any]:
    n, billable, tokens, awu, reported, credits, cost = row
    return {
        "actions": int(n),
        "billable_actions": int(billable),
        "tokens": int(tokens),
        "awu": round(awu, 6),
        "reported_awu": round(reported, 6),
        "credits": round(credits, 6),
        "cost_usd": round(cost, 6),
    }


def _empty_findings() -> dict[str, dict[str, Any]]:
    return {k: {"count": 0, "wasted_awu": 0.0} for k in KINDS}


def fleet_report(
    fleet: FleetConfig, *, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    """The fleet view of [since, until) (default: everything in the lake) as a dict."""
    if since is not None and until is not None and since >= until:
        raise LakeError("--since must be before --until")
    lake = _Lake(fleet)
    names = [o.name for o in fleet.orgs]
    where, params = _where(names, since, until)
    per_org: dict[str, dict[str, Any]] = {
        r[0]: {"totals": _totals(r[1:]), "findings": _empty_findings()}
        for r in lake.rows(_TOTALS_SQL, params, where=where)
    }
    for org, kind, count, wasted in lake.rows(_FINDINGS_SQL, params, where=where):
        if org in per_org and kind in KINDS:
            per_org[org]["findings"][kind] = {"count": int(count), "wasted_awu": round(wasted, 6)}
    orgs: dict[str, dict[str, Any]] = {name: per_org[name] for name in names if name in per_org}
    _add_budgets(lake, orgs, until)
    for block in orgs.values():
        waste = sum(block["findings"][k]["wasted_awu"] for k in WASTE_KINDS)
        awu = block["totals"]["awu"]
        block["waste_awu"] = round(waste, 6)
        block["waste_share"] = round(waste / awu, 6) if awu else 0.0
    return {
        "window": {
            "start": format_iso_ms(since) if since else None,
            "end": format_iso_ms(until) if until else None,
        },
        "lake": lake.root,
        "orgs": orgs,
        "totals": _sum_totals([b["totals"] for b in orgs.values()]),
        "findings": _sum_findings([b["findings"] for b in orgs.values()]),
        "ranking": sorted(orgs, key=lambda n: (-orgs[n]["waste_share"], n)),
        "top_waste": _top_waste(lake, where, params),
        "missing": [n for n in names if n not in orgs],
    }


def _add_budgets(lake: _Lake, orgs: dict[str, Any], until: datetime | None) -> None:
    """Budget use of the last period of the window (or the lake's latest one per org),
    against everything the lake holds for that period."""
    if not orgs:
        return
    meta = {r[0]: r[1:] for r in lake.rows(_META_SQL)}
    used: dict[str, dict[str, float]] = {}
    marks = ", ".join("?" * len(orgs))
    for org, period, credits in lake.rows(_USED_SQL, list(orgs), orgs=marks):
        used.setdefault(org, {})[period] = float(credits)
    for org, block in orgs.items():
        org_id, sandbox, _, budget = meta.get(org, (None, False, "month", 0.0))
        periods = used.get(org, {})
        period = (
            (until - timedelta(microseconds=1)).strftime("%Y-%m")
            if until is not None
            else max(periods, default=None)
        )
        spent = periods.get(period, 0.0) if period else 0.0
        block["org_id"], block["is_sandbox"] = org_id, bool(sandbox)
        block["budget"] = {
            "period": period,
            "credits": budget,
            "used_credits": round(spent, 6),
            "used_pct": round(100.0 * spent / budget, 6) if budget else 0.0,
        }


def _top_waste(lake: _Lake, where: str, params: list[Any]) -> list[dict[str, Any]]:
    cols = (
        "org",
        "kind",
        "key",
        "agent",
        "action_name",
        "started_at",
        "wasted_awu",
        "wasted_usd",
        "explanation",
    )
    kinds = ", ".join(f"'{k}'" for k in WASTE_KINDS)
    rows = lake.rows(_TOP_SQL, params, where=where, kinds=kinds, limit=str(_TOP))
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _sum_totals(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("actions", "billable_actions", "tokens", "awu", "reported_awu", "credits", "cost_usd")
    out: dict[str, Any] = {}
    for k in keys:
        values = [b[k] for b in blocks]
        out[k] = (
            sum(values) if isinstance(values[0] if values else 0, int) else round(sum(values), 6)
        )
    return out


def _sum_findings(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    out = _empty_findings()
    for b in blocks:
        for k, v in b.items():
            out[k]["count"] += v["count"]
            out[k]["wasted_awu"] = round(out[k]["wasted_awu"] + v["wasted_awu"], 6)
    return out


# -- rendering ---------------------------------------------------------------------------------
Table = tuple[str, list[str], list[list[str]]]


def render(report: dict[str, Any], fmt: str) -> str:
    """The report as `json`, `md` or `html`."""
    if fmt == "json":
        return json.dumps(report, indent=2)
    tables = _tables(report)
    w = report["window"]
    span = f"{w['start']} – {w['end']}" if w["start"] or w["end"] else "everything in the lake"
    intro = [f"Lake {report['lake']}; window: {span}."]
    if report["missing"]:
        intro.append(f"No data in the lake for: {', '.join(report['missing'])}.")
    return _html(intro, tables) if fmt == "html" else _markdown(intro, tables)


def _money(x: float) -> str:
    return f"${x:,.2f}"


def _budget_cell(budget: dict[str, Any]) -> str:
    return f"{budget['used_pct']:.1f} % of {budget['credits']:,.0f} ({budget['period']})"


def _spend_cells(t: dict[str, Any]) -> list[str]:
    return [
        f"{t['actions']:,}",
        f"{t['awu']:,.1f}",
        f"{t['reported_awu']:,.1f}",
        f"{t['reported_awu'] - t['awu']:+,.1f}",
        f"{t['credits']:,.0f}",
        _money(t["cost_usd"]),
    ]


def _top_cells(f: dict[str, Any]) -> list[str]:
    return [
        f["org"],
        f["kind"],
        f["agent"] or "",
        f["action_name"] or "",
        f"{f['wasted_awu']:,.1f}",
        _money(f["wasted_usd"]),
        f["explanation"] or "",
    ]


_SPEND = ["actions", "AWU", "reported AWU", "reported − recomputed", "credits", "cost"]


def _tables(r: dict[str, Any]) -> list[Table]:
    orgs = r["orgs"]
    per_org = [
        [name, "yes" if b["is_sandbox"] else "", *_spend_cells(b["totals"]),
         _budget_cell(b["budget"])]
        for name, b in orgs.items()
    ]  # fmt: skip
    waste = [
        [name, *(f"{b['findings'][k]['wasted_awu']:,.1f} ({b['findings'][k]['count']})"
                 for k in WASTE_KINDS)]
        for name, b in orgs.items()
    ]  # fmt: skip
    ranked = [
        [str(i), n, f"{100 * orgs[n]['waste_share']:.1f} %", f"{orgs[n]['waste_awu']:,.1f}"]
        for i, n in enumerate(r["ranking"], 1)
    ]
    top_head = ["org", "kind", "agent", "action", "wasted AWU", "wasted $", "why"]
    return [
        ("Fleet totals", _SPEND, [_spend_cells(r["totals"])]),
        ("Per org", ["org", "sandbox", *_SPEND, "budget used"], per_org),
        ("Waste by kind (wasted AWU, count)", ["org", *WASTE_KINDS], waste),
        ("Top waste across the fleet", top_head, [_top_cells(f) for f in r["top_waste"]]),
        ("Orgs ranked by waste share", ["#", "org", "waste share", "wasted AWU"], ranked),
    ]


def _markdown(intro: list[str], tables: list[Table]) -> str:
    out = ["# awu-audit fleet report", "", *intro]
    for title, head, rows in tables:
        out += ["", f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        if not rows:
            out.append("| " + " | ".join(["—"] * len(head)) + " |")
    return "\n".join(out) + "\n"


def _html(intro: list[str], tables: list[Table]) -> str:
    e = html.escape
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>awu-audit fleet report</title><style>body{font-family:sans-serif;"
        "margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}</style></head><body>",
        "<h1>awu-audit fleet report</h1>",
        *(f"<p>{e(p)}</p>" for p in intro),
    ]
    for title, head, rows in tables:
        out.append(
            f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
        )
        out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
        out.append("</table>")
    return "\n".join([*out, "</body></html>"]) + "\n"
