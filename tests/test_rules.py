"""SPEC §4 findings: every rule, its boundaries and decoys, plus property tests."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.config import PricingConfig, RulesConfig
from audit.engine.model import Action
from audit.engine.rules import (
    KINDS,
    SEVERITY,
    AuditResult,
    Finding,
    compute_totals,
    evaluate,
    finding_id,
    finding_totals,
    fingerprint,
    retrieval_by_name,
    severity_at_least,
)

RULES = RulesConfig()
PRICING = PricingConfig()
T0 = datetime(2026, 10, 6, 14, 0, 0, tzinfo=timezone.utc)
INPUT = '{"orderId": "801xx0000001", "limit": 10}'


def act(
    id: str,
    *,
    at: float = 0.0,
    session: str | None = "s1",
    name: str = "GetOrderHistory",
    type: str | None = "Apex",
    channel: str = "Text",
    status: str = "Success",
    tokens: int = 1_000,
    reported: float | None = None,
    input: str | None = INPUT,
    source: str = "both",
    elf_tokens: int | None = None,
    billable: bool | None = None,
    agent: str | None = "ServiceAgent",
) -> Action:
    return Action(
        id=id,
        session_id=session,
        action_name=name,
        action_type=type,
        channel=channel,
        status=status,
        tokens=tokens,
        started_at=T0 + timedelta(seconds=at),
        reported_awu=reported,
        action_input=input,
        source=source,
        elf_tokens=elf_tokens,
        billable_override=billable,
        agent_name=agent,
        error_code="TIMEOUT" if status == "Error" else None,
    )


def run(actions: Sequence[Action], **kw: Any) -> AuditResult:
    return evaluate(actions, RULES, PRICING, **kw)


def of_kind(result: AuditResult, kind: str) -> list[Finding]:
    return [f for f in result.findings if f.kind == kind]


def kinds(result: AuditResult) -> list[str]:
    return [f.kind for f in result.findings]


# --- helpers -------------------------------------------------------------------------------


def test_finding_id_is_sha256_of_kind_and_key() -> None:
    expected = hashlib.sha256(b"REDUNDANT_RETRIEVAL|s1|Search|abc").hexdigest()
    assert finding_id("REDUNDANT_RETRIEVAL", "s1", "Search", "abc") == expected
    assert finding_id("CEILING_BREACH", "a1") == hashlib.sha256(b"CEILING_BREACH|a1").hexdigest()


def test_fingerprint_ignores_key_order_at_every_depth() -> None:
    a = '{"b": 1, "a": {"y": [1, {"q": 2, "p": 3}], "x": "é"}}'
    b = '{"a":{"x":"é","y":[1,{"p":3,"q":2}]},"b":1}'
    assert fingerprint(a) == fingerprint(b)
    canonical = json.dumps(json.loads(a), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert fingerprint(a) == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    "text",
    [
        '{"b": [3, {"z": null, "a": true}], "a": {"é": "ü\\n\\"q\\"", "\\u00e9": 1}}',
        '{"f": 1.10, "g": -0.0, "h": 1e400, "i": -1e400, "j": NaN, "k": 12345678901234567890}',
        '{"nested": [[[[{"d": 2, "c": 1}]]]], "empty": {}, "list": []}',
        '"just a string \\u2028"',
        "42",
        "3.5e-7",
        "null",
        "[true, false, Infinity]",
        '{"emoji": "\\ud83d\\ude00", "tab": "\\t", "ctl": "\\u0001"}',
    ],
)
def test_fingerprint_is_sha256_of_specs_json_dumps(text: str) -> None:
    """SPEC §4's formula, spelled out, over values of every JSON type (and the non-finite
    numbers json.loads accepts): the encoder the fingerprint uses writes the same text."""
    canonical = json.dumps(
        json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert fingerprint(text) == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize("bad", [None, "", "{", "not json", '{"a": 1,}'])
def test_fingerprint_of_null_or_invalid_input_is_none(bad: str | None) -> None:
    assert fingerprint(bad) is None


def test_fingerprint_survives_a_lone_surrogate() -> None:
    assert fingerprint('{"q": "\\ud800"}') == fingerprint('{ "q" : "\\ud800" }') is not None


def test_fingerprint_differs_for_different_values_and_list_order() -> None:
    assert fingerprint('{"a": 1}') != fingerprint('{"a": 2}')
    assert fingerprint("[1, 2]") != fingerprint("[2, 1]")


@pytest.mark.parametrize(
    ("sev", "threshold", "expected"),
    [
        ("high", "high", True),
        ("warning", "high", False),
        ("high", "warning", True),
        ("info", "info", True),
        ("info", "warning", False),
        ("high", "off", False),
        ("info", "off", False),
    ],
)
def test_severity_at_least(sev: str, threshold: str, expected: bool) -> None:
    assert severity_at_least(sev, threshold) is expected


def test_kind_severities() -> None:
    assert KINDS == (
        "CEILING_BREACH", "NEAR_CEILING", "RETRY", "RETRY_LOOP", "REDUNDANT_RETRIEVAL",
        "AWU_MISMATCH", "SOURCE_GAP", "LONG_CONVERSATION",
    )
    assert SEVERITY == {
        "CEILING_BREACH": "high", "NEAR_CEILING": "warning", "RETRY": "warning",
        "RETRY_LOOP": "high", "REDUNDANT_RETRIEVAL": "warning", "AWU_MISMATCH": "high",
        "SOURCE_GAP": "info", "LONG_CONVERSATION": "info",
    }


# --- ceilings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "channel", "expected", "wasted"),
    [
        (22_000, "Text", ["CEILING_BREACH"], 2.0),
        (22_000, "Voice", ["CEILING_BREACH"], 3.0),  # awu 4.5 − multiplier 1.5
        (10_001, "Text", ["CEILING_BREACH"], 1.0),
        (10_000, "Text", ["NEAR_CEILING"], 0.0),  # at the ceiling: near, no breach
        (9_000, "Text", ["NEAR_CEILING"], 0.0),  # exactly 0.9 × ceiling
        (8_999, "Text", [], 0.0),
        (0, "Text", [], 0.0),
    ],
)
def test_ceiling_rules(tokens: int, channel: str, expected: list[str], wasted: float) -> None:
    result = run([act("a1", tokens=tokens, channel=channel)])
    assert kinds(result) == expected
    if expected:
        f = result.findings[0]
        assert f.key == "a1" and f.id == finding_id(expected[0], "a1")
        assert f.wasted_awu == wasted
        assert f.action_ids == ("a1",)


def test_ceiling_breach_explains_in_plain_words() -> None:
    (f,) = run([act("a1", tokens=22_000)]).findings
    assert f.explanation == (
        "GetOrderHistory used 22,000 tokens: billed as 3 actions instead of 1, $0.20 extra."
    )
    assert f.wasted_usd == pytest.approx(0.20)
    assert f.severity == "high"
    assert f.detail["units"] == 3 and f.detail["excess_awu"] == 2.0
    json.dumps(f.detail)


def test_utility_at_12000_tokens_is_exempt() -> None:
    result = run([act("u1", type="Utility", tokens=12_000)])
    assert result.findings == []
    assert result.costs["u1"].awu == 0.0


def test_unmetered_action_is_exempt_like_utility() -> None:
    result = run([act("u1", billable=False, tokens=12_000)])
    assert result.findings == []


def test_errors_are_billed_and_can_breach() -> None:
    result = run([act("e1", status="Error", tokens=12_000)])
    assert kinds(result) == ["CEILING_BREACH"]
    assert result.costs["e1"].awu == 2.0


def test_sandbox_halves_wasted_usd_only() -> None:
    (f,) = run([act("a1", tokens=22_000)], sandbox=True).findings
    assert f.wasted_awu == 2.0
    assert f.wasted_usd == pytest.approx(0.10)


# --- retries -------------------------------------------------------------------------------


def test_lone_error_is_not_a_chain() -> None:
    assert run([act("e1", status="Error")]).findings == []


def test_error_then_success_is_a_retry() -> None:
    result = run([act("e1", status="Error"), act("s2", at=30)])
    (f,) = result.findings
    assert (f.kind, f.key, f.action_ids, f.wasted_awu) == ("RETRY", "e1", ("e1", "s2"), 1.0)
    assert f.severity == "warning"
    assert f.started_at == T0


def test_retry_gap_of_exactly_300_s_continues_the_chain() -> None:
    result = run([act("e1", status="Error"), act("s2", at=300)])
    assert kinds(result) == ["RETRY"]


def test_retry_gap_of_300_001_s_breaks_the_chain() -> None:
    result = run([act("e1", status="Error"), act("s2", at=300.001)])
    assert result.findings == []


def test_retry_gap_below_a_millisecond_over_is_compared_in_whole_ms() -> None:
    # 300.0009 s truncates to 300,000 ms: still inside the window
    result = run([act("e1", status="Error"), act("s2", at=300.0009)])
    assert kinds(result) == ["RETRY"]


def test_different_input_is_not_a_retry() -> None:
    result = run([act("e1", status="Error"), act("s2", at=10, input='{"orderId": "other"}')])
    assert result.findings == []


def test_same_input_other_key_order_is_a_retry() -> None:
    reordered = '{"limit": 10, "orderId": "801xx0000001"}'
    result = run([act("e1", status="Error"), act("s2", at=10, input=reordered)])
    assert kinds(result) == ["RETRY"]


def test_different_session_or_action_is_not_a_retry() -> None:
    assert run([act("e1", status="Error"), act("s2", at=10, session="s2")]).findings == []
    assert run([act("e1", status="Error"), act("s2", at=10, name="Other")]).findings == []


def test_chain_ending_on_an_error() -> None:
    result = run([act(f"e{i}", at=60 * i, status="Error") for i in range(3)])
    (f,) = result.findings
    assert (f.kind, f.action_ids, f.wasted_awu) == ("RETRY", ("e0", "e1", "e2"), 2.0)
    assert f.detail["ended_with"] == "Error"
    assert "never succeeded" in f.explanation


def test_chain_ends_at_first_success() -> None:
    actions = [act("e0", status="Error"), act("s1", at=10), act("e2", at=20, status="Error"),
               act("s3", at=30)]
    result = run(actions)
    assert [(f.kind, f.action_ids) for f in result.findings] == [
        ("RETRY", ("e0", "s1")),
        ("RETRY", ("e2", "s3")),
    ]


def test_chain_wasted_counts_each_attempts_awu() -> None:
    result = run([act("e1", status="Error", tokens=25_000), act("s2", at=5, tokens=100)])
    retry = of_kind(result, "RETRY")[0]
    assert retry.wasted_awu == 3.0


@pytest.mark.parametrize(("n", "kind"), [(2, "RETRY"), (4, "RETRY"), (5, "RETRY_LOOP"),
                                         (8, "RETRY_LOOP")])
def test_retry_loop_threshold(n: int, kind: str) -> None:
    actions = [act(f"e{i}", at=60 * i, status="Error") for i in range(n - 1)]
    actions.append(act("ok", at=60 * n))
    (f,) = run(actions).findings
    assert f.kind == kind
    assert f.wasted_awu == n - 1
    assert len(f.action_ids) == n
    assert f.key == "e0"


def test_retry_loop_explanation() -> None:
    actions = [act(f"e{i}", at=60 * i, name="SearchKnowledge", status="Error") for i in range(4)]
    actions.append(act("ok", at=240, name="SearchKnowledge"))
    (f,) = run(actions).findings
    assert f.kind == "RETRY_LOOP" and f.severity == "high"
    assert f.explanation == (
        "SearchKnowledge failed 4 times in a row, each retried within 5 minutes, before "
        "succeeding: 4 wasted attempts, $0.40."
    )


def test_same_timestamp_orders_by_id() -> None:
    actions = [act("b", status="Error"), act("a", status="Error")]
    (f,) = run(actions).findings
    assert f.action_ids == ("a", "b") and f.key == "a"


def test_utility_actions_never_form_chains() -> None:
    actions = [act("u1", type="Utility", status="Error"), act("u2", type="Utility", at=5)]
    assert run(actions).findings == []


def test_null_or_invalid_input_is_a_bad_record_and_joins_no_chain() -> None:
    actions = [
        act("e1", status="Error", input=None),
        act("e2", at=5, status="Error", input=None),
        act("e3", at=10, status="Error", input="{oops"),
        act("e4", at=15, input="{oops"),
    ]
    result = run(actions)
    assert result.findings == []
    assert result.bad_records == ["e1", "e2", "e3", "e4"]


def test_elf_only_actions_never_chain_and_are_not_bad_records() -> None:
    actions = [
        act("e1", status="Error", input=None, source="elf"),
        act("e2", at=5, input=None, source="elf"),
    ]
    result = run(actions)
    assert kinds(result) == ["SOURCE_GAP", "SOURCE_GAP"]
    assert result.bad_records == []
    assert run(actions, multi_source=False).findings == []


def test_elf_only_action_breaks_nothing_and_still_breaches() -> None:
    actions = [act("e1", status="Error"), act("x", at=1, input=None, source="elf", tokens=15_000),
               act("s2", at=2)]
    result = run(actions, multi_source=False)
    assert kinds(result) == ["CEILING_BREACH", "RETRY"]
    assert of_kind(result, "RETRY")[0].action_ids == ("e1", "s2")


# --- redundant retrieval -------------------------------------------------------------------


def retrieval(id: str, at: float, **kw: Any) -> Action:
    kw.setdefault("name", "SearchKnowledge")
    kw.setdefault("type", "Retrieval")
    return act(id, at=at, **kw)


def test_redundant_retrieval_groups_by_session_name_and_fingerprint() -> None:
    reordered = '{"limit": 10, "orderId": "801xx0000001"}'
    actions = [retrieval("r1", 0), retrieval("r2", 600, input=reordered),
               retrieval("r3", 1200, type="Query")]
    (f,) = run(actions).findings
    fp = fingerprint(INPUT)
    assert fp is not None
    assert f.kind == "REDUNDANT_RETRIEVAL"
    assert f.key == f"s1|SearchKnowledge|{fp}"
    assert f.id == finding_id("REDUNDANT_RETRIEVAL", "s1", "SearchKnowledge", fp)
    assert f.action_ids == ("r1", "r2", "r3")
    assert f.wasted_awu == 2.0
    assert f.severity == "warning"


@pytest.mark.parametrize(
    "second",
    [
        {"input": '{"orderId": "other"}'},  # different input
        {"session": "s2"},  # other session
        {"status": "Error"},  # only successful ones count
        {"type": "Apex"},  # not a retrieval
        {"type": "Utility"},  # not billable
        {"input": None},  # bad record
        {"input": None, "source": "elf"},  # ELF-only
    ],
)
def test_redundant_retrieval_decoys(second: dict[str, Any]) -> None:
    result = run([retrieval("r1", 0), retrieval("r2", 600, **second)], multi_source=False)
    assert of_kind(result, "REDUNDANT_RETRIEVAL") == []


def test_redundant_retrieval_wasted_skips_the_first_by_time() -> None:
    actions = [retrieval("r2", 10, tokens=15_000), retrieval("r1", 0)]
    (f,) = of_kind(run(actions), "REDUNDANT_RETRIEVAL")
    assert f.action_ids == ("r1", "r2")
    assert f.wasted_awu == 2.0


def test_retrieval_predicate_by_name_glob() -> None:
    predicate = retrieval_by_name(["*Search*", "Get*"])
    actions = [act("a1", type=None, name="KnowledgeSearch"), act("a2", at=5, type=None,
                                                                 name="KnowledgeSearch")]
    assert kinds(run(actions, is_retrieval=predicate)) == ["REDUNDANT_RETRIEVAL"]
    assert run(actions).findings == []  # default: action type decides


# --- mismatch, source gap ------------------------------------------------------------------


def test_awu_mismatch_signed() -> None:
    result = run([act("over", tokens=12_000, reported=3.0), act("under", tokens=12_000,
                                                                  reported=1.0)])
    by_key = {f.key: f for f in of_kind(result, "AWU_MISMATCH")}
    assert by_key["over"].wasted_awu == 1.0
    assert by_key["under"].wasted_awu == -1.0
    assert by_key["under"].wasted_usd == pytest.approx(-0.10)
    assert "over-billed" in by_key["over"].explanation
    assert "under-billed" in by_key["under"].explanation


def test_no_mismatch_within_tolerance_or_when_unreported() -> None:
    actions = [act("a", reported=1.0 + 1e-12), act("b", reported=None), act("c", channel="Voice",
                                                                             reported=1.5)]
    assert run(actions).findings == []


def test_utility_billed_by_the_org_is_a_mismatch() -> None:
    (f,) = run([act("u", type="Utility", reported=1.0)]).findings
    assert (f.kind, f.wasted_awu) == ("AWU_MISMATCH", 1.0)


@pytest.mark.parametrize(
    ("source", "elf_tokens", "gap"),
    [("awi", None, True), ("elf", None, True), ("both", 900, True), ("both", 1_000, False),
     ("both", None, False), ("data360", None, False)],
)
def test_source_gap(source: str, elf_tokens: int | None, gap: bool) -> None:
    a = act("a1", source=source, elf_tokens=elf_tokens, input=None if source == "elf" else INPUT)
    assert kinds(run([a])) == (["SOURCE_GAP"] if gap else [])
    assert run([a], multi_source=False).findings == []


def test_source_gap_applies_to_utility() -> None:
    assert kinds(run([act("u", type="Utility", source="awi")])) == ["SOURCE_GAP"]


# --- long conversations --------------------------------------------------------------------


def conversation(n: int, **kw: Any) -> list[Action]:
    return [act(f"a{i:03d}", at=i, input=json.dumps({"i": i}), **kw) for i in range(n)]


def test_exactly_twenty_billable_actions_is_not_long() -> None:
    actions = [*conversation(20), act("u", at=99, type="Utility")]
    assert run(actions).findings == []


def test_twenty_one_billable_actions_is_long() -> None:
    (f,) = run(conversation(21)).findings
    assert f.kind == "LONG_CONVERSATION" and f.key == "s1"
    assert f.wasted_awu == 0.0 and f.severity == "info"
    assert f.action_name is None
    assert len(f.action_ids) == 21
    assert f.detail == {"billable_actions": 21, "threshold": 20, "flex_usd": 2.1,
                        "per_conversation_usd": 2.0, "saving_usd": pytest.approx(0.1)}


def test_long_conversation_saving_may_be_negative_in_sandbox() -> None:
    (f,) = run(conversation(21), sandbox=True).findings
    assert f.detail["flex_usd"] == pytest.approx(1.05)
    assert f.detail["saving_usd"] == pytest.approx(-0.95)
    assert "would not be cheaper" in f.explanation


# --- whole-result ordering, totals ---------------------------------------------------------


def test_findings_sorted_by_kind_then_key() -> None:
    actions = [act("z", tokens=22_000), act("b", tokens=22_000), act("n", tokens=9_500),
               act("e", at=1, status="Error", name="X"), act("f", at=2, name="X")]
    result = run(actions)
    assert [(f.kind, f.key) for f in result.findings] == [
        ("CEILING_BREACH", "b"), ("CEILING_BREACH", "z"), ("NEAR_CEILING", "n"), ("RETRY", "e"),
    ]


def test_finding_totals_lists_all_kinds() -> None:
    result = run([act("a", tokens=22_000), act("b", tokens=32_000), act("c", reported=2.0)])
    totals = finding_totals(result.findings)
    assert list(totals) == list(KINDS)
    assert totals["CEILING_BREACH"] == {"count": 2, "wasted_awu": 5.0}
    assert totals["AWU_MISMATCH"] == {"count": 1, "wasted_awu": 1.0}
    assert totals["RETRY"] == {"count": 0, "wasted_awu": 0.0}


def test_compute_totals() -> None:
    actions = [act("a", tokens=22_000, reported=3.0), act("v", channel="Voice", tokens=100),
               act("u", type="Utility", tokens=50, reported=0.0), act("n", reported=None)]
    result = run(actions)
    totals = compute_totals(actions, result.costs, sandbox=False, pricing=PRICING)
    assert totals == {"actions": 4, "billable_actions": 3, "tokens": 23_150, "awu": 5.5,
                      "reported_awu": 3.0, "credits": 110.0, "cost_usd": 0.55}
    sandbox = compute_totals(actions, result.costs, sandbox=True, pricing=PRICING)
    assert sandbox["credits"] == 110.0 and sandbox["cost_usd"] == 0.275


# --- properties ----------------------------------------------------------------------------

_inputs = st.sampled_from([INPUT, '{"limit": 10, "orderId": "801xx0000001"}', '{"q": "x"}', None,
                           "{bad"])


@st.composite
def action_lists(draw: st.DrawFn) -> list[Action]:
    n = draw(st.integers(min_value=0, max_value=30))
    actions = []
    for i in range(n):
        actions.append(
            act(
                f"id{i:03d}",
                at=draw(st.integers(min_value=0, max_value=3_000)) / 2,
                session=draw(st.sampled_from(["s1", "s2", None])),
                name=draw(st.sampled_from(["Search", "Get"])),
                type=draw(st.sampled_from(["Apex", "Query", "Retrieval", "Utility"])),
                channel=draw(st.sampled_from(["Text", "Voice"])),
                status=draw(st.sampled_from(["Success", "Error"])),
                tokens=draw(st.integers(min_value=0, max_value=35_000)),
                reported=draw(st.one_of(st.none(), st.sampled_from([0.0, 1.0, 1.5, 2.0, 4.5]))),
                input=draw(_inputs),
                source=draw(st.sampled_from(["both", "awi", "elf"])),
                elf_tokens=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=35_000))),
            )
        )
    return actions


# database=None: no .hypothesis directory in the working tree
PROPERTY = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(action_lists())
def test_total_awu_is_the_sum_of_per_action_awu(actions: list[Action]) -> None:
    result = run(actions)
    totals = compute_totals(actions, result.costs, sandbox=False, pricing=PRICING)
    assert totals["awu"] == pytest.approx(sum(result.costs[a.id].awu for a in actions))
    assert totals["actions"] == len(actions)


@PROPERTY
@given(action_lists())
def test_wasted_awu_of_each_kind_never_exceeds_total_awu(actions: list[Action]) -> None:
    result = run(actions)
    total_awu = sum(c.awu for c in result.costs.values())
    total_reported = sum(a.reported_awu or 0.0 for a in actions)
    for kind, row in finding_totals(result.findings).items():
        if kind == "AWU_MISMATCH":
            assert abs(row["wasted_awu"]) <= max(total_awu, total_reported) + 1e-9
        else:
            assert 0 <= row["wasted_awu"] <= total_awu + 1e-9
    for f in result.findings:
        assert f.kind in KINDS
        json.dumps(f.detail)


@PROPERTY
@given(action_lists(), st.randoms(use_true_random=False))
def test_findings_do_not_depend_on_input_order(actions: list[Action], rnd: random.Random) -> None:
    shuffled = list(actions)
    rnd.shuffle(shuffled)
    first, second = run(actions), run(shuffled)
    assert [(f.id, f.wasted_awu, f.action_ids) for f in first.findings] == [
        (f.id, f.wasted_awu, f.action_ids) for f in second.findings
    ]
    assert first.bad_records == second.bad_records


@PROPERTY
@given(action_lists())
def test_ids_are_deterministic_and_unique(actions: list[Action]) -> None:
    first, second = run(actions), run(actions)
    assert [f.id for f in first.findings] == [f.id for f in second.findings]
    assert len({f.id for f in first.findings}) == len(first.findings)
    for f in first.findings:
        assert f.id == finding_id(f.kind, *f.key.split("|"))


def test_many_actions_evaluate_quickly() -> None:
    rnd = random.Random(7)
    actions = [
        act(f"id{i:07d}", at=i * 7, session=f"s{i // 25}", name=rnd.choice(["A", "B", "Search"]),
            type=rnd.choice(["Apex", "Query", "Utility"]), tokens=rnd.randrange(0, 25_000),
            status=rnd.choice(["Success", "Success", "Error"]), reported=1.0,
            input=json.dumps({"k": rnd.randrange(5)}))
        for i in range(20_000)
    ]
    result = run(actions)
    assert len(result.costs) == 20_000
    assert {f.kind for f in result.findings} >= {"CEILING_BREACH", "RETRY", "REDUNDANT_RETRIEVAL",
                                                 "AWU_MISMATCH", "LONG_CONVERSATION"}
