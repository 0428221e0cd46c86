"""The SignedIF encoder: a (2T+1)-level rounding quantiser built from a stateful scan."""

import pytest
import torch

from stac.sim.neurons import SignedIFState, signed_if_scan, signed_if_step


@pytest.mark.parametrize("steps", [1, 4, 8, 16, 33])
def test_mean_output_rounds_to_the_threshold_grid(steps):
    theta = torch.tensor([2.0])
    x = torch.linspace(-2.0, 2.0, 401)[:, None]
    spikes = signed_if_scan(x, theta, steps, per_step=False)
    decoded = (spikes * theta).mean(0)
    expected = torch.round(x * steps / theta) * theta / steps
    # Ties (x exactly half-way between grid points) may go either way.
    ties = ((x * steps / theta) % 1 - 0.5).abs() < 1e-4
    assert torch.equal(decoded[~ties], expected[~ties])
    assert (decoded - x).abs().max() <= theta / (2 * steps) + 1e-6


def test_at_most_one_spike_per_step_and_saturation():
    theta = torch.tensor([1.0])
    spikes = signed_if_scan(torch.tensor([[5.0], [-5.0]]), theta, 8, per_step=False)
    assert torch.equal(spikes[:, 0, 0], torch.ones(8))
    assert torch.equal(spikes[:, 1, 0], -torch.ones(8))


def test_scan_is_the_step_function_looped_over_time():
    torch.manual_seed(0)
    theta = torch.rand(7) + 0.1
    drive = torch.randn(12, 3, 7)
    state = SignedIFState(torch.zeros(3, 7))
    looped = []
    for t in range(12):
        s, state = signed_if_step(drive[t], state, theta)
        looped.append(s)
    assert torch.equal(signed_if_scan(drive, theta, 12, per_step=True), torch.stack(looped))


def test_zero_input_never_spikes():
    spikes = signed_if_scan(torch.zeros(4, 5), torch.ones(5), 16, per_step=False)
    assert torch.count_nonzero(spikes) == 0
