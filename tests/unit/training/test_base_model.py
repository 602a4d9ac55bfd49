"""Fine-tuning's settings (base_model.py): `BaseModel.settings_for` returns a new ModelSettings in which
the options a base model decides come from it where the command line leaves them out; `args` is not
rewritten, and parse_args no longer blanks anything. (The runs themselves: tests/integration/test_finetune.py.)"""

import logging

import pytest
from accelerate import PartialState

from annotated_pipeline.training.args import TrainingConfigError, parse_args
from annotated_pipeline.training.base_model import BaseModel
from annotated_pipeline.training.settings import ModelSettings

UNET = {"dim": 8, "dim_mults": [1, 2], "block_type": "resnet", "linear_attention_levels": None, "in_channels": 1}
SCHEDULER = {"num_train_timesteps": 20, "beta_schedule": "linear", "prediction_type": "v_prediction",
             "timestep_spacing": "leading"}


@pytest.fixture(autouse=True)
def accelerate_state():
    PartialState()  # accelerate's logger needs it


def pretrained(*argv):
    args = parse_args(["--logger", "none", "--pretrained_model_name_or_path", "base", *argv])
    return args, BaseModel("pretrained_model_name_or_path", "base", UNET, None, SCHEDULER)


def test_left_out_options_come_from_the_base_model_in_a_new_config_and_are_logged(caplog):
    args, base = pretrained("--dim", "8", "--learning_rate", "1e-3")
    before = dict(vars(args))
    with caplog.at_level(logging.INFO):
        settings = base.settings_for(args)
    assert isinstance(settings, ModelSettings)
    assert (settings.dim, settings.dim_mults, settings.block_type, settings.linear_attention_levels) == (
        8, (1, 2), "resnet", "all")  # None in the U-Net config: attention at every level
    assert (settings.ddpm_num_steps, settings.ddpm_beta_schedule, settings.prediction_type,
            settings.timestep_spacing) == (20, "linear", "v_prediction", "leading")
    assert settings.loss_type == "huber" and settings.ddpm_num_inference_steps == 20  # not the base model's to decide
    assert vars(args) == before and args.ddpm_num_steps == 1000  # the parsed arguments are untouched (not None)
    logged = caplog.text
    assert "--dim_mults 1,2" in logged and "--ddpm_num_steps 20" in logged and "--prediction_type v_prediction" in logged
    assert "--dim 8" not in logged  # given, not inherited


def test_a_given_option_must_agree_with_the_base_model_even_at_its_default():
    args, base = pretrained("--prediction_type", "epsilon", "--dim", "16")
    with pytest.raises(TrainingConfigError, match=r"--dim 16 \(the base model has 8\); --prediction_type epsilon "
                                                  r"\(the base model has v_prediction\)"):
        base.settings_for(args)
    args, base = pretrained("--ddpm_beta_schedule", "linear", "--dim_mults", "1,2", "--linear_attention_levels", "all")
    assert base.settings_for(args).ddpm_beta_schedule == "linear"


def test_the_chain_length_is_checked_against_the_base_models_T():
    args, base = pretrained("--ddpm_num_inference_steps", "50")  # < the default T = 1000: parse_args cannot tell
    with pytest.raises(TrainingConfigError, match=r"cannot exceed the base model's T = 20"):
        base.settings_for(args)
    with pytest.raises(TrainingConfigError, match=r"cannot exceed --ddpm_num_steps \(20\)"):
        pretrained("--ddpm_num_inference_steps", "50", "--ddpm_num_steps", "20")  # T given: checked at once


def test_a_config_decides_the_architecture_only():
    args = parse_args(["--logger", "none", "--model_config_name_or_path", "base", "--prediction_type", "sample"])
    settings = BaseModel("model_config_name_or_path", "base", UNET, None, None).settings_for(args)
    assert (settings.dim, settings.dim_mults) == (8, (1, 2))
    assert (settings.ddpm_num_steps, settings.prediction_type) == (1000, "sample")
