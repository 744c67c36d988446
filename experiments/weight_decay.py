"""Weight decay, from none to extremely large: past a point learning collapses (seed 002, seed 000).

Decoupled weight decay (scaled by the learning rate) from 0 to 10 on the MLP. Seed 000: the usual
value is about 1e-4 and it matters little until the model over-fits; seed 002: an extremely large
coefficient pulls every weight to zero and the network stops learning (chance accuracy).

Run (about a minute on a 2-core CPU):
    sweepjax run weight_decay --out runs/weight_decay
    sweepjax summarize weight_decay runs/weight_decay
    sweepjax report runs/weight_decay
"""

from sweepjax import Choice, Config
from sweepjax.rules import compare


def get_config() -> Config:
    return Config(
        dataset="mnist1d",
        model={"name": "mlp", "hidden": [100, 100]},
        optimizer="sgd",
        space={
            "weight_decay": Choice([0.0, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]),
            "learning_rate": 0.05,
            "momentum": 0.9,
        },
        searcher="grid",
        population=7,
        steps=2000,
        batch_size=100,
        eval_every=100,
        out_dir="runs/weight_decay",
    )


def summarize(out_dir) -> str:
    return "\n".join(
        [
            "Normal weight decay changes little; extremely large weight decay collapses learning.",
            compare(out_dir, "weight_decay"),
        ]
    )
