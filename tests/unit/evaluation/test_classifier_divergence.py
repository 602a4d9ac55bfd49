"""A classifier whose training diverges is never saved, and one with NaN/inf weights is never used
(annotated_pipeline/evaluation/train_classifier.py, classifier.load_classifier)."""

import pytest
import torch

from annotated_pipeline.evaluation.classifier import ImageClassifier, load_classifier
from annotated_pipeline.evaluation.train_classifier import main as train_classifier_main
from annotated_pipeline.datasets.shapes import write_shapes

PROG = "annotated-pipeline train-classifier"


def test_a_diverging_classifier_run_saves_nothing_and_says_so(tmp_path, capsys):
    data = tmp_path / "shapes"
    write_shapes(data, num_images=128, num_test=16, seed=0)
    out = tmp_path / "classifier"
    code = train_classifier_main([str(data), "--output_dir", str(out), "--epochs", "3", "--batch_size", "8",
                                  "--learning_rate", "1e9", "--no_bf16"], prog=PROG)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"{PROG}: error: training diverged in epoch ")
    assert "lower --learning_rate (now 1e+09)" in err
    assert not (out / "config.json").exists()


def test_a_classifier_with_non_finite_weights_is_refused_on_load(tmp_path):
    model = ImageClassifier()
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    model.save_pretrained(tmp_path / "broken")
    with pytest.raises(ValueError, match="holds NaN or inf weights"):
        load_classifier(tmp_path / "broken")
