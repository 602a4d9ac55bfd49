"""What a labelled image set that cannot be used says (datasets/labelled.py, loading.py): the path that does not
exist, the folder with one class; through the commands that read them, one line and exit status 2."""

from pathlib import Path

import pytest
from PIL import Image

from annotated_pipeline.datasets import labelled
from annotated_pipeline.evaluation.evaluate import main as evaluate_main
from annotated_pipeline.evaluation.train_classifier import main as classifier_main


def test_a_path_that_does_not_exist_is_said_so_not_looked_up_on_the_hub(tmp_path, capsys):
    for missing in ("/nonexistent", "./typo", str(tmp_path / "a" / "b")):
        with pytest.raises(ValueError, match=f"^{missing} does not exist: DATA is a local folder"):
            labelled.open_split(missing)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="file.txt is a file, not a folder"):
        labelled.open_split(tmp_path / "file.txt")
    shipped = str(Path(__file__).resolve().parents[3] / "pretrained" / "ddpm-fashion-mnist")
    assert evaluate_main([shipped, "--reference", "/nonexistent", "--num_samples", "2"], prog="p") == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("p: error: /nonexistent does not exist: DATA is a local folder") and "Hub data set under" not in line


@pytest.fixture
def one_class(tmp_path):
    folder = tmp_path / "data"
    (folder / "train" / "shoe").mkdir(parents=True)
    for i in range(4):
        Image.new("L", (8, 8), 40 * i).save(folder / "train" / "shoe" / f"{i}.png")
    return folder


def test_a_folder_with_one_class_says_so_and_what_labels_need(one_class, tmp_path, capsys):
    assert classifier_main(["--data", str(one_class), "--output_dir", str(tmp_path / "clf")], prog="p") == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # after datasets' progress bar
    assert line == (f"p: error: {one_class} holds one class (all its images are in folders named 'shoe'), so it has no "
                    "'label' column: class labels need two or more classes, a sub-folder of images for each "
                    "(DATA/CLASS_A/*.png, DATA/CLASS_B/*.png, ...); a classifier needs them")
    from annotated_pipeline.train import main as train_main

    assert train_main(["--train_data_dir", str(one_class), "--label_column", "label", "--output_dir",
                       str(tmp_path / "run"), "--logger", "none"], prog="p") == 2
    assert f"{one_class} holds one class (all its images are in folders named 'shoe')" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path / "clf").exists()


def test_a_parquet_label_column_with_one_class_says_so(tmp_path, capsys):
    import datasets

    one = datasets.Dataset.from_dict({"label": [0, 0, 0]})
    with pytest.raises(ValueError, match=r"^--label_column 'label' defines one class \(K = 1: every label is 0\)"):
        labelled.count_classes(one, "label")
    subset = datasets.Dataset.from_dict({"label": [9, 9]}, features=datasets.Features(
        {"label": datasets.ClassLabel(num_classes=10)}))
    assert labelled.count_classes(subset, "label") == 10  # a one-class subset of ten classes: fine-tuning's case
    folder = tmp_path / "data"
    folder.mkdir()
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"image": [Image.new("L", (8, 8), 40 * i) for i in range(4)], "label": [0] * 4},
                               features=features).to_parquet(folder / "train.parquet")
    from annotated_pipeline.train import main as train_main

    assert train_main(["--train_data_dir", str(folder), "--label_column", "label", "--output_dir",
                       str(tmp_path / "run"), "--logger", "none", "--resolution", "8"], prog="p") == 2
    assert "p: error: --label_column 'label' defines one class" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
