"""Stage maps and auto-mapping by label similarity (DESIGN.md "The decision", issue 2 §3):
deals sync only in mapped stages; auto-mapping pairs similar labels one to one, never maps a
lost stage to a won one, and reports the stages it could not map on both sides."""

from __future__ import annotations

import pytest

from crmsync.engine.stages import (
    StageMap,
    StageProblem,
    auto_map,
    known_stages,
    label_score,
)
from crmsync.records import PipelineInfo, StageInfo

# HubSpot's default sales pipeline, as the pipelines API lists it.
HUB_DEFAULT = PipelineInfo("default", "Sales Pipeline", (
    StageInfo("appointmentscheduled", "Appointment Scheduled"),
    StageInfo("qualifiedtobuy", "Qualified To Buy"),
    StageInfo("presentationscheduled", "Presentation Scheduled"),
    StageInfo("decisionmakerboughtin", "Decision Maker Bought-In"),
    StageInfo("contractsent", "Contract Sent"),
    StageInfo("closedwon", "Closed Won"),
    StageInfo("closedlost", "Closed Lost"),
))


def app_pipeline(won: str, lost: str, *others: str) -> PipelineInfo:
    stages = [StageInfo(f"s{i}", label) for i, label in enumerate(others)]
    stages += [StageInfo("won", won), StageInfo("lost", lost)]
    return PipelineInfo("1", "Sales", tuple(stages))


def mapping(result: object) -> dict[tuple[str, str], tuple[str, str]]:
    return dict(result.entries)  # type: ignore[attr-defined]


WON_LOST_VARIANTS = [
    ("Closed Won", "Closed Lost"),
    ("closed-won", "closed-lost"),
    ("Won", "Lost"),
    ("CLOSED WON", "CLOSED LOST"),
    ("closed_won", "closed_lost"),
    ("Closed - Won", "Closed - Lost"),
    ("Won ", "Lost "),
    ("Deal Won", "Deal Lost"),
]


@pytest.mark.parametrize(("won", "lost"), WON_LOST_VARIANTS)
def test_won_and_lost_map_to_their_counterparts(won: str, lost: str) -> None:
    result = auto_map([HUB_DEFAULT], [app_pipeline(won, lost, "Qualified", "Proposal Sent")])
    m = mapping(result)
    assert m.get(("default", "closedwon")) == ("1", "won")
    assert m.get(("default", "closedlost")) == ("1", "lost")


@pytest.mark.parametrize("won", ["Closed Won", "closed-won", "Won", "Deal Won"])
def test_closed_lost_never_maps_to_a_won_stage(won: str) -> None:
    # The app has no lost stage at all: "Closed Lost" must stay unmapped, not take "won".
    app = PipelineInfo("1", "Sales", (StageInfo("new", "New"), StageInfo("won", won)))
    result = auto_map([HUB_DEFAULT], [app])
    m = mapping(result)
    assert m.get(("default", "closedlost")) != ("1", "won")
    assert (("default", "closedlost"), "Closed Lost") in result.unmapped_hub


@pytest.mark.parametrize(("a", "b"), [("Closed Lost", "Closed Won"), ("Closed Lost", "Won"),
                                      ("closed-lost", "closed won"), ("Lost", "Closed Won")])
def test_lost_and_won_labels_score_below_any_match(a: str, b: str) -> None:
    assert label_score(a, b) < label_score("Closed Won", "Won")
    assert label_score(a, b) < 50


def test_unmapped_stages_are_reported_on_both_sides() -> None:
    app = PipelineInfo("1", "Sales", (
        StageInfo("q", "Qualified"), StageInfo("hold", "On Hold"),
        StageInfo("won", "Won"), StageInfo("lost", "Lost"),
    ))
    result = auto_map([HUB_DEFAULT], [app])
    m = mapping(result)
    assert m[("default", "qualifiedtobuy")] == ("1", "q")
    unmapped_hub = {pair for pair, _ in result.unmapped_hub}
    unmapped_app = {pair for pair, _ in result.unmapped_app}
    assert ("default", "contractsent") in unmapped_hub
    assert ("1", "hold") in unmapped_app
    # every stage is either mapped or reported, on each side
    assert unmapped_hub | set(m) == set(known_stages([HUB_DEFAULT]))
    assert unmapped_app | set(m.values()) == set(known_stages([app]))
    assert dict(result.unmapped_app)[("1", "hold")] == "On Hold"


def test_auto_map_is_one_to_one() -> None:
    app = PipelineInfo("1", "Sales", (StageInfo("won", "Won"),))
    hub = PipelineInfo("default", "Sales", (StageInfo("a", "Won"), StageInfo("b", "Closed Won")))
    result = auto_map([hub], [app])
    assert list(mapping(result).values()) == [("1", "won")]
    assert mapping(result) == {("default", "a"): ("1", "won")}  # the exact label first
    assert [p for p, _ in result.unmapped_hub] == [("default", "b")]


def test_configured_entries_are_kept() -> None:
    app = app_pipeline("Won", "Lost")
    fixed = [(("default", "closedwon"), ("1", "lost"))]  # odd, but the operator said so
    result = auto_map([HUB_DEFAULT], [app], fixed=fixed)
    m = mapping(result)
    assert m[("default", "closedwon")] == ("1", "lost")
    assert list(m.values()).count(("1", "lost")) == 1  # not given out a second time
    assert m.get(("default", "closedlost")) != ("1", "won")


def test_pipelines_pair_by_label() -> None:
    hub_renewals = PipelineInfo("777", "Renewals", (StageInfo("rw", "Renewed"),
                                                    StageInfo("ch", "Churned")))
    app_sales = app_pipeline("Won", "Lost")
    app_renewals = PipelineInfo("2", "renewals", (StageInfo("r", "renewed"),
                                                  StageInfo("c", "churned")))
    result = auto_map([HUB_DEFAULT, hub_renewals], [app_renewals, app_sales])
    m = mapping(result)
    assert m[("777", "rw")] == ("2", "r")
    assert m[("777", "ch")] == ("2", "c")
    assert m[("default", "closedwon")] == ("1", "won")


# --- StageMap --------------------------------------------------------------------------------

MAP = StageMap(
    entries=[(("default", "closedwon"), ("1", "won"))],
    hub_stages=known_stages([HUB_DEFAULT]),
    app_stages={("1", "won"): "Won", ("1", "new"): "New"},
)


def test_stage_map_translates_both_ways() -> None:
    assert MAP.to_app(("default", "closedwon")) == ("1", "won")
    assert MAP.to_hub(("1", "won")) == ("default", "closedwon")


@pytest.mark.parametrize(("side", "pair", "category"), [
    ("hub", ("default", "contractsent"), "stage_not_mapped"),  # exists, not mapped
    ("app", ("1", "new"), "stage_not_mapped"),
    ("hub", ("default", "gone"), "unmapped_stage"),  # unknown to the side
    ("app", ("9", "won"), "unmapped_stage"),
])
def test_stage_problems(side: str, pair: tuple[str, str], category: str) -> None:
    with pytest.raises(StageProblem) as exc:
        MAP.check(side, pair)
    assert exc.value.category == category
    assert pair[1] in exc.value.detail


def test_hub_pipelines_not_readable_is_a_permission_problem() -> None:
    smap = StageMap(entries=[], hub_stages=None, hub_permission_denied=True)
    with pytest.raises(StageProblem) as exc:
        smap.check("hub", ("default", "closedwon"))
    assert exc.value.category == "permission_denied"
