"""fANOVA importance (`sweepjax.report.importance`) on results tables made by hand: a metric
planted on one dimension, a categorical dimension that matters, the members left out of the fit,
the sweeps it has nothing to say about, and a missing Optuna."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pytest
from conftest import result_row

import sweepjax
from sweepjax.report import importance

optuna = pytest.importorskip("optuna", reason="fANOVA needs the importance extra")
pytest.importorskip("sklearn", reason="fANOVA needs the importance extra")

LOG_LR = {"distribution": "LogUniform", "low": 1e-4, "high": 1.0}
MOMENTUM = {"distribution": "Uniform", "low": 0.0, "high": 0.9}
SPACE = {"config": {"space": {"learning_rate": LOG_LR, "momentum": MOMENTUM}}}


def _planted(accuracy, members=36, **extra):
    """Members over a log-uniform learning rate, a uniform momentum and two optimizers (drawn
    with a fixed seed), their accuracy `accuracy(lr, momentum, optimizer)`."""
    rng = np.random.default_rng(7)
    lr = 10.0 ** rng.uniform(-4, 0, members)
    momentum = rng.uniform(0, 0.9, members)
    optimizer = rng.choice(["adam", "sgd"], members)
    return [
        result_row(i, accuracy(a, m, o), learning_rate=a, momentum=m, optimizer=str(o), **extra)
        for i, (a, m, o) in enumerate(zip(lr, momentum, optimizer, strict=True))
    ]


def _lr_only(lr, momentum, optimizer):
    return 0.9 - 0.1 * (math.log10(lr) + 2.0) ** 2  # best at 1e-2, whatever the rest


def test_a_metric_planted_on_the_learning_rate_gives_it_the_largest_share():
    result = sweepjax.Result(_planted(_lr_only), {}, SPACE)
    found = importance.fanova_importance(result)
    shares = {s.name: s for s in found.shares}
    assert found.note == "" and found.fitted == 36
    assert [s.name for s in found.shares][0] == "learning_rate"
    assert shares["learning_rate"].share > 0.6
    assert sum(s.share for s in found.shares) == pytest.approx(1.0, abs=1e-9)
    assert {n: s.scale for n, s in shares.items()} == {
        "learning_rate": "log",
        "momentum": "linear",
        "optimizer": "categorical",
    }
    for share in found.shares:
        assert share.spread is not None and share.spread >= 0.0
    assert 0.0 < found.explained <= 1.0
    assert importance.fanova_importance(result) == found  # seeded: the same numbers again


def test_a_categorical_dimension_that_matters_is_found():
    def by_optimizer(lr, momentum, optimizer):
        return (0.9 if optimizer == "adam" else 0.5) + 0.01 * momentum

    found = importance.fanova_importance(sweepjax.Result(_planted(by_optimizer), {}, SPACE))
    assert found.shares[0].name == "optimizer" and found.shares[0].share > 0.6


def test_diverged_and_stopped_members_are_left_out_of_the_fit():
    finished = _planted(_lr_only, members=24)
    wild = [
        result_row(24, 0.0, 5, learning_rate=50.0, momentum=0.0, optimizer="sgd"),
        {**result_row(25, 0.99, learning_rate=1e-6, momentum=0.9, optimizer="adam"),
         "status": "stopped"},
        result_row(26, math.nan, learning_rate=3.0, momentum=0.5, optimizer="lion"),
    ]  # fmt: skip
    alone = importance.fanova_importance(sweepjax.Result(finished, {}, SPACE))
    found = importance.fanova_importance(sweepjax.Result(finished + wild, {}, SPACE))
    assert found.shares == alone.shares  # the forest never saw them
    assert found.left_out == {"diverged": 1, "stopped early": 1, "without a finite value": 1}
    words = "fitted on 24 finished members; 1 diverged, 1 stopped early, 1 without a finite value"
    assert words in importance.importance_caption(sweepjax.Result(finished + wild, {}, SPACE))
    title, header, cells = importance.importance_table(sweepjax.Result(finished + wild, {}, SPACE))
    assert words in title
    assert header == ["hyperparameter", "scale", "share", "std over trees"]
    assert [c[0] for c in cells] == [s.name for s in found.shares]
    assert cells[0][2] == f"{found.shares[0].share:.3f}"


@pytest.mark.parametrize(
    ("rows", "note"),
    [
        ([result_row(i, 0.1 * i, learning_rate=0.1 * i, momentum=0.5 * i) for i in range(4)],
         "Too few finished members for fANOVA importance: 4, it needs 5 at least."),
        ([result_row(i, 0.5, learning_rate=0.1 * i, momentum=0.5 * i) for i in range(6)],
         "final_val_accuracy is the same for every finished member: there is no variance to "
         "explain."),
        ([result_row(i, 0.1 * i, learning_rate=0.1 * i, momentum=0.5) for i in range(6)],
         "Only learning_rate varies among the finished members: fANOVA has nothing to weigh it "
         "against (it would get the whole share)."),
        ([result_row(i, 0.1 * i, learning_rate=0.1, seed=i) for i in range(6)],
         "No hyperparameter varies among the finished members."),
    ],
    ids=["too few", "constant metric", "one dimension", "none"],
)  # fmt: skip
def test_sweeps_fanova_cannot_weigh_say_why(rows, note):
    result = sweepjax.Result(rows, {}, {})
    assert importance.fanova_importance(result).note == note
    assert importance.importance_table(result)[1:] == (["note"], [[note]])
    assert importance.figure_importance(result) is None


def test_without_optuna_the_report_says_how_to_get_it(monkeypatch):
    real = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name.split(".")[0] == "optuna":
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    result = sweepjax.Result(_planted(_lr_only), {}, SPACE)
    assert importance.fanova_importance(result).note == importance.NEEDS
    assert "pip install 'sweepjax[importance]'" in importance.NEEDS
    assert importance.importance_table(result)[2] == [[importance.NEEDS]]
    assert importance.figure_importance(result) is None


def test_without_the_forests_spread_the_table_leaves_it_out(monkeypatch):
    evaluator = optuna.importance.FanovaImportanceEvaluator

    class MeanOnly:  # an evaluator that keeps its fANOVA object to itself
        def __init__(self, **options):
            self._inner = evaluator(**options)

        def evaluate(self, study):
            return self._inner.evaluate(study)

    result = sweepjax.Result(_planted(_lr_only), {}, SPACE)
    spread = importance.fanova_importance(result)
    monkeypatch.setattr(optuna.importance, "FanovaImportanceEvaluator", MeanOnly)
    mean_only = importance.fanova_importance(result)
    assert [s.share for s in mean_only.shares] == [s.share for s in spread.shares]
    assert all(s.spread is None for s in mean_only.shares)
    assert {c[3] for c in importance.importance_table(result)[2]} == {"-"}


def test_five_members_and_two_values_are_enough():
    rows = [result_row(i, [0.4, 0.6][i % 2], lr=0.1 * (i + 1), wd=0.01 * (i % 3)) for i in range(5)]
    found = importance.fanova_importance(sweepjax.Result(rows, {}, {}))
    assert found.note == "" and {s.name for s in found.shares} == {"lr", "wd"}


def test_the_spread_is_the_std_over_the_trees_divided_like_the_share(monkeypatch):
    made = []

    class Recorded(optuna.importance.FanovaImportanceEvaluator):
        def __init__(self, **options):
            super().__init__(**options)
            made.append(self)

    monkeypatch.setattr(optuna.importance, "FanovaImportanceEvaluator", Recorded)
    found = importance.fanova_importance(sweepjax.Result(_planted(_lr_only), {}, SPACE))
    names = sorted(s.name for s in found.shares)  # the forest's features, in name order
    per_tree = {n: made[0]._evaluator.get_importance(k) for k, n in enumerate(names)}
    total = sum(mean for mean, _ in per_tree.values())
    assert found.explained == pytest.approx(total, rel=1e-12) and total < 0.99
    for share in found.shares:
        mean, std = per_tree[share.name]
        assert share.share == pytest.approx(mean / total, rel=1e-12)
        assert share.spread == pytest.approx(std / total, rel=1e-12)


def test_a_forest_whose_features_are_not_in_name_order_gives_no_spread(monkeypatch):
    evaluator = optuna.importance.FanovaImportanceEvaluator

    class Reordered(evaluator):  # its fANOVA object numbers the features the other way round
        def evaluate(self, study):
            out = super().evaluate(study)
            forest, count = self._evaluator, len(out)
            self._evaluator = type("Reversed", (), {
                "get_importance": lambda _, k: forest.get_importance(count - 1 - k)})()  # fmt: skip
            return out

    monkeypatch.setattr(optuna.importance, "FanovaImportanceEvaluator", Reordered)
    found = importance.fanova_importance(sweepjax.Result(_planted(_lr_only), {}, SPACE))
    assert len(found.shares) == 3  # the middle feature is where it was: the others are not
    assert all(s.spread is None for s in found.shares)


def test_the_seed_is_a_category_where_the_space_sweeps_it():
    rows = _planted(_lr_only, seed=0)
    rows = [{**r, "seed": r["member"] % 3} for r in rows]
    swept = {"config": {"space": {"learning_rate": LOG_LR,
                                  "seed": {"distribution": "Choice", "values": [0, 1, 2]}}}}  # fmt: skip
    fitted = importance.finished_members(sweepjax.Result(rows, {}, swept))[0]
    assert importance.fit_scales(sweepjax.Result(rows, {}, swept), fitted)["seed"] == "categorical"
    assert "seed" not in importance.fit_scales(sweepjax.Result(rows, {}, SPACE), fitted)
    found = importance.fanova_importance(sweepjax.Result(rows, {}, swept))
    assert {s.name: s.scale for s in found.shares}["seed"] == "categorical"


def test_the_figure_draws_the_largest_share_on_top():
    result = sweepjax.Result(_planted(_lr_only), {}, SPACE)
    fig = importance.figure_importance(result)
    (ax,) = fig.axes
    labels = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in labels] == [
        f"{s.name.replace('_', ' ')} ({s.scale})"
        for s in importance.fanova_importance(result).shares
    ]
    widths = [bar.get_width() for bar in ax.patches]
    assert widths == sorted(widths, reverse=True)  # drawn largest first, at the top


def test_a_log_scaled_dimension_is_weighed_over_its_decades():
    # Members below 1e-3 (a quarter of the decades, 0.1% of the linear range) do far better:
    # fANOVA over the decades gives the learning rate most of the variance; over its linear
    # range it would give it almost none, next to the momentum's steady slope.
    def low_lr(lr, momentum, optimizer):
        return (1.0 if lr < 1e-3 else 0.0) + momentum

    found = importance.fanova_importance(sweepjax.Result(_planted(low_lr), {}, SPACE))
    assert found.shares[0].name == "learning_rate" and found.shares[0].share > 0.5
