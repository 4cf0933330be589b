"""The fixture generator: determinism, snapshot layout, and labels that agree with the files
and with SPEC §2–§4 arithmetic spelled out here case by case."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from fixtures import generate_snapshot
from fixtures.reference import FINDING_KINDS, evaluate, read_snapshot
from fixtures.sfid import is_valid_18, to_18
from fixtures.timefmt import parse_ms

KINDS = set(FINDING_KINDS)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, [dict(zip(header, row, strict=False)) for row in reader]


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("snap") / "org"
    labels = generate_snapshot(root, seed=1, actions=2000)
    return root, labels


def _tagged(labels: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    found = [a for a in labels["actions"] if tag in a["tags"]]
    return sorted(found, key=lambda a: (a["started_at"], a["key"]))


def _wasted(labels: dict[str, Any], kind: str) -> dict[str, float]:
    wasted: dict[str, float] = labels["findings"][kind]["wasted_by_key"]
    return wasted


# ------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = generate_snapshot(tmp_path / "a", seed=5, actions=800, days=3)
    b = generate_snapshot(tmp_path / "b", seed=5, actions=800, days=3)
    assert a == b
    digest_a, digest_b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert digest_a == digest_b
    assert {"org.json", "app.key", "app.crt", "labels.json", "objects/AgentWorkItem.jsonl",
            "objects/Case.jsonl", "objects/EventLogFile.jsonl"} <= set(digest_a)


def test_output_does_not_depend_on_hash_seed_or_global_random(tmp_path: Path) -> None:
    script = (
        "import sys, random; from pathlib import Path; from fixtures import generate_snapshot; "
        "state = random.getstate(); "
        "generate_snapshot(Path(sys.argv[1]), seed=8, actions=400, days=2); "
        "assert random.getstate() == state"
    )
    for name, hash_seed in (("a", "1"), ("b", "2")):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], check=True,
                       env=env, cwd=Path(__file__).resolve().parents[1])
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_same_seed_gives_identical_data360_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_snapshot(tmp_path / name, seed=3, actions=300, days=2, source="data360",
                          family="std_dmo", api_version="67.0")
    digest_a, digest_b = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    assert digest_a == digest_b
    assert {"labels_data360.json", "data360/computeConsumption.json",
            "objects/TenantConsumptionAlert.jsonl"} <= set(digest_a)


def test_fixtures_package_stays_small_and_independent() -> None:
    """No function over 60 lines, no module over 500, short module docstrings, `__all__`,
    and nothing imported from `audit` or `connector` (the labels are ground truth)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "fixtures"
    problems = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        name = path.relative_to(root.parent)
        if len(text.splitlines()) > 500:
            problems.append(f"{name}: {len(text.splitlines())} lines")
        doc = ast.get_docstring(tree)
        if not doc or len(doc.splitlines()) > 2:
            problems.append(f"{name}: module docstring must be one or two lines")
        if "__all__" not in text:
            problems.append(f"{name}: no __all__")
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                size = node.end_lineno - node.lineno + 1
                if size > 60:
                    problems.append(f"{name}:{node.lineno} {node.name}: {size} lines")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                modules = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if node.level == 0 else []
                )
                problems += [
                    f"{name}:{node.lineno} imports {m}"
                    for m in modules
                    if m.split(".")[0] in ("audit", "connector")
                ]
    assert not problems, "\n".join(problems)


def test_different_seed_differs(tmp_path: Path) -> None:
    generate_snapshot(tmp_path / "a", seed=5, actions=800, days=3)
    generate_snapshot(tmp_path / "b", seed=6, actions=800, days=3)
    da, db = _tree_digest(tmp_path / "a"), _tree_digest(tmp_path / "b")
    for name in ("app.key", "app.crt", "labels.json", "objects/AgentWorkItem.jsonl"):
        assert da[name] != db[name], name


def test_regenerating_into_a_snapshot_dir_replaces_it(tmp_path: Path) -> None:
    generate_snapshot(tmp_path / "s", seed=5, actions=800, days=3)
    generate_snapshot(tmp_path / "s", seed=5, actions=300, days=1)
    generate_snapshot(tmp_path / "t", seed=5, actions=300, days=1)
    assert _tree_digest(tmp_path / "s") == _tree_digest(tmp_path / "t")


def test_refuses_a_directory_that_is_not_a_snapshot(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate_snapshot(tmp_path, seed=1, actions=10)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("kwargs", [{"days": 0}, {"actions": -1}, {"api_version": "v62"}])
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        generate_snapshot(tmp_path / "x", **kwargs)


def test_progress_is_monotonic_and_completes(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_snapshot(tmp_path / "s", seed=2, actions=1000, days=2,
                      progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len({t for _, t in calls}) == 1


# ------------------------------------------------------------------------------ layout


def test_org_json_key_and_certificate(snap: tuple[Path, dict[str, Any]]) -> None:
    root, labels = snap
    org = json.loads((root / "org.json").read_text())
    assert set(org) == {"organization_id", "is_sandbox", "api_version", "username",
                        "consumer_key", "certificate"}
    assert org["organization_id"] == labels["organization_id"]
    assert org["organization_id"].startswith("00D") and is_valid_18(org["organization_id"])
    assert org["is_sandbox"] is False and org["api_version"] == "62.0"
    assert org["consumer_key"].startswith("3MVG9") and org["certificate"] == "app.crt"
    assert (root / "app.key").stat().st_mode & 0o077 == 0

    key = serialization.load_pem_private_key((root / "app.key").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert (root / "app.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    cert = x509.load_pem_x509_certificate((root / "app.crt").read_bytes())
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()
    assert cert.not_valid_before_utc == dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    assert cert.not_valid_after_utc == dt.datetime(2040, 1, 1, tzinfo=dt.timezone.utc)
    message = b"header.payload"
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())  # raises if not
    cert_signed_by_own_key = cert.signature_hash_algorithm
    assert cert_signed_by_own_key is not None
    public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                  cert_signed_by_own_key)


def test_ids_are_valid_18_char_ids(snap: tuple[Path, dict[str, Any]]) -> None:
    root, _ = snap
    awi = _jsonl(root / "objects" / "AgentWorkItem.jsonl")
    cases = _jsonl(root / "objects" / "Case.jsonl")
    elf = _jsonl(root / "objects" / "EventLogFile.jsonl")
    for records, prefix in ((awi, "1AW"), (cases, "500"), (elf, "0AT")):
        ids = [r["Id"] for r in records]
        assert len(set(ids)) == len(ids) and ids == sorted(ids)
        assert all(i.startswith(prefix) and is_valid_18(i) for i in ids)
    assert all(is_valid_18(r["UserId__c"]) and r["UserId__c"].startswith("005") for r in awi)
    assert all(r["CaseId__c"] is None or is_valid_18(r["CaseId__c"]) for r in awi)
    assert {r["CaseId__c"] for r in awi} - {None} <= {c["Id"] for c in cases}
    # the checksum is the real one: flipping the case of a character breaks it
    for sample in (r["Id"] for r in awi[:50]):
        i = next(i for i, ch in enumerate(sample[:15]) if ch.isalpha())
        assert not is_valid_18(sample[:i] + sample[i].swapcase() + sample[i + 1:])
    assert to_18("001D000000IqhSL") == "001D000000IqhSLIAZ"


def test_records_look_like_salesforce(snap: tuple[Path, dict[str, Any]]) -> None:
    root, _ = snap
    awi = _jsonl(root / "objects" / "AgentWorkItem.jsonl")
    assert set(awi[0]) == {
        "Id", "SessionId__c", "AgentId__c", "AgentName__c", "ActionName__c", "ActionType__c",
        "Channel__c", "Status__c", "ErrorCode__c", "PromptTokens__c", "CompletionTokens__c",
        "TokensConsumed__c", "AwuCount__c", "ActionInput__c", "UserId__c", "CaseId__c",
        "StartTime__c", "CreatedDate", "SystemModstamp",
    }
    later = 0
    for r in awi:
        assert r["PromptTokens__c"] + r["CompletionTokens__c"] == r["TokensConsumed__c"]
        assert isinstance(r["TokensConsumed__c"], float)
        assert (r["ErrorCode__c"] is None) == (r["Status__c"] == "Success")
        start, created = parse_ms(r["StartTime__c"]), parse_ms(r["CreatedDate"])
        modstamp = parse_ms(r["SystemModstamp"])
        assert start < created <= modstamp and created - start < 10_000
        later += modstamp > created
        assert r["StartTime__c"].endswith("+0000") and len(r["StartTime__c"]) == 28
    assert 0.02 < later / len(awi) < 0.1
    with open(root / "objects" / "AgentWorkItem.jsonl", encoding="utf-8") as fh:
        for line in fh:  # the hand-rolled writer says what json.dumps would
            assert json.dumps(json.loads(line), ensure_ascii=False) + "\n" == line
    cases = _jsonl(root / "objects" / "Case.jsonl")
    assert any(c["IsClosed"] for c in cases) and any(not c["IsClosed"] for c in cases)
    assert all((c["ClosedDate"] is None) == (not c["IsClosed"]) for c in cases)


def test_log_files_headers_and_field_names(snap: tuple[Path, dict[str, Any]]) -> None:
    root, labels = snap
    elf = _jsonl(root / "objects" / "EventLogFile.jsonl")
    assert sorted(p.stem for p in (root / "logfiles").iterdir()) == sorted(r["Id"] for r in elf)
    mismatched = []
    layouts = set()
    for rec in elf:
        path = root / "logfiles" / f"{rec['Id']}.csv"
        assert rec["EventType"] == "AgentAction" and rec["Interval"] in ("Daily", "Hourly")
        assert rec["LogFileLength"] == float(path.stat().st_size)
        header, _ = _csv(path)
        if header != rec["LogFileFieldNames"].split(","):
            mismatched.append(rec["Id"])
        layouts.add(("CPU_TIME" in header, header[:2] == ["EVENT_TYPE", "TIMESTAMP_DERIVED"]))
        log_ms = parse_ms(rec["LogDate"])
        assert log_ms % (86_400_000 if rec["Interval"] == "Daily" else 3_600_000) == 0
    assert mismatched == labels["elf"]["bad_file_ids"] and len(mismatched) == 1
    assert layouts == {(True, True), (True, False), (False, True), (False, False)}
    assert labels["elf"]["files"] == len(elf)


def test_every_hourly_row_is_in_its_daily_file(snap: tuple[Path, dict[str, Any]]) -> None:
    root, _ = snap
    elf = _jsonl(root / "objects" / "EventLogFile.jsonl")
    daily_ids: dict[str, set[str]] = defaultdict(set)
    daily_hours: set[str] = set()
    for rec in elf:
        if rec["Interval"] == "Daily":
            _, rows = _csv(root / "logfiles" / f"{rec['Id']}.csv")
            daily_ids[rec["LogDate"][:10]] |= {r["REQUEST_ID"] for r in rows}
            daily_hours |= {r["TIMESTAMP_DERIVED"][:13] for r in rows}
    hourly = [r for r in elf if r["Interval"] == "Hourly"]
    sequences = {r["Sequence"] for r in hourly}
    assert sequences == {1, 2}
    for rec in hourly:
        _, rows = _csv(root / "logfiles" / f"{rec['Id']}.csv")
        assert rows
        for row in rows:
            assert row["TIMESTAMP_DERIVED"][:13] == rec["LogDate"][:13]
            assert row["REQUEST_ID"] in daily_ids[rec["LogDate"][:10]]
    # some hours with events have no hourly file at all: the Daily file covers them
    assert daily_hours - {r["LogDate"][:13] for r in hourly}


def test_short_ids_and_republished_file(snap: tuple[Path, dict[str, Any]]) -> None:
    root, labels = snap
    elf = {r["Id"]: r for r in _jsonl(root / "objects" / "EventLogFile.jsonl")}
    lengths = defaultdict(set)
    for rec in elf.values():
        _, rows = _csv(root / "logfiles" / f"{rec['Id']}.csv")
        for row in rows:
            for col in ("WORK_ITEM_ID", "USER_ID", "ORGANIZATION_ID"):
                if row.get(col):
                    lengths[col].add(len(row[col]))
    assert all(lengths[c] == {15, 18} for c in ("WORK_ITEM_ID", "USER_ID", "ORGANIZATION_ID"))

    [new_id] = labels["elf"]["republished_ids"]
    new = elf[new_id]
    [old] = [r for r in elf.values() if r["Interval"] == "Daily" and r["Id"] != new_id
             and r["LogDate"] == new["LogDate"]]
    assert parse_ms(new["CreatedDate"]) > parse_ms(old["CreatedDate"])
    _, old_rows = _csv(root / "logfiles" / f"{old['Id']}.csv")
    _, new_rows = _csv(root / "logfiles" / f"{new['Id']}.csv")
    old_by, new_by = ({r["REQUEST_ID"]: r for r in rows} for rows in (old_rows, new_rows))
    assert set(old_by) == set(new_by)  # the newer file lacks nothing
    changed = {rid for rid in old_by
               if (old_by[rid]["TOTAL_TOKENS"], old_by[rid]["AWU_COUNT"])
               != (new_by[rid]["TOTAL_TOKENS"], new_by[rid]["AWU_COUNT"])}
    fixed = _tagged(labels, "elf:republished_fix_both") + \
        _tagged(labels, "elf:republished_fix_elf_only")
    assert len(changed) == 2 and len(fixed) == 2
    corrected = {int(new_by[rid]["TOTAL_TOKENS"]) for rid in changed}
    assert corrected == {a["tokens"] for a in fixed}


# ------------------------------------------------------------------------------ labels


def test_labels_file_matches_return_value(snap: tuple[Path, dict[str, Any]]) -> None:
    root, labels = snap
    assert json.loads((root / "labels.json").read_text(encoding="utf-8")) == labels
    assert sorted(p.name for p in root.iterdir()) == [
        "app.crt", "app.key", "labels.json", "logfiles", "objects", "org.json"]


def test_labels_are_self_consistent(snap: tuple[Path, dict[str, Any]]) -> None:
    _, labels = snap
    inside = [a for a in labels["actions"] if a["in_window"]]
    since, until = (parse_ms(labels["window"][k]) for k in ("since", "until"))
    assert all((since <= parse_ms(a["started_at"]) < until) == a["in_window"]
               for a in labels["actions"])
    t = labels["totals"]
    assert t["actions"] == len(inside) and abs(t["actions"] - 2000) < 100
    assert t["billable_actions"] == sum(a["billable"] for a in inside)
    assert t["tokens"] == sum(a["tokens"] for a in inside)
    assert t["awu"] == pytest.approx(sum(a["awu"] for a in inside))
    assert t["reported_awu"] == pytest.approx(sum(a["reported_awu"] for a in inside))
    assert t["credits"] == pytest.approx(t["awu"] * 20)
    assert t["cost_usd"] == pytest.approx(t["credits"] * 0.005)
    for a in labels["actions"]:
        units = max(1, -(-a["tokens"] // 10_000))
        mult = 1.5 if a["channel"] == "Voice" else 1.0
        assert a["billable"] == (a["action_type"] != "Utility")
        assert a["awu"] == (units * mult if a["billable"] else 0.0)
    for kind in KINDS:
        f = labels["findings"][kind]
        assert f["count"] == len(f["keys"]) == len(f["wasted_by_key"]) > 0, kind
        assert f["keys"] == sorted(f["wasted_by_key"])
        assert f["wasted_awu"] == pytest.approx(sum(f["wasted_by_key"].values()))
    daily = labels["daily"]
    assert len(daily) == 7 and min(daily) == "2026-10-01" and max(daily) == "2026-10-07"
    assert sum(d["actions"] for d in daily.values()) == t["actions"]
    assert sum(d["awu"] for d in daily.values()) == pytest.approx(t["awu"])
    assert sum(d["credits"] for d in daily.values()) == pytest.approx(t["credits"])
    p = labels["pricing"]
    sessions = {a["session_id"] for a in inside}
    users = {a["user_id"] for a in inside}
    assert p["sessions"] == len(sessions) and p["distinct_users"] == len(users) == 25
    assert p["per_conversation_usd"] == pytest.approx(2.0 * len(sessions))
    assert p["per_user_usd"] == pytest.approx(125.0 * 25 * 7 / 31, abs=1e-5)
    assert p["flex_usd"] == t["cost_usd"]
    prices = {"flex": p["flex_usd"], "per_conversation": p["per_conversation_usd"],
              "per_user": p["per_user_usd"]}
    assert p["cheapest"] == min(prices, key=prices.__getitem__)
    bad_actions = [a["key"] for a in inside if "bad_input" in a["tags"]]
    assert labels["data_quality"]["bad_records"] == len(bad_actions) + 1
    assert set(labels["data_quality"]["bad_record_keys"]) == \
        set(bad_actions) | set(labels["elf"]["bad_file_ids"])


def test_sources_and_keys(snap: tuple[Path, dict[str, Any]]) -> None:
    _, labels = snap
    by_source = defaultdict(list)
    for a in labels["actions"]:
        by_source[a["source"]].append(a)
    assert set(by_source) == {"both", "awi", "elf"}
    n = labels["totals"]["actions"]
    assert 0.005 * n < len(by_source["awi"]) < 0.02 * n
    gaps = set(labels["findings"]["SOURCE_GAP"]["keys"])
    for a in by_source["awi"] + by_source["elf"]:
        assert a["key"] in gaps or not a["in_window"]
    blank = [a for a in by_source["elf"] if not a["key"].startswith("1AW")]
    orphans = [a for a in by_source["elf"] if a["key"].startswith("1AW")]
    assert blank and orphans and all(len(a["key"]) == 22 for a in blank)
    assert all(is_valid_18(a["key"]) for a in orphans)


CASES: list[tuple[str, str, float | None, int]] = [
    # tag, finding kind, wasted of that finding, index of the keyed action among the tag's
    ("ceiling:breach_10001", "CEILING_BREACH", 1.0, 0),
    ("ceiling:breach_22000", "CEILING_BREACH", 2.0, 0),
    ("ceiling:breach_voice", "CEILING_BREACH", 1.5, 0),
    ("ceiling:breach_error", "CEILING_BREACH", 1.0, 0),
    ("ceiling:near_9000", "NEAR_CEILING", 0.0, 0),
    ("ceiling:near_10000", "NEAR_CEILING", 0.0, 0),
    ("ceiling:near_voice_9500", "NEAR_CEILING", 0.0, 0),
    ("retry:2", "RETRY", 1.0, 0),
    ("retry:4", "RETRY", 3.0, 0),
    ("retry:ends_in_error", "RETRY", 2.0, 0),
    ("retry_loop:5", "RETRY_LOOP", 4.0, 0),
    ("retry_loop:7_voice", "RETRY_LOOP", 9.0, 0),
    ("retry:gap_300000", "RETRY", 1.0, 0),
    ("retry:gap_300001_breaks", "RETRY", 1.0, 0),
    ("retry:restarts_after_gap", "RETRY", 1.0, 1),
    ("retry:reordered_keys", "RETRY", 1.0, 0),
    ("retry:breach_attempts", "RETRY", 4.0, 0),
    ("retry:two_chains_one_group", "RETRY", 1.0, 0),
    ("retry:two_chains_one_group", "RETRY", 2.0, 2),
    ("redundant:failed_in_between", "RETRY", 1.0, 1),
    ("mismatch:under_reported_breach", "AWU_MISMATCH", -2.0, 0),
    ("mismatch:under_reported_breach", "CEILING_BREACH", 2.0, 0),
    ("mismatch:over_reported", "AWU_MISMATCH", 1.0, 0),
    ("mismatch:voice_as_text", "AWU_MISMATCH", -0.5, 0),
    ("mismatch:utility_reported", "AWU_MISMATCH", 1.0, 0),
    ("mismatch:elf_only", "AWU_MISMATCH", 1.0, 0),
    ("mismatch:elf_only", "SOURCE_GAP", 0.0, 0),
    ("gap:orphan_two_rows", "SOURCE_GAP", 0.0, 0),
    ("gap:awi_only", "SOURCE_GAP", 0.0, 0),
    ("gap:elf_only", "SOURCE_GAP", 0.0, 0),
    ("gap:token_diff", "SOURCE_GAP", 0.0, 0),
    ("elf:republished_fix_elf_only", "SOURCE_GAP", 0.0, 0),
]


@pytest.mark.parametrize(("tag", "kind", "wasted", "index"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in CASES])
def test_injected_finding(snap: tuple[Path, dict[str, Any]], tag: str, kind: str,
                          wasted: float, index: int) -> None:
    _, labels = snap
    acts = _tagged(labels, tag)  # the scenario's own actions, not the session's filler
    key = acts[index]["key"]
    assert acts[index]["in_window"]
    assert _wasted(labels, kind)[key] == pytest.approx(wasted)


@pytest.mark.parametrize(("tag", "wasted"), [
    ("redundant:2", 1.0), ("redundant:3_reordered_nested", 2.0), ("redundant:voice", 1.5),
    ("redundant:non_ascii", 1.0), ("redundant:failed_in_between", 1.0),
    ("redundant:breach", 2.0),
])
def test_injected_redundant_retrieval(snap: tuple[Path, dict[str, Any]], tag: str,
                                      wasted: float) -> None:
    _, labels = snap
    acts = _tagged(labels, tag)
    session = acts[0]["session_id"]
    keys = [k for k in labels["findings"]["REDUNDANT_RETRIEVAL"]["keys"]
            if k.startswith(session + "|")]
    assert len(keys) == 1
    _, name, fingerprint = keys[0].split("|")
    assert name == acts[0]["action_name"] and len(fingerprint) == 64
    assert _wasted(labels, "REDUNDANT_RETRIEVAL")[keys[0]] == pytest.approx(wasted)


def test_redundant_fingerprint_is_canonical_json(snap: tuple[Path, dict[str, Any]]) -> None:
    root, labels = snap
    awi = {r["Id"]: r for r in _jsonl(root / "objects" / "AgentWorkItem.jsonl")}
    acts = _tagged(labels, "redundant:3_reordered_nested")
    inputs = [awi[a["key"]]["ActionInput__c"] for a in acts if a["action_name"] == "QueryCases"]
    assert len(set(inputs)) == 3  # three spellings of one value
    canon = json.dumps(json.loads(inputs[0]), sort_keys=True, separators=(",", ":"),
                       ensure_ascii=False)
    fp = hashlib.sha256(canon.encode()).hexdigest()
    assert f"{acts[0]['session_id']}|QueryCases|{fp}" in \
        labels["findings"]["REDUNDANT_RETRIEVAL"]["keys"]
    non_ascii = [awi[a["key"]]["ActionInput__c"] for a in _tagged(labels, "redundant:non_ascii")
                 if a["action_name"] == "SearchKnowledge"]
    assert "\\u" in non_ascii[1] and "Zoë" in non_ascii[0]


def test_long_conversations(snap: tuple[Path, dict[str, Any]]) -> None:
    _, labels = snap
    found = set(labels["findings"]["LONG_CONVERSATION"]["keys"])
    for tag, billable, is_long in [("long:21", 21, True), ("long:25_with_utility", 25, True),
                                   ("decoy:long_20", 20, False),
                                   ("decoy:long_22_with_2_utility", 20, False)]:
        acts = _tagged(labels, tag)
        assert len({a["session_id"] for a in acts}) == 1
        assert sum(a["billable"] for a in acts) == billable
        assert (acts[0]["session_id"] in found) is is_long
    assert len(_tagged(labels, "decoy:long_22_with_2_utility")) == 22


DECOYS = [
    "decoy:utility_12000", "decoy:utility_9500", "decoy:tokens_8999", "decoy:lone_error",
    "decoy:retry_after_301s", "decoy:retry_different_input", "decoy:utility_retries",
    "decoy:retry_other_session", "decoy:bad_input_retries", "decoy:elf_only_errors",
    "decoy:redundant_other_session", "decoy:redundant_repeat_failed",
    "decoy:redundant_non_retrieval", "decoy:redundant_utility", "decoy:redundant_different_input",
    "decoy:redundant_bad_input", "decoy:redundant_elf_only", "decoy:multi_request",
    "decoy:elf_other_diff", "elf:republished_fix_both", "decoy:outside_window",
]


@pytest.mark.parametrize("tag", DECOYS)
def test_decoy_forms_no_finding(snap: tuple[Path, dict[str, Any]], tag: str) -> None:
    _, labels = snap
    acts = _tagged(labels, tag)
    assert acts, f"decoy {tag} missing"
    allowed = {"SOURCE_GAP"} if tag in ("decoy:elf_only_errors", "decoy:redundant_elf_only") \
        else set()
    sessions = {a["session_id"] for a in acts}
    for kind in KINDS - allowed:
        for key in labels["findings"][kind]["keys"]:
            assert key not in {a["key"] for a in acts}, (tag, kind)
            assert key.split("|")[0] not in sessions or kind not in (
                "REDUNDANT_RETRIEVAL", "LONG_CONVERSATION"), (tag, kind)


def test_decoy_details(snap: tuple[Path, dict[str, Any]]) -> None:
    _, labels = snap
    [u] = _tagged(labels, "decoy:utility_12000")
    assert u["tokens"] == 12_000 and u["awu"] == 0.0 and u["reported_awu"] == 0.0
    assert not u["billable"]
    gap = [a["started_at"] for a in _tagged(labels, "decoy:retry_after_301s")]
    assert parse_ms(gap[1]) - parse_ms(gap[0]) == 301_000
    chain = _tagged(labels, "retry:gap_300000")
    chain = [a for a in chain if a["action_name"] == "QueryCases"]
    assert parse_ms(chain[1]["started_at"]) - parse_ms(chain[0]["started_at"]) == 300_000
    brk = [a for a in _tagged(labels, "retry:gap_300001_breaks")
           if a["action_name"] == "LookupAccount"]
    assert parse_ms(brk[2]["started_at"]) - parse_ms(brk[1]["started_at"]) == 300_001
    assert [a["status"] for a in brk] == ["Error", "Error", "Success"]
    ends = [a for a in _tagged(labels, "retry:ends_in_error")
            if a["action_name"] == "CallShippingAPI"]
    assert [a["status"] for a in ends] == ["Error"] * 3
    multi = _tagged(labels, "decoy:multi_request")
    assert multi and all(a["source"] == "both" for a in multi)


def test_window_boundaries(snap: tuple[Path, dict[str, Any]]) -> None:
    _, labels = snap
    [first] = _tagged(labels, "boundary:start_exact")
    [last] = _tagged(labels, "boundary:end_exact")
    assert first["started_at"] == "2026-10-01T00:00:00.000Z" and first["in_window"]
    assert last["started_at"] == "2026-10-08T00:00:00.000Z" and not last["in_window"]
    [before] = _tagged(labels, "boundary:before_start")
    assert not before["in_window"]
    outside = [a for a in labels["actions"] if not a["in_window"]]
    days = {a["started_at"][:10] for a in outside}
    assert days == {"2026-09-30", "2026-10-08"}
    # the session straddling `until` is counted for per-conversation pricing
    [end_in] = _tagged(labels, "boundary:before_end")
    assert end_in["in_window"] and end_in["session_id"] == last["session_id"]


# --------------------------------------------------------------- the files say the labels


def _check_files_against_labels(root: Path, labels: dict[str, Any]) -> dict[str, Any]:
    read = read_snapshot(root)
    ev = evaluate(read.actions, since_ms=parse_ms(labels["window"]["since"]),
                  until_ms=parse_ms(labels["window"]["until"]),
                  is_sandbox=read.org["is_sandbox"], bad_file_ids=read.bad_file_ids)
    assert read.bad_file_ids == labels["elf"]["bad_file_ids"]
    assert read.rows_total == labels["elf"]["rows_total"]
    assert read.distinct_request_ids == labels["elf"]["distinct_request_ids"]
    return ev


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reference_check_from_files_agrees_with_labels(tmp_path: Path, seed: int) -> None:
    labels = generate_snapshot(tmp_path / "s", seed=seed, actions=2000)
    ev = _check_files_against_labels(tmp_path / "s", labels)
    for part in ("totals", "findings", "data_quality", "pricing", "daily"):
        assert ev[part] == labels[part], part
    assert ev["actions"] == [{k: v for k, v in a.items() if k != "tags"}
                             for a in labels["actions"]]


def test_reference_check_notices_a_lost_republished_file(tmp_path: Path) -> None:
    """The check has teeth: without the corrected file the files no longer match."""
    labels = generate_snapshot(tmp_path / "s", seed=1, actions=600, days=3)
    [new_id] = labels["elf"]["republished_ids"]
    elf_path = tmp_path / "s" / "objects" / "EventLogFile.jsonl"
    kept = [line for line in elf_path.read_text().splitlines() if new_id not in line]
    elf_path.write_text("\n".join(kept) + "\n")
    read = read_snapshot(tmp_path / "s")
    ev = evaluate(read.actions, since_ms=parse_ms(labels["window"]["since"]),
                  until_ms=parse_ms(labels["window"]["until"]), is_sandbox=False,
                  bad_file_ids=read.bad_file_ids)
    assert ev["totals"]["tokens"] != labels["totals"]["tokens"]
    assert ev["findings"]["SOURCE_GAP"] != labels["findings"]["SOURCE_GAP"]
    assert ev["findings"]["CEILING_BREACH"]["count"] == \
        labels["findings"]["CEILING_BREACH"]["count"] + 1


def test_sandbox_halves_cost_only(tmp_path: Path) -> None:
    prod = generate_snapshot(tmp_path / "p", seed=4, actions=500, days=2)
    sand = generate_snapshot(tmp_path / "s", seed=4, actions=500, days=2, sandbox=True)
    assert json.loads((tmp_path / "s" / "org.json").read_text())["is_sandbox"] is True
    for k in ("actions", "awu", "credits", "reported_awu", "tokens"):
        assert sand["totals"][k] == prod["totals"][k]
    assert sand["totals"]["cost_usd"] == pytest.approx(prod["totals"]["cost_usd"] / 2)
    assert sand["pricing"]["flex_usd"] == pytest.approx(prod["pricing"]["flex_usd"] / 2)
    assert sand["pricing"]["per_user_usd"] == prod["pricing"]["per_user_usd"]
    assert sand["pricing"]["per_conversation_usd"] == prod["pricing"]["per_conversation_usd"]


def test_window_across_a_month_end(tmp_path: Path) -> None:
    labels = generate_snapshot(tmp_path / "s", seed=3, actions=400, days=3,
                               start=dt.date(2026, 2, 27), api_version="60.0")
    assert labels["window"] == {"since": "2026-02-27T00:00:00Z", "until": "2026-03-02T00:00:00Z"}
    assert list(labels["daily"]) == ["2026-02-27", "2026-02-28", "2026-03-01"]
    assert labels["pricing"]["months"] == pytest.approx(2 / 28 + 1 / 31, abs=1e-6)
    users = labels["pricing"]["distinct_users"]
    assert labels["pricing"]["per_user_usd"] == pytest.approx(
        125 * users * (2 / 28 + 1 / 31), abs=1e-5)
    assert json.loads((tmp_path / "s" / "org.json").read_text())["api_version"] == "60.0"
    ev = _check_files_against_labels(tmp_path / "s", labels)
    assert ev["totals"] == labels["totals"] and ev["findings"] == labels["findings"]


def test_small_snapshot_still_has_every_kind(tmp_path: Path) -> None:
    labels = generate_snapshot(tmp_path / "s", seed=9, actions=50, days=1)
    assert all(labels["findings"][k]["count"] > 0 for k in KINDS)
    assert labels["elf"]["bad_file_ids"]
