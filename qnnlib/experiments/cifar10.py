"""Notebook 02: the binarized ConvNet of Table 1's CIFAR-10 column — profiles and sanity bounds.

The paper: BNN (Torch7) 10.15%, BNN (Theano) 11.40% test error (Table 1). The experiment is a config of
:mod:`qnnlib.experiments.convnets` (recipes, data, preprocessing, rows): here are only the numbers that differ
per profile. Schedules as the authors' code (docs/paper.md §2.10): Theano batch 50, LR 1e-3 → 3e-7 over 500
epochs; Torch7 batch 200, LR 2^−6 halved every 50 epochs, every parameter clipped, ZCA-whitened inputs.
"""

from __future__ import annotations

from qnnlib.experiments.convnets import ConvConfig, Sanity, Schedule, make_recipes

__all__ = ["EXPERIMENT", "SCHEDULE", "PROFILES", "SANITY"]

EXPERIMENT = "cifar10"
SCHEDULE = Schedule(theano_batch=50, theano_lr=(1e-3, 3e-7), torch7_batch=200, torch7_lr=2.0**-6,
                    torch7_halve_every=50, torch7_clip="all", torch7_inputs="torch7-cifar10")


def _profile(profile: str, dataset: str, sizes: tuple[int | None, int | None, int | None], channels: tuple[int, int, int],
             fc: int, epochs: int, resume: bool, snapshots: tuple[int, ...], **schedule: object) -> ConvConfig:
    recipes = make_recipes(SCHEDULE, channels, fc, epochs, **schedule)  # type: ignore[arg-type]
    return ConvConfig(profile, EXPERIMENT, dataset, *sizes, recipes=tuple(recipes),  # type: ignore[arg-type]
                      recipe_configs=recipes, resume=resume, snapshot_epochs=snapshots)


# The profile table: the only place sizes live. Reduced profiles narrow the convs, take stratified subsets and
# compress the schedules (the exponential decay ends at lr_end; the Torch7 halving period shrinks). The snapshot
# epochs (0 = initialisation) are where notebook 08 counts the binary filters of the Theano and Torch7 BNNs.
PROFILES: dict[str, ConvConfig] = {
    "smoke": _profile("smoke", "fashion-mnist", (1000, 200, 200), (8, 16, 32), 32, 3, False, (0, 1, 3), lr_end=3e-4,
                      halve_every=1, threads=1),
    "quick": _profile("quick", "auto", (5_000, 1_000, 1_000), (16, 32, 64), 128, 12, True, (0, 1, 2, 4, 8, 12),
                      lr_end=3e-5, halve_every=3),
    "paper": _profile("paper", "cifar10", (None, None, None), (128, 256, 512), 1024, 500, True,
                      (0, 1, 10, 50, 100, 250, 500)),
}

SANITY: dict[str, Sanity] = {
    "smoke": Sanity(max_error=0.95, max_gap_vs_float=1.0),  # the pipeline runs; a few steps need not learn
    # quick: 12 epochs on 5k images leave the Theano BNNs 5-6 points behind float (measured; twice the widths for
    # 10 epochs did not close it: docs/profiles.md §3.2), so this bound only catches regressions beyond that
    "quick": Sanity(max_error=0.40, max_gap_vs_float=0.08),
    "paper": Sanity(max_error=0.15, max_gap_vs_float=0.03),
}
