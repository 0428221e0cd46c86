"""stac's Loihi 2 mapping of PilotNet SDNN against the 61 cores Intel's compiler chose (the
per-core table lava-dl's pilotnet_sdnn/benchmark.ipynb prints from a run on the chip)."""

import importlib.util
from pathlib import Path

import pytest

from stac.ir.passes import legality, partition, place
from stac.profiles import load_profile

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "pilotnet_mapping.py"
_SPEC = importlib.util.spec_from_file_location("pilotnet_mapping", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)

#: Intel's cores per layer, copied from the notebook's table (not from the benchmark module).
INTEL = {
    "conv1": 25,
    "conv2": 13,
    "conv3": 3,
    "conv4": 3,
    "conv5": 2,
    "dense1": 12,
    "dense2": 1,
    "dense3": 1,
    "dense4": 1,
}


@pytest.fixture(scope="module")
def mapped():
    profile = load_profile("loihi2")
    return legality(place(partition(bench.pilotnet(66, 200), profile), profile), profile)


def test_total_cores_within_one_and_a_half_of_intels(mapped):
    cores = {layer: bench.layer_cores(mapped, layer)[0] for layer in INTEL}
    total = sum(cores.values())
    assert 61 / 1.5 <= total <= 61 * 1.5, cores


def test_every_convolution_within_two_of_intels(mapped):
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5"):
        cores = bench.layer_cores(mapped, layer)[0]
        assert INTEL[layer] / 2 <= cores <= INTEL[layer] * 2, (layer, cores)


def test_first_convolution_tiles_like_intels(mapped):
    """Intel puts conv1 (99 x 32 x 24 outputs) on 25 cores of 4 whole columns each."""
    assert bench.layer_cores(mapped, "conv1") == (25, "4x32x24")
