"""Deal pipeline and stage maps, and building them from stage labels.

A deal's stage is the pair (pipeline id, stage id); the map pairs hub pairs with app pairs one to
one. Deals sync only in mapped stages. Auto-mapping compares normalised labels with rapidfuzz and
assigns pairs greedily from the best score down, one to one, so that "Closed Won" takes
"closed-won" before "Won" can, and reports every stage it could not map.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec
from rapidfuzz import fuzz

from crmsync.records import PipelineInfo, StageInfo

__all__ = ["PipelineInfo", "StageInfo"]

StagePair = tuple[str, str]  # (pipeline id, stage id)

# Below this similarity (0-100) two labels are not taken for the same stage.
DEFAULT_THRESHOLD = 70.0


class StageProblem(ValueError):
    """A deal's stage cannot be used. `category` is `stage_not_mapped` (excluded while not yet
    linked), `unmapped_stage` or `permission_denied` (the stage is unknown to the connection)."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(detail)
        self.category = category
        self.detail = detail


class StageMap:
    """Hub (pipeline, stage) ⇄ app (pipeline, stage), with the stages each side is known to have.

    `hub_stages` / `app_stages` are None when the side's pipelines could not be read; then an
    unmapped stage cannot be told apart from an unknown one. `hub_permission_denied` says the
    hub refused to list pipelines (a missing scope).
    """

    def __init__(
        self,
        entries: Iterable[tuple[StagePair, StagePair]] = (),
        hub_stages: dict[StagePair, str] | None = None,
        app_stages: dict[StagePair, str] | None = None,
        hub_permission_denied: bool = False,
    ) -> None:
        self.hub_to_app: dict[StagePair, StagePair] = {}
        self.app_to_hub: dict[StagePair, StagePair] = {}
        for hub, app in entries:
            self.hub_to_app[hub] = app
            self.app_to_hub[app] = hub
        self.hub_stages = hub_stages
        self.app_stages = app_stages
        self.hub_permission_denied = hub_permission_denied

    def __len__(self) -> int:
        return len(self.hub_to_app)

    def _unknown(self, side: str, pair: StagePair) -> StageProblem:
        if side == "hub" and self.hub_permission_denied:
            return StageProblem(
                "permission_denied",
                f"hub stage {pair[1]!r} of pipeline {pair[0]!r} cannot be read: grant the "
                "crm.objects.deals.read and pipeline scopes to the HubSpot app",
            )
        return StageProblem(
            "unmapped_stage",
            f"{side} stage {pair[1]!r} of pipeline {pair[0]!r} does not exist (deleted, or not "
            f"visible to this connection): restore it or move the deal to a mapped stage",
        )

    def check(self, side: str, pair: StagePair) -> None:
        """Raise StageProblem unless `pair` is a mapped stage of `side`."""
        known = self.hub_stages if side == "hub" else self.app_stages
        mapped = self.hub_to_app if side == "hub" else self.app_to_hub
        if pair in mapped:
            return
        if known is not None and pair not in known:
            raise self._unknown(side, pair)
        if side == "hub" and self.hub_permission_denied:
            raise self._unknown(side, pair)
        label = known.get(pair, "") if known else ""
        named = f" ({label})" if label else ""
        raise StageProblem(
            "stage_not_mapped",
            f"{side} stage {pair[1]!r}{named} of pipeline {pair[0]!r} is not mapped: add it to "
            "the object sync's stage_map",
        )

    def to_app(self, hub: StagePair) -> StagePair:
        self.check("hub", hub)
        return self.hub_to_app[hub]

    def to_hub(self, app: StagePair) -> StagePair:
        self.check("app", app)
        return self.app_to_hub[app]


def normalize_label(label: str) -> str:
    s = re.sub(r"[\s_\-/.:]+", " ", label.casefold()).strip()
    return s


# Words that name opposite outcomes: labels holding one each are never the same stage,
# however alike the rest ("Closed Won" / "Closed Lost").
_OPPOSITES = [({"won", "win", "wins"}, {"lost", "loss", "lose"}),
              ({"accepted", "approved"}, {"rejected", "declined", "denied"}),
              ({"paid"}, {"unpaid", "overdue"}),
              ({"open"}, {"closed"})]
# Words that decide a stage on their own: two labels sharing one name the same outcome
# ("Deal Won" / "Closed Won").
_DECISIVE = {"won", "lost", "win", "loss"}


def _opposed(ta: set[str], tb: set[str]) -> bool:
    return any((ta & x and tb & y) or (ta & y and tb & x) for x, y in _OPPOSITES)


def label_score(a: str, b: str) -> float:
    """Similarity of two stage labels, 0-100.

    Labels naming opposite outcomes score 0. When one label's words contain the other's
    ("Won" / "Closed Won") the score mixes token_set_ratio (which sees the subset) with plain
    ratio (so an exact label still ranks higher, which the greedy assignment relies on). When
    both have words of their own, only those differing words are compared — a shared
    "closed" must not make two stages alike — unless they share a decisive outcome word; a
    near-identical whole label (a typo) still matches.
    """
    na, nb = normalize_label(a), normalize_label(b)
    if not na or not nb:
        return 0.0
    if na == nb:
        return 100.0
    ta, tb = set(na.split()), set(nb.split())
    if _opposed(ta, tb):
        return 0.0
    if ta <= tb or tb <= ta:
        return 0.5 * fuzz.token_set_ratio(na, nb) + 0.5 * fuzz.ratio(na, nb)
    whole = fuzz.ratio(na, nb)
    if whole >= 90:
        return whole
    if ta & tb & _DECISIVE:
        return 80.0
    rest = fuzz.ratio(" ".join(sorted(ta - tb)), " ".join(sorted(tb - ta)))
    shared = len(ta & tb) / max(len(ta), len(tb))
    return rest * (0.5 + 0.5 * shared) if shared else rest * 0.5


class AutoMapResult(msgspec.Struct, frozen=True):
    entries: tuple[tuple[StagePair, StagePair], ...]
    unmapped_hub: tuple[tuple[StagePair, str], ...]  # (pair, label)
    unmapped_app: tuple[tuple[StagePair, str], ...]


def _assign(
    left: list[tuple[str, str]], right: list[tuple[str, str]], threshold: float
) -> list[tuple[str, str]]:
    """Greedy one-to-one assignment of (id, label) items by descending label score."""
    scored = sorted(
        ((label_score(ll, rl), i, j) for i, (_, ll) in enumerate(left)
         for j, (_, rl) in enumerate(right)),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    used_l: set[int] = set()
    used_r: set[int] = set()
    pairs = []
    for score, i, j in scored:
        if score < threshold:
            break
        if i in used_l or j in used_r:
            continue
        used_l.add(i)
        used_r.add(j)
        pairs.append((left[i][0], right[j][0]))
    return pairs


def auto_map(
    hub: Iterable[PipelineInfo],
    app: Iterable[PipelineInfo],
    fixed: Iterable[tuple[StagePair, StagePair]] = (),
    threshold: float = DEFAULT_THRESHOLD,
) -> AutoMapResult:
    """Map stages by label similarity, keeping the `fixed` (configured) entries.

    Pipelines are paired first (by label; a lone pipeline on each side pairs regardless), then
    the stages inside each pipeline pair.
    """
    hub_p = list(hub)
    app_p = list(app)
    fixed_l = list(fixed)
    taken_hub = {h for h, _ in fixed_l}
    taken_app = {a for _, a in fixed_l}
    if len(hub_p) == 1 and len(app_p) == 1:
        pipe_pairs = [(hub_p[0].id, app_p[0].id)]
    else:
        pipe_pairs = _assign([(p.id, p.label) for p in hub_p], [(p.id, p.label) for p in app_p],
                             threshold)
    by_hub = {p.id: p for p in hub_p}
    by_app = {p.id: p for p in app_p}
    entries = list(fixed_l)
    for hp, ap in pipe_pairs:
        left = [(s.id, s.label) for s in by_hub[hp].stages if (hp, s.id) not in taken_hub]
        right = [(s.id, s.label) for s in by_app[ap].stages if (ap, s.id) not in taken_app]
        for hs, as_ in _assign(left, right, threshold):
            entries.append(((hp, hs), (ap, as_)))
    mapped_hub = {h for h, _ in entries}
    mapped_app = {a for _, a in entries}
    unmapped_hub = tuple(((p.id, s.id), s.label) for p in hub_p for s in p.stages
                         if (p.id, s.id) not in mapped_hub)
    unmapped_app = tuple(((p.id, s.id), s.label) for p in app_p for s in p.stages
                         if (p.id, s.id) not in mapped_app)
    return AutoMapResult(tuple(entries), unmapped_hub, unmapped_app)


def known_stages(pipelines: Iterable[PipelineInfo]) -> dict[StagePair, str]:
    return {(p.id, s.id): s.label for p in pipelines for s in p.stages}
