"""What a fine-tuning run did and measured (:class:`FinetuneResult`), and its model card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RESULT_FILE", "FinetuneResult", "model_card"]

#: Name of the file holding the run's numbers in the output folder.
RESULT_FILE = "finetune.json"


@dataclass
class FinetuneResult:
    """What :func:`finetune` did and measured.

    Attributes:
        output: The model folder.
        base_model: The model fine-tuned.
        train_queries: Training questions used.
        train_pairs: (query, document) pairs per epoch.
        left_out: Training query ids left out because their text equals a held-out query's.
        steps: Optimizer steps taken (all runs of a resumed training together).
        epochs: Epochs completed (fractional when the time budget stopped training).
        train_seconds: Wall time of this run's training loop.
        stopped_by_budget: Whether ``max_minutes`` ended training early.
        reports: ``{dataset name: EvalReport}`` with the systems "stage 1", "base" and "fine-tuned".
        dev_metrics: The sentence-transformers reranking evaluator's metrics on ``qrels/dev.tsv``.
        settings: The run's :class:`~crossrank.finetune.FinetuneConfig` (as JSON) with the
            dataset, the held-out set and the device as resolved, the scoring length and the loss.
    """

    output: Path
    base_model: str
    train_queries: int
    train_pairs: int
    left_out: list[str]
    steps: int
    epochs: float
    train_seconds: float
    stopped_by_budget: bool
    reports: dict[str, Any]
    dev_metrics: dict[str, float]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what ``finetune.json`` and ``crossrank finetune --json`` hold)."""
        return {
            "output": str(self.output),
            "base_model": self.base_model,
            "train_queries": self.train_queries,
            "train_pairs": self.train_pairs,
            "left_out": self.left_out,
            "steps": self.steps,
            "epochs": self.epochs,
            "train_seconds": self.train_seconds,
            "stopped_by_budget": self.stopped_by_budget,
            "settings": self.settings,
            "dev_metrics": self.dev_metrics,
            "evaluation": {name: report.to_dict() for name, report in self.reports.items()},
        }


def model_card(result: FinetuneResult) -> str:
    """The fine-tuned model's ``README.md``: base model, data, steps, time, before/after metrics."""
    s = result.settings
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        "tags: [cross-encoder, reranker, crossrank]",
        "---",
        "",
        f"# Cross-encoder fine-tuned from {result.base_model}",
        "",
        "Made by `crossrank finetune` (sentence-transformers `CrossEncoderTrainer`, binary cross-entropy on "
        'hard negatives). Load it with `crossrank.Reranker("<this folder>")` (any backend) or '
        "`sentence_transformers.CrossEncoder`.",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{result.base_model}` |",
        f"| data | `{s['dataset']}` |",
        f"| training queries | {result.train_queries} ({result.train_pairs} pairs per epoch) |",
        f"| hard negatives | {s['num_negatives']} per query from {s['stage1']}, judged positives excluded |",
        f"| steps / epochs | {result.steps} / {result.epochs:.2f}"
        + (" (stopped by the time budget)" if result.stopped_by_budget else "")
        + " |",
        f"| training time | {result.train_seconds / 60:.1f} min on {s['device']} |",
        f"| batch size, learning rate | {s['batch_size']}, {s['learning_rate']} |",
        f"| max length | {s['max_length']} tokens in training, {s['scoring_max_length']} for scoring |",
        f"| seed | {s['seed']} |",
    ]
    if result.left_out:
        lines.append(
            f"| left out | {len(result.left_out)} training queries with the text of a held-out query |"
        )
    lines += ["", "## Evaluation (stage-1 candidates reranked; the held-out split was never trained on)", ""]
    for name, report in result.reports.items():
        for depth, systems in report.metrics.items():
            metric_names = list(next(iter(systems.values())))
            lines += [
                f"**{name}** ({report.num_queries} queries, {report.stage1} top {depth})",
                "",
                "| system | " + " | ".join(metric_names) + " |",
                "|---|" + "---:|" * len(metric_names),
            ]
            for system, values in systems.items():
                label = f"stage 1 ({report.stage1})" if system == "stage 1" else system
                lines.append(f"| {label} | " + " | ".join(f"{values[m]:.4f}" for m in metric_names) + " |")
            lines.append("")
    if result.dev_metrics:
        lines += [
            "Dev split (sentence-transformers reranking evaluator): "
            + ", ".join(f"{k} {v:.4f}" for k, v in result.dev_metrics.items()),
            "",
        ]
    return "\n".join(lines) + "\n"
