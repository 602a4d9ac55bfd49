"""p_losses and q_sample: the blog's calls, the targets of each prediction type, and a tiny overfit."""

import pytest
import torch
import torch.nn.functional as F

from annotated_pipeline import AnnotatedDDPMScheduler, Unet, p_losses, q_sample


class Oracle(torch.nn.Module):
    """Returns a fixed tensor: lets a test put the exact target in the model's mouth."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer
        self.calls = []

    def forward(self, x, t, class_labels=None):
        self.calls.append((x, t, class_labels))
        return self.answer


def test_seed_snippet_runs_verbatim():
    image_size, channels, batch_size, timesteps = 28, 1, 4, 1000
    device = "cpu"
    batch = torch.randn(batch_size, channels, image_size, image_size)

    model = Unet(dim=28, channels=1, dim_mults=(1, 2, 4))
    t = torch.randint(0, timesteps, (batch.shape[0],), device=device).long()
    loss = p_losses(model, batch, t, loss_type="huber")
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_q_sample_is_eq_4():
    scheduler = AnnotatedDDPMScheduler(beta_schedule="squaredcos_cap_v2")
    x0, noise = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([0, 500, 999])
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(q_sample(x0, t, noise, scheduler), a.sqrt() * x0 + (1 - a).sqrt() * noise)
    # The default scheduler is diffusers' DDPM default: linear betas 1e-4..0.02 over 1000 steps.
    a = AnnotatedDDPMScheduler().alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(q_sample(x0, t, noise), a.sqrt() * x0 + (1 - a).sqrt() * noise)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("loss_type", ["l1", "l2", "huber"])
def test_target_follows_prediction_type(prediction_type, loss_type):
    scheduler = AnnotatedDDPMScheduler(prediction_type=prediction_type)
    x0, noise, t = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4), torch.tensor([10, 900])
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    target = {"epsilon": noise, "sample": x0, "v_prediction": a.sqrt() * noise - (1 - a).sqrt() * x0}[prediction_type]
    oracle = Oracle(target)
    assert p_losses(oracle, x0, t, noise=noise, loss_type=loss_type, scheduler=scheduler).item() < 1e-6
    # The model saw x_t of eq. (4) and the timesteps.
    x_seen, t_seen, _ = oracle.calls[0]
    torch.testing.assert_close(x_seen, a.sqrt() * x0 + (1 - a).sqrt() * noise)
    assert torch.equal(t_seen, t)
    # And a wrong answer costs exactly the chosen distance.
    wrong = Oracle(target + 2.0)
    expected = {"l1": 2.0, "l2": 4.0, "huber": 1.5}[loss_type]
    assert p_losses(wrong, x0, t, noise=noise, loss_type=loss_type, scheduler=scheduler).item() == pytest.approx(expected)


def test_class_labels_reach_the_model():
    oracle = Oracle(torch.zeros(2, 1, 4, 4))
    labels = torch.tensor([3, 7])
    p_losses(oracle, torch.zeros(2, 1, 4, 4), torch.tensor([1, 2]), class_labels=labels)
    assert torch.equal(oracle.calls[0][2], labels)


def test_unknown_loss_or_prediction_type():
    model = Oracle(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="huber"):
        p_losses(model, torch.zeros(1, 1, 4, 4), torch.tensor([1]), loss_type="l3")
    scheduler = AnnotatedDDPMScheduler()
    scheduler.register_to_config(prediction_type="score")  # a config edited by hand after construction
    with pytest.raises(ValueError, match="v_prediction"):
        p_losses(model, torch.zeros(1, 1, 4, 4), torch.tensor([1]), scheduler=scheduler)


@pytest.mark.slow  # 10 s of training
def test_tiny_model_overfits_eight_images():
    """Fixed images, timesteps and noise: the loss must fall at least 10x within a few hundred steps."""
    torch.manual_seed(0)
    images = torch.rand(8, 1, 8, 8) * 2 - 1
    t, noise = torch.randint(0, 1000, (8,)), torch.randn(8, 1, 8, 8)
    model = Unet(dim=16, channels=1, dim_mults=(1, 2), sample_size=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(300):
        optimizer.zero_grad()
        loss = p_losses(model, images, t, noise=noise, loss_type="huber")
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 10, (losses[0], losses[-10:])


# ------------------------------------------------------------------------------------------------
# Min-SNR-gamma weighting (Hang et al. 2023)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_min_snr_weights_match_the_diffusers_training_examples(prediction_type):
    """diffusers' examples weight the loss by min(SNR, gamma), divided by SNR for epsilon and by SNR + 1
    for v_prediction, with SNR from `diffusers.training_utils.compute_snr`."""
    from diffusers.training_utils import compute_snr

    from annotated_pipeline.losses import min_snr_weights

    scheduler = AnnotatedDDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)
    t = torch.tensor([0, 1, 50, 200, 500, 800, 999])
    snr = compute_snr(scheduler, t)
    expected = torch.minimum(snr, torch.full_like(snr, 5.0))
    expected = {"epsilon": expected / snr, "sample": expected, "v_prediction": expected / (snr + 1)}[prediction_type]
    torch.testing.assert_close(min_snr_weights(scheduler, t, 5.0), expected)


def test_min_snr_caps_only_the_nearly_clean_timesteps():
    from annotated_pipeline.losses import min_snr_weights

    scheduler = AnnotatedDDPMScheduler(beta_schedule="squaredcos_cap_v2")
    weights = min_snr_weights(scheduler, torch.arange(1000), 5.0)
    snr = scheduler.alphas_cumprod / (1 - scheduler.alphas_cumprod)
    assert torch.all(weights[snr <= 5] == 1.0)           # noisy timesteps keep eq. (14)'s weight
    assert torch.all(weights[snr > 5] < 1.0)             # the clean ones lose weight
    assert weights[0] < 1e-3
    assert torch.all(weights[1:] >= weights[:-1])           # and more so the cleaner they are


@pytest.mark.parametrize("prediction_type, last_weight", [("epsilon", 1.0), ("sample", 0.0), ("v_prediction", 0.0)])
def test_min_snr_weights_at_zero_terminal_snr(prediction_type, last_weight):
    """alpha_bar_{T-1} = 0 gives SNR = 0 there: the weights stay finite (the epsilon one is the limit, 1)."""
    from annotated_pipeline.losses import min_snr_weights

    scheduler = AnnotatedDDPMScheduler(rescale_betas_zero_snr=True, prediction_type=prediction_type)
    assert scheduler.alphas_cumprod[-1] == 0
    weights = min_snr_weights(scheduler, torch.arange(1000), 5.0)
    assert torch.all(torch.isfinite(weights)) and weights[-1].item() == last_weight


@pytest.mark.parametrize("loss_type", ["l1", "l2", "huber"])
def test_weighted_loss_is_the_weighted_mean_of_per_image_losses(loss_type):
    from annotated_pipeline.losses import min_snr_weights

    scheduler = AnnotatedDDPMScheduler(beta_schedule="squaredcos_cap_v2")
    torch.manual_seed(0)
    x0, noise, t = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4), torch.tensor([3, 300, 990])
    answer = torch.randn(3, 1, 4, 4) * 2
    distance = {"l1": F.l1_loss, "l2": F.mse_loss, "huber": F.smooth_l1_loss}[loss_type]
    per_image = torch.stack([distance(answer[i], noise[i]) for i in range(3)])
    expected = (per_image * min_snr_weights(scheduler, t, 5.0)).mean()
    got = p_losses(Oracle(answer), x0, t, noise=noise, loss_type=loss_type, scheduler=scheduler, snr_gamma=5.0)
    torch.testing.assert_close(got, expected)
    # A gamma above every SNR weighs all t alike: eq. (14) again.
    unweighted = p_losses(Oracle(answer), x0, t, noise=noise, loss_type=loss_type, scheduler=scheduler)
    huge = p_losses(Oracle(answer), x0, t, noise=noise, loss_type=loss_type, scheduler=scheduler, snr_gamma=1e12)
    torch.testing.assert_close(huge, unweighted)


@pytest.mark.parametrize("gamma", [0.0, -5.0, float("nan")])
def test_bad_snr_gamma(gamma):
    with pytest.raises(ValueError, match="snr_gamma must be > 0"):
        p_losses(Oracle(torch.zeros(1, 1, 4, 4)), torch.zeros(1, 1, 4, 4), torch.tensor([1]), snr_gamma=gamma)
