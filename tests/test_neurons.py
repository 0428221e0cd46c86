"""The SignedIF encoder: a (2T+1)-level rounding quantiser built from a stateful scan."""

import pytest
import torch

from stac.sim.neurons import SignedIFState, onset_quantiser, signed_if_scan, signed_if_step


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


# Hand-derived traces (dyadic values, so every float operation is exact). theta = 1, x = 3/8:
#   v: 3/8 -> 0 | 3/4 -> +1, v=-1/4 | 1/8 -> 0 | 1/2 -> +1 (a tie rounds up), v=-1/2 |
#   -1/8 -> 0 | 1/4 -> 0 | 5/8 -> +1, v=-3/8 | 0 -> 0            (3 spikes = round(8 * 3/8))
# x = -3/8: -3/8 -> 0 | -3/4 -> -1, v=1/4 | -1/8 -> 0 | -1/2 -> 0 (floor(0) = 0) |
#   -7/8 -> -1, v=1/8 | -1/4 -> 0 | -5/8 -> -1, v=3/8 | 0 -> 0
HELD_TRACES = {0.375: [0, 1, 0, 1, 0, 0, 1, 0], -0.375: [0, -1, 0, 0, -1, 0, -1, 0]}


@pytest.mark.parametrize("x", sorted(HELD_TRACES))
def test_held_drive_follows_the_hand_derived_trace(x):
    spikes = signed_if_scan(torch.tensor([[x]]), torch.tensor([1.0]), 8, per_step=False)
    assert spikes[:, 0, 0].tolist() == HELD_TRACES[x]
    state, trace = SignedIFState(torch.zeros(1)), []  # the step function, one step at a time
    for _ in range(8):
        s, state = signed_if_step(torch.tensor([x]), state, torch.tensor([1.0]))
        trace.append(int(s))
    assert trace == HELD_TRACES[x] and float(state.v) == 0.0


def test_graded_onset_trace_and_its_closed_form():
    """theta = 2, K = 3, onset x = 7/4 over T = 4: v = 7 at the first step, floor(7/2 + 1/2) = 4
    capped at 3 (v = 1), then floor(1/2 + 1/2) = 1 (v = -1), then 0, 0; 4 in all."""
    theta = torch.tensor([2.0])
    spikes = signed_if_scan(
        torch.tensor([[1.75]]), theta, 4, per_step=False, max_payload=3, onset=True
    )
    assert spikes[:, 0, 0].tolist() == [3, 1, 0, 0]
    assert onset_quantiser(torch.tensor([[1.75]]), theta, 4, 3).tolist() == [[4 * 2.0 / 4]]


@pytest.mark.parametrize("steps,k", [(1, 1), (4, 1), (8, 3), (16, 2)])
def test_onset_scan_emits_the_closed_form_total(steps, k):
    """Onset-driven, the payloads sum to clamp(floor(T x / theta + 1/2), -T K, T K)."""
    theta = torch.tensor([0.5, 1.0, 4.0])
    x = torch.arange(-64, 65, dtype=torch.float32)[:, None] / 16  # dyadic drives, ties included
    spikes = signed_if_scan(x, theta, steps, per_step=False, max_payload=k, onset=True)
    n = torch.clamp(torch.floor(x * steps / theta + 0.5), -steps * k, steps * k)
    assert torch.equal(spikes.sum(0), n)
    assert spikes.abs().max() <= k
    assert torch.equal(onset_quantiser(x, theta, steps, k), spikes.sum(0) * theta / steps)


def test_zero_input_never_spikes():
    spikes = signed_if_scan(torch.zeros(4, 5), torch.ones(5), 16, per_step=False)
    assert torch.count_nonzero(spikes) == 0
