"""The persistent compilation cache: where it lives, and a second process loading, not compiling.

The cache test runs the real `sweepjax` command twice, as two processes sharing one empty cache
folder: the second compiles no program with XLA, spends a fraction of the first's compile
seconds, and writes the same results (a loaded program is the compiled one).
"""

import json
from pathlib import Path

import jax
import pytest
from command import finish, start, tiny_experiment
from conftest import count_compiles

import sweepjax
from sweepjax.engine import compiling


@pytest.fixture
def clean_env(monkeypatch):
    for name in (compiling.ENV, "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_folder_follows_the_key_then_the_environment_then_jax_then_the_user(
    clean_env, tmp_path
):
    home = tmp_path / "home"
    clean_env.setenv("HOME", str(home))
    assert compiling.cache_folder("auto") == home / ".cache" / "sweepjax" / "xla"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiling.cache_folder("auto") == tmp_path / "xdg" / "sweepjax" / "xla"
    clean_env.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax-own"))
    assert compiling.cache_folder("auto") == tmp_path / "jax-own"
    clean_env.setenv(compiling.ENV, str(tmp_path / "moved"))
    assert compiling.cache_folder("auto") == tmp_path / "moved"
    clean_env.setenv(compiling.ENV, "off")
    assert compiling.cache_folder("auto") is None
    # the config key wins over every environment variable
    assert compiling.cache_folder(str(tmp_path / "key")) == tmp_path / "key"
    assert compiling.cache_folder("off") is None and compiling.cache_folder(None) is None


def test_an_unusable_folder_turns_the_cache_off_and_says_so(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    try:
        assert compiling.use_compile_cache(str(blocker / "cache")) is None
        assert "compile cache off" in capsys.readouterr().err
    finally:
        compiling.use_compile_cache("auto")  # the session's folder (conftest)


@pytest.mark.parametrize(
    "value, message",
    [("", "names no folder; allowed: .* 'off'"), ("  ", "names no folder"), (3, "allowed: str")],
)
def test_a_bad_compile_cache_value_is_refused_before_compiling(value, message):
    config = sweepjax.Config(population=2, steps=2, out_dir=None, compile_cache=value)
    with (
        count_compiles() as compiles,
        pytest.raises(ValueError, match=f"compile_cache: .*{message}"),
    ):
        sweepjax.run(config, quiet=True)
    assert compiles[0] == 0


def test_a_counted_block_counts_its_own_compilation_only():
    with compiling.counting_compiles() as outer:
        jax.jit(lambda x: x + 7).lower(1.0).compile()
        with compiling.counting_compiles() as inner:
            jax.jit(lambda x: x - 7).lower(1.0).compile()
        assert (inner().programs, outer().programs) == (1, 2)
    jax.jit(lambda x: x * 7).lower(1.0).compile()  # after both blocks: neither counts it
    assert (inner().programs, outer().programs) == (1, 2)
    assert outer().seconds >= inner().seconds > 0


@pytest.mark.subprocess
@pytest.mark.slow
def test_a_second_process_loads_every_program_from_the_cache(tmp_path):
    experiment = tmp_path / "tiny.py"
    experiment.write_text(tiny_experiment(steps=20))
    cache = tmp_path / "cache"
    summaries, results = [], []
    for run in ("first", "second"):
        out = tmp_path / run
        args = ["run", str(experiment), "--out", str(out), "--quiet"]
        code, stderr = finish(start(*args, "--set", f"compile_cache={cache}"))
        assert code == 0, stderr
        summaries.append(json.loads((out / "sweep.json").read_text()))
        results.append((out / "results.csv").read_bytes())
    first, second = summaries
    assert first["programs_compiled"] > 0 and first["programs_from_cache"] == 0
    assert second["programs_compiled"] == 0
    assert second["programs_from_cache"] == first["programs_compiled"]
    # what is left is tracing and lowering: a small part of compiling
    assert second["compile_seconds"] < 0.5 * first["compile_seconds"]
    assert results[0] == results[1]
    assert any(Path(cache).iterdir())
