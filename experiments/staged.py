"""Staged tuning in the sweep guides' order against one joint sweep of the same budget.

The sweep guides (seed 000) tune the learning rate first; then batch size, momentum and hidden
units; then decay and regularization, each stage with the earlier stages' best fixed. This
experiment asks whether that order pays: three stages of 16 members each against one joint
sweep of 48 members over the same five dimensions, the same steps per member, so the same
member-steps. Both rank by validation accuracy; the table reports the winner's test accuracy.

Run both and compare (writes runs/staged/joint and runs/staged/stage_0..2):
    python experiments/staged.py
The joint sweep alone:
    sweepjax run staged
"""

import sys

from sweepjax import Choice, Config, LogUniform, Uniform, run
from sweepjax.staged import staged_sweep

STAGES = (
    ("learning_rate",),
    ("batch_size", "momentum", "model.hidden"),
    ("weight_decay",),
)


def get_config() -> Config:
    """The joint sweep: every dimension at once, 48 members."""
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100, 100]},
        optimizer="sgd",
        space={
            "learning_rate": LogUniform(1e-3, 1.0),
            "batch_size": Choice([25, 50, 100]),
            "momentum": Uniform(0.0, 0.95),
            "model.hidden": Choice([[64, 64], [100, 100], [200, 200]]),
            "weight_decay": LogUniform(1e-6, 1e-2),
        },
        population=48,
        steps=1000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/staged/joint",
    )


def compare(joint_config: Config | None = None, quiet: bool = False) -> str:
    """Run the joint sweep and the staged one at the same budget; a table of what each found."""
    joint_config = joint_config or get_config()
    stages = len(STAGES)
    staged_config = joint_config.replace(
        population=joint_config.population // stages,
        out_dir=None
        if joint_config.out_dir is None
        else joint_config.out_dir.replace("joint", "staged"),
    )
    joint = run(joint_config, quiet=quiet)
    staged = staged_sweep(staged_config, STAGES, quiet=quiet)
    best_staged = max((r.best for r in staged), key=lambda row: row["final_val_accuracy"])
    lines = ["method | members | best val accuracy | its test accuracy", "--- | --- | --- | ---"]
    for name, best, members in (
        ("joint", joint.best, joint_config.population),
        ("staged (best of its stages)", best_staged, staged_config.population * stages),
    ):
        lines.append(
            f"{name} | {members} | {best['final_val_accuracy']:.1%} | {best['test_accuracy']:.1%}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(compare(quiet="--quiet" in sys.argv))
