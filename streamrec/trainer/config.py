"""What the trainer reads of the settings: its own section and the shared
ones it works with, built once where a process starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamrec.embeddings.encoding import ModelConfig
from streamrec.foundation.features import FeatureConfig
from streamrec.foundation.schema import Limits
from streamrec.foundation.settings import AccessSettings, KafkaSettings, Settings, TrainerSettings
from streamrec.trainer.gate import GATE_K
from streamrec.trainer.train import TrainConfig


@dataclass(frozen=True)
class TrainerConfig:
    trainer: TrainerSettings  # the data window, refresh plan, gate and what is kept
    train: TrainConfig  # the towers' optimisation
    model: ModelConfig  # the towers' shape
    features: FeatureConfig  # the examples are folded as the worker folds events
    limits: Limits
    kafka: KafkaSettings
    access: AccessSettings
    data_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainerConfig:
        return cls(
            settings.trainer,
            settings.section(TrainConfig, "train_", eval_k=GATE_K),
            ModelConfig.from_settings(settings),
            FeatureConfig.from_settings(settings),
            Limits.from_settings(settings),
            settings.kafka,
            settings.access,
            settings.data_dir,
        )
