"""The training loop: sampled softmax over in-batch and random negatives.

In-batch negatives are the other positives of the batch, so popular items are
over-sampled as negatives: their logits are corrected by the log of their
sampling probability (log-Q), estimated from the training counts. Random
negatives drawn uniformly from the catalog cover the long tail. Early stopping
watches recall@K on the validation users' windows (`streamrec.trainer.eval_protocol`).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from streamrec.embeddings.encoding import ModelConfig, encode_items
from streamrec.embeddings.model import TwoTower, to_tensors
from streamrec.foundation.schema import Item
from streamrec.foundation.settings import Settings
from streamrec.trainer.eval_protocol import Quality
from streamrec.trainer.evaluate import encode_examples, encode_holdout, judge_encoded
from streamrec.trainer.examples import Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = Settings.default("train_epochs")
    batch_size: int = Settings.default("train_batch_size")
    lr: float = Settings.default("train_lr")
    weight_decay: float = 1e-5
    temperature: float = Settings.default("train_temperature")
    random_negatives: int = Settings.default("train_random_negatives")
    patience: int = Settings.default("train_patience")
    budget_s: float = Settings.default("train_budget_s")
    eval_k: int = 20
    query_weight: float = 0.5  # of the title-as-query loss that trains the search tower
    seed: int = Settings.default("train_seed")


@dataclass
class TrainResult:
    model: TwoTower
    valid: Quality
    history: list[dict] = field(default_factory=list)
    examples_per_s: float = 0.0
    cut_short: bool = False  # the time budget, not the epochs or early stopping, ended it


def _take(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return {name: tensor[rows] for name, tensor in batch.items()}


def _title_query_loss(
    model: TwoTower,
    titled: torch.Tensor,
    titles: torch.Tensor,
    item_vectors: torch.Tensor,
    correction: torch.Tensor,
    masked: torch.Tensor,
    config: TrainConfig,
) -> torch.Tensor:
    """The query tower learns search: an item's own title (its token mean), as
    a query, should find that item among the step's candidates (items without
    a title are skipped)."""
    if not titled.any():
        return titles.new_zeros((), dtype=torch.float32)
    logits = (model.query_vectors_of_text(titles) @ item_vectors.T).float() / config.temperature - correction
    logits = logits.masked_fill(masked, -1e4)
    target = torch.arange(len(titles), device=titles.device)
    return F.cross_entropy(logits[titled], target[titled])


def _optimisers(model: TwoTower, config: TrainConfig) -> list[torch.optim.Optimizer]:
    """Lazy Adam on the hashed tables (a step costs the rows it touched; a
    dense AdamW over every bucket was 60% of a CPU step), AdamW on the rest."""
    sparse = {id(p) for p in model.sparse_tables()}
    dense = [p for p in model.parameters() if id(p) not in sparse]
    return [
        torch.optim.SparseAdam(model.sparse_tables(), lr=config.lr),
        torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay),
    ]


@dataclass(frozen=True)
class TrainingData:
    """The examples and the catalog as tensors on the training device, and each
    item's log sampling probability (log-Q) as an in-batch negative."""

    users: dict[str, torch.Tensor]
    targets: torch.Tensor
    weights: torch.Tensor
    catalog: dict[str, torch.Tensor]
    log_q: torch.Tensor

    @classmethod
    def encode(
        cls, split: Split, items: list[Item], model_config: ModelConfig, half_life_s: float, device: torch.device
    ) -> TrainingData:
        encoded = encode_examples(split.train, items, model_config, half_life_s)
        index = {item.item_id: row for row, item in enumerate(items)}
        counts = torch.ones(len(items), device=device)  # add-one: unseen items are possible too
        for item_id, count in split.item_counts.items():
            if item_id in index:
                counts[index[item_id]] += count
        return cls(
            users=to_tensors(encoded.users, device),
            targets=torch.as_tensor(encoded.targets, device=device),
            weights=torch.as_tensor(encoded.weights, device=device),
            catalog=to_tensors(encode_items(items, model_config), device),
            log_q=torch.log(counts / counts.sum()),
        )

    def __len__(self) -> int:
        return len(self.targets)


def batch_loss(
    model: TwoTower, data: TrainingData, rows: torch.Tensor, negatives: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """The weighted sampled-softmax loss of one batch of examples (`rows`)
    against the batch's positives and `negatives`, log-Q corrected, plus the
    title-as-query loss that trains the search tower."""
    catalog_size = len(data.log_q)
    positives = data.targets[rows]
    u = model.user_vectors(_take(data.users, rows))
    candidates = torch.cat([positives, negatives])
    v, titles = model.item_vectors_and_titles(_take(data.catalog, candidates))
    correction = torch.cat(
        [
            data.log_q[positives] + math.log(len(rows)),
            torch.full_like(negatives, math.log(len(negatives) / catalog_size), dtype=torch.float32),
        ]
    )
    logits = (u @ v.T).float() / config.temperature - correction
    # A column holding the row's own positive is not a negative (except the diagonal).
    same = candidates.unsqueeze(0) == positives.unsqueeze(1)
    diagonal = torch.zeros_like(same)
    diagonal[:, : len(rows)] = torch.eye(len(rows), dtype=torch.bool, device=rows.device)
    logits = logits.masked_fill(same & ~diagonal, -1e4)
    target = torch.arange(len(rows), device=rows.device)
    weights = data.weights[rows]
    loss = (F.cross_entropy(logits, target, reduction="none") * weights).sum() / weights.sum()
    titled = (data.catalog["title"][positives] > 0).any(dim=1)
    query_loss = _title_query_loss(model, titled, titles[: len(rows)], v, correction, same & ~diagonal, config)
    return loss + config.query_weight * query_loss


def train(
    split: Split,
    items: list[Item],
    model_config: ModelConfig,
    config: TrainConfig,
    device: torch.device,
    affinity_half_life_s: float,
    on_progress: Callable[[dict], None] = lambda status: None,
    start: TwoTower | None = None,
) -> TrainResult:
    """From fresh weights, or from `start`'s (a warm refresh: then the starting
    point is judged first, and kept unless an epoch beats it). Stops early
    after `config.patience` epochs without a better validation recall, or
    before an epoch that would end past `config.budget_s`."""
    torch.manual_seed(config.seed)
    generator = np.random.default_rng(config.seed)
    data = TrainingData.encode(split, items, model_config, affinity_half_life_s, device)
    valid_users = encode_holdout(split.valid, items, model_config, affinity_half_life_s)
    model = TwoTower(model_config).to(device)
    best, best_state, stale, history = None, None, 0, []

    def validate() -> Quality:
        return judge_encoded(model, valid_users, data.catalog, items, device, ks=(config.eval_k,))

    if start is not None:
        model.load_state_dict(start.state_dict())
        best, best_state = validate(), copy.deepcopy(model.state_dict())
        log.info("warm start: valid recall@%d %.4f", config.eval_k, best.recall[config.eval_k])
    optimisers = _optimisers(model, config)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    n, started, seen, cut_short = len(data), time.perf_counter(), 0, False
    for epoch in range(config.epochs):
        model.train()
        order = torch.as_tensor(generator.permutation(n), device=device)
        total_loss = 0.0
        for first in range(0, n, config.batch_size):
            rows = order[first : first + config.batch_size]
            negatives = torch.as_tensor(generator.integers(len(items), size=config.random_negatives), device=device)
            with torch.autocast(device.type, enabled=use_amp):
                loss = batch_loss(model, data, rows, negatives, config)
            _step(optimisers, scaler, loss)
            loss_value = loss.item()
            total_loss += loss_value * len(rows)
            seen += len(rows)
            speed = seen / (time.perf_counter() - started)
            on_progress(
                {"epoch": epoch, "done": first + len(rows), "of": n, "loss": loss_value, "examples_per_s": speed}
            )
        valid = validate()
        recall = valid.recall[config.eval_k]
        history.append({"epoch": epoch, "loss": total_loss / max(n, 1), f"valid_recall@{config.eval_k}": recall})
        log.info("epoch %d: loss %.4f, valid recall@%d %.4f", epoch, total_loss / max(n, 1), config.eval_k, recall)
        if best is None or recall > best.recall[config.eval_k]:
            best, best_state, stale = valid, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
        if epoch + 1 < config.epochs and _past_budget(config.budget_s, time.perf_counter() - started, epoch + 1):
            log.info("stopping after epoch %d: another would end past the %g s budget", epoch, config.budget_s)
            cut_short = True
            break
    if best is None or best_state is None:
        raise ValueError(f"nothing was trained: {config.epochs} epochs (at least 1 is needed)")
    model.load_state_dict(best_state)
    return TrainResult(model.eval(), best, history, seen / (time.perf_counter() - started), cut_short)


def _past_budget(budget_s: float, elapsed_s: float, epochs_done: int) -> bool:
    """Whether one more epoch, as long as the mean one so far, would end past the budget (0: none)."""
    return budget_s > 0 and elapsed_s * (epochs_done + 1) / epochs_done > budget_s


def _step(optimisers: list[torch.optim.Optimizer], scaler: torch.amp.GradScaler, loss: torch.Tensor) -> None:
    for optimiser in optimisers:
        optimiser.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    for optimiser in optimisers:
        scaler.step(optimiser)
    scaler.update()
