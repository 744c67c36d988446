"""A finished sweep exported as an Optuna study: its trials are results.csv's rows.

One small sweep (a learning rate over a range wide enough that some members diverge, and a
schedule family per member) is exported to an SQLite storage, loaded back with Optuna alone,
and compared row by row; Optuna's fANOVA then ranks its hyperparameters.
"""

import csv

import pytest

import sweepjax
from sweepjax.integrations.optuna_study import export_study

optuna = pytest.importorskip("optuna", reason="Optuna comes with the optuna and dev extras")


@pytest.fixture(scope="module")
def sweep(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "sweep"
    config = sweepjax.Config(
        model={"name": "mlp", "hidden": [8], "num_classes": tiny_data.num_classes},
        space={
            "learning_rate": sweepjax.LogUniform(1e-2, 1e4),
            "momentum": sweepjax.Uniform(0.0, 0.9),
            "schedule": sweepjax.Choice(["constant", "cosine"]),
        },
        population=8,
        steps=20,
        batch_size=16,
        eval_every=10,
        out_dir=str(out),
    )
    sweepjax.run(config, quiet=True, dataset=tiny_data)
    return out


def test_the_studys_trials_are_the_rows_of_results_csv(sweep, tmp_path):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    export_study(sweep, storage=url)
    study = optuna.load_study(study_name="sweep", storage=url)  # Optuna alone from here
    rows = list(csv.DictReader((sweep / "results.csv").open()))
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert len(study.trials) == len(rows) == 8
    statuses = set()
    for trial, row in zip(study.trials, rows, strict=True):
        assert trial.user_attrs["member"] == int(row["member"])
        assert trial.params["learning_rate"] == pytest.approx(float(row["learning_rate"]))
        assert trial.params["momentum"] == pytest.approx(float(row["momentum"]))
        assert trial.params["schedule"] == row["schedule"]
        statuses.add(row["status"])
        if row["status"] == "ok":
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.value == pytest.approx(float(row["final_val_accuracy"]))
            assert trial.intermediate_values[20] == pytest.approx(trial.value)
        else:
            assert trial.state == optuna.trial.TrialState.FAIL and trial.value is None
    assert statuses == {"ok", "diverged"}  # both kinds of trial are exercised


def test_fanova_ranks_the_swept_hyperparameters(sweep):
    study = export_study(sweep)  # in memory
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    importance = optuna.importance.get_param_importances(study, evaluator=evaluator)
    assert set(importance) == {"learning_rate", "momentum", "schedule"}
    assert sum(importance.values()) == pytest.approx(1.0)


def test_a_study_of_the_same_name_is_not_overwritten(sweep, tmp_path):
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    export_study(sweep, storage=url, study_name="mine")
    with pytest.raises(optuna.exceptions.DuplicatedStudyError):
        export_study(sweep, storage=url, study_name="mine")
    assert len(optuna.load_study(study_name="mine", storage=url).trials) == 8
