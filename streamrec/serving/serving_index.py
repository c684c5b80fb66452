"""One model version served from a FAISS index, kept current with the catalog.

Rows are items in insertion order: the version's items first, then catalog
items that arrived later (embedded by the item tower, no retraining). An item
whose content changes gets a new row and its old row is switched off. Only
items in the catalog are ever answered: an id the version learned from events
alone, or one whose catalog tombstone arrived, stays switched off.
Filters work at two depths: the allow-bitmap over rows, passed into the
search, holds what no one may get (out of stock, stale rows), ANDed with the
rows a placement's rule allows; what one user or one query must not get
(purchases, optionally clicks, the item itself for similar items) is bounded
and dropped from a search asked for that many more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from streamrec.embeddings.encoding import encode_queries
from streamrec.embeddings.model import embed_items, embed_users, to_tensors
from streamrec.embeddings.neighbours import TowerMoments, blended, newest_last, vote_moments
from streamrec.embeddings.versions import ModelVersion
from streamrec.foundation.catalog import CatalogChange, Removed
from streamrec.foundation.features import UserFeatures
from streamrec.foundation.popular import excluded_items, pick_popular, preferred_categories
from streamrec.foundation.rules import Rule
from streamrec.foundation.schema import Item, ScoredItem
from streamrec.foundation.settings import Settings
from streamrec.index.kinds import BuiltIndex, IndexSpec, build
from streamrec.serving.placements import RuleRows, boosted, promoted
from streamrec.serving.ranking import diversify, first_k
from streamrec.serving.rows import MAX_EXACT_MATCHES, AllowBitmap, TitleWords

log = logging.getLogger(__name__)

DIVERSE_CANDIDATES = 4  # with diversity on, k times this many candidates are searched to choose from


@dataclass(frozen=True)
class ServingConfig:
    affinity_half_life_s: float = Settings.default("affinity_half_life_s")
    exclude_clicked: bool = Settings.default("exclude_clicked")
    search_blend: float = Settings.default("search_blend")  # weight of the user's embedding in personalised search
    search_candidates: int = Settings.default("search_candidates")  # semantic candidates re-ranked per search
    diversity: float = Settings.default("diversity")  # the per-category cap's default


def _content(item: Item) -> tuple:
    """What the item tower reads: a change here needs a new vector."""
    return (item.title, item.category, item.price)


class ServingIndex:
    def __init__(
        self,
        version: ModelVersion,
        spec: IndexSpec,
        catalog: Iterable[Item],
        config: ServingConfig,
        threads: int | None = None,
    ):
        started = time.perf_counter()
        self.version = version
        self.model = version.model
        self.config = config
        self.index: BuiltIndex = build(spec, version.item_vectors, threads=threads)
        self.row_ids: list[str] = list(version.item_ids)
        self.row_of: dict[str, int] = {item_id: row for row, item_id in enumerate(self.row_ids)}
        self.row_category: list[str] = [""] * len(self.row_ids)
        # Cold-start ranking per row: the version's training counts until live
        # popularity arrives (`set_popularity`), which then ranks first.
        self.trained_popularity = np.asarray(version.item_popularity, dtype=np.float32)
        self.popularity = self.trained_popularity.copy()
        self.items: dict[str, Item] = {}
        self._titles = TitleWords()
        self._allow = AllowBitmap(len(self.row_ids))  # every row off until the catalog switches it on
        self._rule_rows = RuleRows()  # placements' rows, kept up to date from the rows the catalog touches
        self.sync(catalog, trained_content=True)
        self._popular: np.ndarray | None = None
        # The second source: neighbours over the version's rows, at the weight the trainer chose.
        self.blend_weight = version.blend_weight
        self._trained_rows = len(version.item_ids)
        self._moments = TowerMoments.of(version.item_vectors) if self.blend_weight > 0 else None
        log.info(
            "index %s for model %s: %d rows, %.1f s",
            spec.label(),
            version.version,
            self.index.ntotal,
            time.perf_counter() - started,
        )

    def is_allowed(self, item_id: str, allow: AllowBitmap | None = None) -> bool:
        row = self.row_of.get(item_id)
        return row is not None and (allow or self._allow).allows(row)

    def allowed(self, rule: Rule | None) -> AllowBitmap:
        """The rows an answer under `rule` may hold: in stock, current, and through its filters."""
        return self._rule_rows.allowed(rule, self._allow, self.row_ids, self.items)

    # --- keeping up with the catalog ------------------------------------------

    def sync(self, changes: Iterable[CatalogChange], *, trained_content: bool = False) -> int:
        """Apply catalog changes in order: new or changed items are embedded and
        added, stock flags take effect at once, removed items are switched off.
        `trained_content`: the version's own items are taken as embedded already
        (the start-up sync). Returns rows added."""
        fresh: dict[str, Item] = {}
        for item in changes:
            if type(item) is Removed:
                self._remove(item.item_id)
                fresh.pop(item.item_id, None)
                continue
            known = self.items.get(item.item_id)
            row = self.row_of.get(item.item_id)
            if (
                row is None
                or (known is not None and _content(known) != _content(item))
                or (known is None and not trained_content)
            ):
                fresh[item.item_id] = item
            else:
                if known is None:
                    self._titles.add(row, item.title)
                self.row_category[row] = item.category
                self._allow.set([row], item.in_stock)
                if not trained_content:  # the start-up sync: no rule has rows yet
                    self._rule_rows.touch([row])
            self.items[item.item_id] = item
        if fresh:
            self._add(list(fresh.values()))
        return len(fresh)

    def _remove(self, item_id: str) -> None:
        row = self.row_of.get(item_id)
        if row is not None:
            self._allow.set([row], False)
        self.items.pop(item_id, None)

    def _add(self, items: list[Item]) -> None:
        vectors = self.item_vectors(items)
        first = len(self.row_ids)
        self.index.add(vectors)
        self._allow.grow(first + len(items))
        self._rule_rows.touch(list(range(first, first + len(items))))
        self.popularity = np.concatenate([self.popularity, np.zeros(len(items), dtype=np.float32)])
        self.trained_popularity = np.concatenate([self.trained_popularity, np.zeros(len(items), dtype=np.float32)])
        for offset, item in enumerate(items):
            row = first + offset
            old = self.row_of.get(item.item_id)
            if old is not None:
                self._allow.set([old], False)  # the stale vector stays, switched off
                self.popularity[row] = self.popularity[old]
                self.trained_popularity[row] = self.trained_popularity[old]
            self.row_ids.append(item.item_id)
            self.row_of[item.item_id] = row
            self.row_category.append(item.category)
            self._allow.set([row], item.in_stock)
            self._titles.add(row, item.title)
        self._popular = None

    # --- vectors --------------------------------------------------------------

    def item_vectors(self, items: list[Item]) -> np.ndarray:
        return embed_items(self.model, items)

    def user_vectors(self, users: list[UserFeatures], now: float | None = None) -> np.ndarray:
        """Each user's vector at the user's own event time (the newest event's
        ts), as training encodes each example at its event's time; or all at
        `now`. Never the wall clock: a replayed old log and a live one alike
        get the ages and decays the model learned from."""
        clocks = [user.last_ts for user in users] if now is None else now
        return embed_users(self.model, users, clocks, self.config.affinity_half_life_s)

    def _item(self, item_id: str) -> Item:
        return self.items.get(item_id) or Item(item_id, "", "")  # a log's bare id: how the trainer saw it

    def _category(self, item_id: str) -> str:
        return self._item(item_id).category

    # --- answers ----------------------------------------------------------------

    def recommend(
        self,
        user: UserFeatures | None,
        k: int,
        now: float | None = None,
        *,
        diversity: float | None = None,
        explain: bool = False,
        rule: Rule | None = None,
    ) -> list[ScoredItem]:
        """Top-k for a user; without any history, the cold-start answer."""
        return self.recommend_many([user], k, now, diversity=diversity, explain=explain, rule=rule)[0]

    def recommend_many(
        self,
        users: Sequence[UserFeatures | None],
        k: int,
        now: float | None = None,
        *,
        diversity: float | None = None,
        explain: bool = False,
        rule: Rule | None = None,
    ) -> list[list[ScoredItem]]:
        """Top-k for each user, searched together (the publisher's batches).

        Each user's search over the allowed rows asks for k plus the items
        that user excludes (purchases are bounded), then the exclusions are
        dropped: k is kept without a per-user bitmap. With
        `diversity` (default: the configured one) more candidates are searched
        and each category is capped (`ranking.diversify`); `explain` adds `because` and
        `source`. A placement's `rule` narrows the rows, reorders by its
        boosts (more candidates searched too) and places its promoted items."""
        diversity = self.config.diversity if diversity is None else diversity
        allow = self.allowed(rule)
        answers: list[list[ScoredItem]] = [[] for _ in users]
        excluded = [self._excluded(user) for user in users]
        warm = [n for n, user in enumerate(users) if user is not None and user.recent_items]
        for n in set(range(len(users))) - set(warm):
            answers[n] = self.cold_start(users[n], k, now, allow)
            if explain:
                answers[n] = [replace(s, source="popularity") for s in answers[n]]
        if warm:
            found = self._warm(users, warm, excluded, k, now, diversity, explain, rule)
            for n, answer in zip(warm, found, strict=True):
                answers[n] = answer
        may_show = [self._may_show(allow, skip) for skip in excluded]
        return [promoted(answer, rule, k, shows) for answer, shows in zip(answers, may_show, strict=True)]

    def _may_show(self, allow: AllowBitmap, skip: set[str]) -> Callable[[str], bool]:
        """Whether an item may be placed in an answer: allowed, and not one the answer skips."""
        return lambda item_id: item_id not in skip and self.is_allowed(item_id, allow)

    def _warm(self, users, warm, excluded, k, now, diversity, explain, rule) -> list[list[ScoredItem]]:
        """The answers of users with a history: the towers' search, the neighbours' blend, the rule's boosts."""
        depth = k * DIVERSE_CANDIDATES if diversity > 0 or (rule is not None and rule.boosts) else k
        allow = self.allowed(rule)
        vectors = self.user_vectors([users[n] for n in warm], now)
        scores, rows = self._search_deep_enough(vectors, depth, [len(excluded[n]) for n in warm], allow)
        led_by_votes = None
        if self._moments is not None:
            scores, rows, led_by_votes = self._blend(warm, users, vectors, scores, rows, allow)
        answers = []
        for i, n in enumerate(warm):
            found = boosted(first_k(scores[i], rows[i], self.row_ids, depth, excluded[n]), rule, self.items.get)
            answer = diversify(found, k, diversity, self._category)
            if explain:
                led = led_by_votes[i] if led_by_votes is not None else np.zeros(len(rows[i]), dtype=bool)
                answer = self.explain(users[n], answer, self._sources(answer, rows[i], led))
            answers.append(answer)
        return answers

    def _search_deep_enough(
        self, vectors: np.ndarray, depth: int, skipped: list[int], allow: AllowBitmap
    ) -> tuple[list, list]:
        """Each query's top `depth` rows plus as many as its user skips, rounded
        up to a power of two; queries of the same depth are searched together.
        One heavy buyer in a batch no longer deepens every user's search (an
        HNSW search costs about as much as its k, past efSearch), and a user's
        answer does not depend on who shares the batch."""
        extra = np.asarray(skipped)
        depths = depth + np.where(extra > 0, 1 << np.ceil(np.log2(np.maximum(extra, 1))).astype(int), 0)
        scores, rows = [None] * len(skipped), [None] * len(skipped)
        for searched in np.unique(depths):
            members = np.flatnonzero(depths == searched)
            found_scores, found_rows = self.index.search(vectors[members], int(searched), allow.bits)
            for j, n in enumerate(members):
                scores[n], rows[n] = found_scores[j], found_rows[j]
        return scores, rows

    def _sources(self, answer: list[ScoredItem], rows: np.ndarray, led_by_votes: np.ndarray) -> dict[str, str]:
        """Which source ranked each answered item: the item neighbours' votes or the towers."""
        by_row = dict(zip(rows.tolist(), led_by_votes.tolist(), strict=True))
        return {s.item_id: "neighbours" if by_row.get(self.row_of[s.item_id]) else "towers" for s in answer}

    def _blend(self, warm: list[int], users: list, vectors: np.ndarray, scores, rows, allow: AllowBitmap):
        """Each user's candidates from both sources, ranked by the blended score:
        the index's rows and the rows the user's recent items vote for; with
        each, whether the votes' part of its score outweighs the towers'."""
        neighbours, trained = self.version.neighbours, self._trained_rows
        tower_means, tower_stds = self._moments.standardise(vectors)
        merged = []
        for i, n in enumerate(warm):
            found = rows[i] >= 0
            history = np.array(
                [self.row_of.get(item, trained) for item in newest_last(users[n].recent_items)], dtype=np.int64
            )
            voted, votes = neighbours.votes(history, self.version.recency_half_life)
            allowed = allow.allows_each(voted)
            vote_mean, vote_std = vote_moments(votes, trained)
            extra = np.setdiff1d(voted[allowed], rows[i][found])
            candidates = np.concatenate([rows[i][found], extra])
            if not len(candidates):  # nothing allowed at all (every item out of stock)
                merged.append((np.zeros(0), candidates, np.zeros(0, dtype=bool)))
                continue
            tower = np.concatenate([scores[i][found], self.version.item_vectors[extra] @ vectors[i]])
            all_votes = np.zeros(len(candidates))
            by_row = np.argsort(candidates)
            at = np.minimum(np.searchsorted(candidates[by_row], voted), len(candidates) - 1)
            hit = candidates[by_row][at] == voted
            all_votes[by_row[at[hit]]] = votes[hit]
            score = blended(tower, tower_means[i], tower_stds[i], all_votes, vote_mean, vote_std, self.blend_weight)
            order = np.argsort(-score, kind="stable")
            votes_part = self.blend_weight * (all_votes - vote_mean) / vote_std
            merged.append((score[order], candidates[order], (2 * votes_part > score)[order]))  # votes > towers
        return [m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged]

    def explain(
        self, user: UserFeatures | None, answer: list[ScoredItem], sources: dict[str, str] | None = None
    ) -> list[ScoredItem]:
        """Each item with `because`: the user's recent item whose vector is
        nearest to it (what contributed most), or its category when the user
        has no recent item the model knows; and with its `source` when given."""
        recent = list(dict.fromkeys(reversed(user.recent_items))) if user is not None else []
        sources = sources or {}
        if not answer:
            return answer
        if not recent:
            return [
                ScoredItem(s.item_id, s.score, self._item(s.item_id).category or None, sources.get(s.item_id))
                for s in answer
            ]
        answered = self.item_vectors([self._item(s.item_id) for s in answer])
        likeness = answered @ self.item_vectors([self._item(i) for i in recent]).T
        itself = np.array([[s.item_id == i for i in recent] for s in answer])
        nearest = np.where(itself, -np.inf, likeness).argmax(axis=1)  # an item is never its own reason
        return [
            ScoredItem(s.item_id, s.score, recent[int(j)] if not itself[n, j] else None, sources.get(s.item_id))
            for n, (s, j) in enumerate(zip(answer, nearest, strict=True))
        ]

    def _excluded(self, user: UserFeatures | None) -> set[str]:
        return excluded_items(user, self.config.exclude_clicked)

    def set_popularity(self, live: dict[str, float]) -> None:
        """Rank cold-start answers by live popularity (interactions in the
        recent window, from the workers' item statistics); the version's
        training counts only break ties. Without live counts nothing changes."""
        if not live:
            return
        trained = self.trained_popularity
        tie_break = trained / (1.0 + float(trained.max(initial=0.0)))  # below 1: never outranks a live count
        self.popularity = np.array([live.get(i, 0.0) for i in self.row_ids], dtype=np.float32) + tie_break
        self._popular = None

    def _popular_rows(self) -> np.ndarray:
        if self._popular is None:
            self._popular = np.argsort(-self.popularity, kind="stable")
        return self._popular

    def cold_start(
        self, user: UserFeatures | None, k: int, now: float | None = None, allow: AllowBitmap | None = None
    ) -> list[ScoredItem]:
        """Popular items in stock (and in `allow`); first from the user's strongest
        categories when there is any signal (a new user with no clicks gets the global list)."""
        allow = allow or self._allow
        top = float(self.popularity.max()) if len(self.popularity) and self.popularity.max() > 0 else 1.0

        def ranked():
            for row in self._popular_rows():
                if allow.allows(row):
                    yield self.row_ids[row], self.row_category[row], float(self.popularity[row]) / top

        preferred = preferred_categories(user, self.config.affinity_half_life_s, now)
        return pick_popular(ranked, preferred, self._excluded(user), k)

    def similar(self, item_id: str, k: int, rule: Rule | None = None) -> list[ScoredItem] | None:
        """Items near `item_id` (itself excluded), under a placement's `rule`;
        None for an item not in the catalog."""
        found = self._similar(item_id, k, rule)
        return None if found is None else self._promoted(found, item_id, k, rule)

    def _similar(self, item_id: str, k: int, rule: Rule | None) -> list[ScoredItem] | None:
        if item_id not in self.row_of or item_id not in self.items:
            return None
        depth = k * DIVERSE_CANDIDATES if rule is not None and rule.boosts else k
        vector = self.item_vectors([self._item(item_id)])
        scores, rows = self.index.search(vector, depth + 1, self.allowed(rule).bits)  # the item itself is among them
        return boosted(first_k(scores[0], rows[0], self.row_ids, depth, {item_id}), rule, self.items.get)[:k]

    def _promoted(self, answer: list[ScoredItem], item_id: str, k: int, rule: Rule | None) -> list[ScoredItem]:
        """An item answer with the rule's promoted items placed (never the item itself)."""
        return promoted(answer, rule, k, self._may_show(self.allowed(rule), {item_id}))

    def bought_together(self, item_id: str, k: int, rule: Rule | None = None) -> list[ScoredItem] | None:
        """Items bought in the same baskets as `item_id`, the most habitual
        first, then items near it to fill `k` (a young shop, a new item);
        each says its `source`. None for an item not in the catalog."""
        similar = self._similar(item_id, k, rule)
        if similar is None:
            return None
        found: list[ScoredItem] = []
        together, row = self.version.bought_together, self.row_of[item_id]
        if together is not None and row < self._trained_rows:
            rows, weights = together.rows[row], together.weights[row]
            rows, weights = rows[rows >= 0], weights[rows >= 0]
            allowed = self.allowed(rule).allows_each(rows)
            found = [
                ScoredItem(self.row_ids[r], float(w), source="bought_together")
                for r, w in zip(rows[allowed][:k], weights[allowed][:k], strict=True)
            ]
        taken = {s.item_id for s in found}
        fill = [replace(s, source="similar") for s in similar if s.item_id not in taken]
        return self._promoted([*found, *fill][:k], item_id, k, rule)

    def search(
        self,
        query: str,
        k: int,
        user: UserFeatures | None = None,
        now: float | None = None,
        rule: Rule | None = None,
    ) -> list[ScoredItem]:
        """Semantic candidates for the query, plus every in-stock item whose title
        holds all the query's words; exact matches rank first. With a user, the
        score blends in the user's embedding (`search_blend`). A placement's
        `rule` filters (what a shopper typed is not reordered or promoted over)."""
        allow = self.allowed(rule)
        with torch.no_grad():
            query_vector = self.model.query_vectors(
                to_tensors({"q": encode_queries([query], self.version.config)})["q"]
            ).numpy()
        _, rows = self.index.search(query_vector, max(k, self.config.search_candidates), allow.bits)
        candidates = {int(r) for r in rows[0] if r >= 0}
        exact = self._title_matches(query, allow)
        candidates |= exact
        if not candidates:
            return []
        ordered = sorted(candidates)
        vectors = self.item_vectors([self._item(self.row_ids[r]) for r in ordered])
        scores = vectors @ query_vector[0]
        if user is not None and user.recent_items:
            blend = self.config.search_blend
            scores = (1 - blend) * scores + blend * (vectors @ self.user_vectors([user], now)[0])
        ranked = sorted(zip(ordered, scores, strict=True), key=lambda rs: (rs[0] not in exact, -rs[1]))
        return [ScoredItem(self.row_ids[r], float(s)) for r, s in ranked[:k]]

    def _title_matches(self, query: str, allow: AllowBitmap) -> set[int]:
        """Allowed current rows whose titles hold all the query's words, the first MAX_EXACT_MATCHES."""
        matches = self._titles.matches(query)
        allowed = {r for r in matches if allow.allows(r) and self.row_of.get(self.row_ids[r]) == r}
        return set(sorted(allowed)[:MAX_EXACT_MATCHES])
