"""The bugs users would suffer, planted by hand one at a time: each must fail the test named
beside it. Where `tools/mutate.py` changes operators at random sites, these are the realistic
bugs in the path from training to the numbers a user reads (`docs/testing.md`).

Run:
    python tools/planted.py            # every bug; prints each one's verdict
    python tools/planted.py --jobs 2 nesterov dropout
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import sys
from collections.abc import Sequence

from mutate import ROOT, run_mutant


@dataclasses.dataclass(frozen=True)
class Planted:
    id: str
    module: str
    old: str  # text found exactly once in the module
    new: str
    test: str

    def source(self) -> str:
        text = (ROOT / "sweepjax" / self.module).read_text()
        if text.count(self.old) != 1:
            raise SystemExit(f"{self.id}: {self.old!r} is not in {self.module} exactly once")
        return text.replace(self.old, self.new)


POP, NUM, KEYS = (
    "tests/test_population.py::test_",
    "tests/test_metrics_recomputed_apart.py::test_",
    ("tests/test_keys_matter.py::test_"),
)
SCHED = "tests/test_scheduler_references.py::test_"
PBT_REFS = "tests/test_pbt_references.py::test_"
BOOK = "tests/test_trial_bookkeeping.py::test_"
SEARCH = "tests/test_search_references.py::test_"
OPTUNA = "tests/test_optuna_references.py::test_"
TASK = "tests/test_task_references.py::test_"
REFILL = "tests/test_refill_rederived.py::test_"
LR = "learning_rate_at(program.schedule, own_step, hp)"
OK = "ok = alive & jnp.isfinite(loss) & _all_finite(candidate)"
BEST = "_best(best, ranking[:, t])"
BUGS = [
    Planted("schedule-one-step-late", "engine/population.py", LR, LR.replace("own_step", "own_step + 1", 1),
         POP + "the_schedule_drives_training_at_the_right_step"),
    Planted("schedule-never-applied", "engine/population.py",
         "set_hyperparameters(opt_state, {**hp, **scheduled}, learning_rate)",
         'set_hyperparameters(opt_state, hp, hp["learning_rate"])',  # the initial rate throughout
         POP + "the_schedule_drives_training_at_the_right_step"),
    Planted("hp-schedule-never-applied", "engine/population.py", "{**hp, **scheduled}", "hp",
         "tests/test_hp_schedules.py::test_a_momentum_schedule_matches_the_formula_and_a_plain_optax_loop"),
    Planted("validation-on-train", "runner/training.py", "replicate(dataset.val, mesh)",
         "replicate(dataset.train, mesh)",
         NUM + "each_members_metrics_are_its_parameters_on_the_right_split"),
    Planted("test-on-validation", "runner/training.py", "replicate(dataset.test, mesh)",
         "replicate(dataset.val, mesh)",
         NUM + "each_members_metrics_are_its_parameters_on_the_right_split"),
    Planted("eval-in-training-mode", "engine/evaluation.py", "task.inputs(batch), False,",
         "task.inputs(batch), True,", NUM + "each_members_metrics_are_its_parameters_on_the_right_split"),
    Planted("diverged-comes-back", "engine/population.py", OK, OK.replace("alive & ", ""),
         POP + "a_diverged_member_never_trains_again_even_when_its_loss_would_be_finite"),
    Planted("divergence-by-loss-only", "engine/population.py", OK, OK.replace(" & _all_finite(candidate)", ""),
         POP + "an_update_that_overflows_a_parameter_with_a_finite_loss_is_divergence"),
    Planted("batch-stats-not-frozen", "engine/population.py",
         "keep({**model_state, **new_model_state}, model_state)",
         "{**model_state, **new_model_state}", POP + "a_diverged_members_whole_state_stays_frozen"),
    Planted("nesterov-dropped", "runner/run.py", "names, config.nesterov", "names, False",
         POP + "the_nesterov_key_reaches_the_optimizer"),
    Planted("one-dropout-key", "engine/population.py", 'fold_in(_member_key(hp["seed"]), own_step)',
         "fold_in(jax.random.key(0), own_step)",
         "tests/test_per_member_data.py::test_each_member_draws_its_own_dropout_masks"),
    Planted("chunk-loss-over-all-steps", "sweep/trials.py", "total / np.maximum(alive_steps, 1)",
         "total / losses.shape[0]",
         NUM + "a_chunks_train_loss_averages_only_the_steps_a_member_was_alive"),
    Planted("best-is-final", "sweep/trial_results.py", BEST, "last_finite(ranking[:, t])", NUM + "best_so_far_and_final_columns_follow_the_curves"),
    Planted("ranking-reversed", "sweep/results.py", 'sign = -1.0 if direction == "max" else 1.0',
         'sign = 1.0 if direction == "max" else -1.0',
         NUM + "ranking_and_summary_follow_the_final_validation_accuracy"),
    Planted("summary-best-is-worst", "sweep/results.py", "best = ranked[0] if ranked", "best = ranked[-1] if ranked",
         NUM + "ranking_and_summary_follow_the_final_validation_accuracy"),
    Planted("last-step-not-saved", "runner/training.py", "chunk.step % every == 0 or final",
         "chunk.step % every == 0",
         "tests/test_checkpoint.py::test_the_last_step_is_checkpointed_whatever_checkpoint_every_is"),
    Planted("quasi-random-is-random", "search/space.py", 'if method == "random":',
         'if method in ("random", "quasi_random"):',
         "tests/test_space.py::test_quasi_random_has_lower_discrepancy_than_random"),
    Planted("clip-norm-ignored", "engine/optim.py", 'optax.clip_by_global_norm(hp["clip_norm"])',
         "optax.identity()", KEYS + "a_key_that_changes_training_is_not_ignored[sgd-constant-clip_norm]"),
    Planted("l2-ignored", "engine/optim.py", 'optax.add_decayed_weights(hp["l2"])', "optax.identity()",
         KEYS + "a_key_that_changes_training_is_not_ignored[sgd-constant-l2]"),
    Planted("lion-b1-ignored", "engine/optim.py", 'optax.scale_by_lion(hp["b1"], hp["b2"])',
            'optax.scale_by_lion(0.9, hp["b2"])',
            "tests/test_optim.py::test_every_optimizer_hyperparameter_changes_training[lion-b1]"),
    Planted("schedule-beta-ignored", "engine/schedules.py", '(hp["alpha"] + linear) * cosine + hp["beta"]',
            '(hp["alpha"] + linear) * cosine + 0.001',
            "tests/test_schedules.py::test_every_schedule_parameter_changes_the_rate[linear_cosine-beta]"),
    Planted("precision-ignored", "runner/run.py", "compute_dtype=config.precision", 'compute_dtype="float32"',
         KEYS + "a_sweep_key_that_changes_training_is_not_ignored[precision]"),
    Planted("augment-ignored", "runner/run.py", "augment=augmentation_of(config.augment)", "augment=None",
         KEYS + "a_sweep_key_that_changes_training_is_not_ignored[augment]"),
    Planted("streaming-ignored", "sweep/loop.py", 'make_chunk = make_train_chunk if train_data.placement == "device" else make_stream_chunk',
         "make_chunk = make_train_chunk", KEYS + "streamed_placement_trains_from_host_blocks"),
    Planted("trial-step-is-the-sweeps", "engine/population.py",
         "return step - hp[START] if START in hp else step", "return step",
         "tests/test_adaptive.py::test_a_refilled_trial_starts_its_schedule_at_its_own_step_0"),
    Planted("refill-keeps-the-old-trials-state", "engine/reassign.py", "return jnp.where(mask, new, old)",
         "return old", "tests/test_adaptive.py::test_a_refilled_trial_reproduces_its_row_alone"),
    Planted("searcher-never-told", "sweep/sweep_state.py",
         "self.searcher.tell(trial.id, value, trial.steps, trial.status)", "pass",
         "tests/test_search_engine.py::test_coarse_to_fine_samples_its_second_round_inside_the_first_rounds_best_box"),
    # The policies, in both ranking directions, against the libraries and papers they follow.
    Planted("asha-ranks-the-wrong-way", "search/schedulers.py",
         'best = sorted((v for v in values if finite(v)), reverse=direction == "max")',
         'best = sorted((v for v in values if finite(v)), reverse=direction == "min")',
         SCHED + "asha_stops_what_optunas_successive_halving_prunes[case0-max]"),
    Planted("median-is-the-mean", "search/schedulers.py", "median = float(np.median(others))",
         "median = float(np.mean(others))", SCHED + "median_stopping_matches_optunas_median_pruner[1-max]"),
    Planted("pbt-explores-around-the-loser", "search/pbt.py",
         "self._explore(d, source.hparams.get(k), rng)", "self._explore(d, obs.hparams.get(k), rng)",
         PBT_REFS + "pbt_hand_computed_sequence[max]"),
    Planted("pbt-ready-on-the-sweeps-clock", "search/pbt.py",
         "o.steps - last.get(str(o.trial), 0) >= self.ready",
         "step - last.get(str(o.trial), 0) >= self.ready", PBT_REFS + "pbt_hand_computed_sequence[max]"),
    Planted("halving-keeps-too-many", "search/schedulers.py",
         "best[: max(1, int(len(best) // self.eta))]", "best[: max(1, math.ceil(len(best) / self.eta))]",
         SCHED + "successive_halving_follows_the_papers_rule_per_cohort[6-4-2-max]"),
    Planted("pbt-donors-from-the-bottom", "search/pbt.py", "top = [t for t, _ in good[: max(k, 1)]]",
         "top = [t for t, _ in good[-max(k, 1) :]]", PBT_REFS + "pbt_hand_computed_sequence[max]"),
    Planted("hyperband-one-min-budget", "search/schedulers.py",
         "budgets(min_steps * eta**b, max_steps, eta) for b in range(brackets)",
         "budgets(min_steps, max_steps, eta) for b in range(brackets)",
         SCHED + "hyperband_stops_what_optunas_hyperband_prunes[max]"),
    Planted("pbt-always-maximises", "search/pbt.py",
         "ranked([[o.trial, float(o.value)] for o in ready if finite(o.value)], self.direction)",
         'ranked([[o.trial, float(o.value)] for o in ready if finite(o.value)], "max")',
         PBT_REFS + "pbt_hand_computed_sequence[min]"),
    # A refill sweep's trials re-derived alone, ranked lowest first.
    Planted("curve-under-the-slot-index", "sweep/trials.py", "row[slot_trials[held]] = per_slot[held]",
         "row[np.flatnonzero(held)] = per_slot[held]", REFILL + "every_curve_point_is_its_own_trial_alone[min]"),
    Planted("divergence-on-the-sweeps-clock", "sweep/sweep_state.py",
         "trial.diverged_at = int(chunk.diverged_at[slot]) - int(self.hparams[START][slot])",
         "trial.diverged_at = int(chunk.diverged_at[slot])",
         REFILL + "the_late_trial_diverges_on_its_own_clock[min]"),
    Planted("kept-best-always-maximises", "sweep/sweep_state.py",
         "if finished and (best is None or better(value, best, self.direction)):",
         'if finished and (best is None or better(value, best, "max")):',
         REFILL + "the_best_trial_and_its_kept_variables_follow_the_direction[min]"),
    Planted("study-always-maximises", "integrations/optuna_study.py",
         'direction="maximize" if direction == "max" else "minimize",', 'direction="maximize",',
         REFILL + "the_study_ranks_in_the_direction_on_each_trials_own_clock[min]"),
    Planted("best-column-always-max", "sweep/trial_results.py",
         'best = np.nanmax if state.direction == "max" else np.nanmin', "best = np.nanmax",
         REFILL + "every_row_is_its_trial_alone[min]"),
    Planted("study-steps-on-the-sweeps-clock", "integrations/optuna_study.py",
         'steps = result.curves["steps"] - row.get("start_step", 0)', 'steps = result.curves["steps"]',
         REFILL + "the_study_ranks_in_the_direction_on_each_trials_own_clock[min]"),
    Planted("trial-steps-on-the-sweeps-clock", "sweep/sweep_state.py",
         "trial.steps = self.trial_steps(slot, chunk.step)", "trial.steps = chunk.step",
         REFILL + "every_row_is_its_trial_alone[min]"),
    # The tasks against numpy over the shapes users have.
    Planted("regression-1d-targets-broadcast", "engine/tasks.py",
         "return outputs.reshape(targets.shape) if outputs.size == targets.size else outputs",
         "return outputs.reshape(targets.shape) if outputs.ndim == targets.ndim else outputs",
         TASK + "regression_metrics_are_the_formulas_whatever_the_target_shape[N]"),
    Planted("token-loss-over-padding", "engine/tasks.py",
         "return (nll * weights).sum(-1) / jnp.maximum(weights.sum(-1), 1.0)",
         "return (nll * weights).mean(-1)", TASK + "next_token_padding_counts_nowhere_and_means_are_per_real_token"),
    Planted("token-mask-ignored", "engine/tasks.py",
         "return jnp.ones(targets.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)",
         "return jnp.ones(targets.shape, jnp.float32)",
         TASK + "next_token_padding_counts_nowhere_and_means_are_per_real_token"),
    Planted("r2-uncentred", "engine/tasks.py", 'variance = means["_target_squared"] - jnp.square(means["_target"])',
         'variance = means["_target_squared"]',
         TASK + "regression_metrics_are_the_formulas_whatever_the_target_shape[N]"),
    Planted("f1-is-jaccard", "engine/tasks.py", '"f1": 2 * tp / jnp.maximum(2 * tp + fp + fn, 1e-12),',
         '"f1": tp / jnp.maximum(tp + fp + fn, 1e-12),', TASK + "multilabel_loss_and_micro_f1_are_numpy_counts[N]"),
    Planted("padded-examples-counted", "engine/tasks.py",
         "return jnp.sum(jnp.where(real, v.astype(jnp.float32), 0.0), axis=0)",
         "return jnp.sum(v.astype(jnp.float32), axis=0)",
         TASK + "classification_loss_and_accuracy_are_numpy_cross_entropy_and_hits"),
    # The searchers and the Optuna studies, in both ranking directions.
    Planted("coarse-to-fine-keeps-the-worst", "search/searchers.py",
         'sign = -1.0 if self.direction == "max" else 1.0', 'sign = 1.0 if self.direction == "max" else -1.0',
         SEARCH + "coarse_to_fine_box_is_the_best_share_of_the_told_trials"),
    Planted("coarse-to-fine-share-of-every-row", "search/searchers.py",
         "max(2, math.ceil(self.keep * len(told)))", "max(2, math.ceil(self.keep * len(self.rows)))",
         SEARCH + "coarse_to_fine_box_is_the_best_share_of_the_told_trials"),
    Planted("coarse-to-fine-counts-diverged", "search/searchers.py",
         'if status != "diverged" and math.isfinite(value):', "if math.isfinite(value):",
         SEARCH + "coarse_to_fine_box_is_the_best_share_of_the_told_trials"),
    Planted("optuna-told-a-negated-minimum", "search/optuna_search.py", "self._study.tell(handle, value)",
         'self._study.tell(handle, -value if self.direction == "min" else value)',
         OPTUNA + "single_objective_study_holds_what_was_told"),
    Planted("optuna-stopped-told-complete", "search/optuna_search.py", 'elif status == "stopped":',
         'elif status == "pruned":', OPTUNA + "single_objective_study_holds_what_was_told"),
    Planted("nsga2-steps-in-the-metrics-direction", "search/optuna_search.py",
         'directions.append("minimize")', "directions.append(OPTUNA_DIRECTIONS[self.direction])",
         OPTUNA + "nsga2_front_is_optunas_and_the_brute_force_one"),
    Planted("export-curve-of-another-member", "integrations/optuna_study.py", "curve[:, member]", "curve[member]",
         OPTUNA + "exported_study_matches_the_rows_in_the_sweeps_direction"),
    Planted("pareto-front-always-maximises", "sweep/trial_results.py", 'sign = 1.0 if direction == "max" else -1.0',
         "sign = 1.0", OPTUNA + "pareto_front_is_the_non_dominated_set"),
    # The trial bookkeeping on hand-made states.
    Planted("next-chunk-on-the-sweeps-clock", "sweep/sweep_state.py",
         "config.steps - self.trial_steps(s, step) for s in np.flatnonzero(self.running_slots())",
         "config.steps - step for s in np.flatnonzero(self.running_slots())",
         BOOK + "the_next_chunk_stops_at_the_next_eval_or_a_running_trials_budget"),
    Planted("exploit-takes-the-donors-seed", "sweep/sweep_state.py",
         'new = {**source.hparams, **action.hparams, **own, "seed": trial.hparams["seed"]}',
         'new = {**source.hparams, **action.hparams, **own, "seed": source.hparams["seed"]}',
         BOOK + "an_exploited_trial_continues_from_its_source_with_its_own_seed"),
    Planted("running-trial-tested-by-id", "sweep/trial_results.py",
         "tested = None if test is None or slot is None else float(test[m][slot])",
         "tested = None if test is None or slot is None else float(test[m][trial.id])",
         BOOK + "a_running_trial_reports_its_latest_values_and_its_slots_test"),
    Planted("summary-averages-stopped-trials", "sweep/frames.py", 'masked = frame[metrics].where(status.eq("ok"))',
         "masked = frame[metrics].where(~diverged)",
         "tests/test_frames_by_hand.py::test_summarize_by_matches_groups_summed_by_hand"),
    Planted("curves-frame-axes-swapped", "sweep/frames.py", "values = np.asarray(curves[name], np.float64).T",
         "values = np.asarray(curves[name], np.float64)",
         "tests/test_frames_by_hand.py::test_results_and_curves_frames_hold_the_rows_and_the_defined_curve_points"),
]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bugs", nargs="*", help="bug ids (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="bugs run at once")
    args = parser.parse_args(argv)
    unknown = set(args.bugs) - {bug.id for bug in BUGS}
    if unknown:
        raise SystemExit(f"unknown bugs {sorted(unknown)}; allowed: {[b.id for b in BUGS]}")
    bugs = [bug for bug in BUGS if not args.bugs or bug.id in args.bugs]
    for bug in bugs:
        bug.source()  # every planted text is still there, before anything runs
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(lambda bug: run_mutant(bug, [bug.test], 600.0), bugs))
    missed = [o["id"] for o in outcomes if not o["outcome"].startswith("killed")]
    for o in outcomes:
        verdict = "caught" if o["outcome"].startswith("killed") else o["outcome"].upper()
        print(f"{o['id']:36} {verdict} "
              f"by {o['test'].split('::')[1]} ({o['seconds']} s)")  # fmt: skip
    print(f"\n{len(outcomes) - len(missed)} of {len(outcomes)} planted bugs caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
