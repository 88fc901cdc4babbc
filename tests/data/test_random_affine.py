"""The authors' MNIST protocol (torchvision's RandomAffine(20, (0.1, 0.1)), nearest-neighbour):
the warp's conventions checked on exact cases (identity, whole-pixel shifts, quarter turns
counter-clockwise), parameters drawn as torchvision draws them, the factors the metrics see, and
training with a fresh warp per image per epoch that still resumes bit-identically."""

import numpy as np
import pytest
import torch

from vitae import data
from vitae.data.base import Split
from vitae.data.random_affine import RandomAffine, RandomAffineMnist
from vitae.errors import VitaeError

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def images():
    return torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(0))


def params(angle, dx, dy, n=6):
    return torch.tensor([[angle, dx, dy]] * n, dtype=torch.float64)


def test_zero_warp_is_the_identity(images):
    assert torch.equal(RandomAffine(SHAPE).warp(images, params(0, 0, 0)), images)


def test_shifts_move_whole_pixels_right_and_down_with_zeros_behind(images):
    out = RandomAffine(SHAPE).warp(images, params(0, 2, -1))
    expected = torch.zeros_like(images)
    expected[:, :, :-1, 2:] = images[:, :, 1:, :-2]  # 2 right, 1 up
    assert torch.equal(out, expected)


def test_a_quarter_turn_is_counter_clockwise_as_displayed(images):
    # about the centre of an even-sized image, a quarter turn maps pixel centres onto pixel centres
    out = RandomAffine(SHAPE).warp(images, params(90, 0, 0))
    assert torch.equal(out, torch.rot90(images, k=1, dims=(2, 3)))  # rot90: the right edge goes to the top
    assert torch.equal(RandomAffine(SHAPE).warp(out, params(-90, 0, 0)), images)


def test_parameters_are_drawn_as_torchvision_draws_them():
    drawn = RandomAffine(SHAPE).draw(200_000, torch.Generator().manual_seed(1)).numpy()
    assert drawn[:, 0].min() >= -20 and drawn[:, 0].max() <= 20
    assert abs(drawn[:, 0].std() - 40 / 12**0.5) < 0.05  # uniform on [-20, 20]
    for column in (1, 2):  # round(U(-2.8, 2.8)): -3 and 3 have mass 0.3 / 5.6, the others 1 / 5.6
        values, counts = np.unique(drawn[:, column], return_counts=True)
        assert values.tolist() == [-3, -2, -1, 0, 1, 2, 3]
        expected = np.array([0.3, 1, 1, 1, 1, 1, 0.3]) / 5.6
        np.testing.assert_allclose(counts / len(drawn), expected, atol=0.004)


def test_bad_shapes_and_options_are_refused(images):
    with pytest.raises(VitaeError, match=r"params must be \[6, 3\]"):
        RandomAffine(SHAPE).warp(images, params(0, 0, 0, n=5))
    with pytest.raises(VitaeError, match=r"images must be \[B, 1, 28, 28\]"):
        RandomAffine(SHAPE).warp(images[:, 0], params(0, 0, 0))
    with pytest.raises(VitaeError, match="unknown keys"):
        data.create("mnist", None, n_train=10, n_test=10, random_affine={"degree": 20})
    with pytest.raises(VitaeError, match="degrees must be a number in"):
        data.create("mnist", None, n_train=10, n_test=10, random_affine={"degrees": -1})
    with pytest.raises(VitaeError, match="translate must be two fractions"):
        data.create("mnist", None, n_train=10, n_test=10, random_affine={"translate": [0.1]})


def test_the_factors_are_the_digit_and_the_warp(tiny_mnist):
    dataset = data.create("mnist", str(tiny_mnist), random_affine={})
    assert dataset.factor_names == ("digit", "rotation", "shift_x", "shift_y")
    test = dataset.test
    # the test split is its digits under the recorded warps, the same on every load
    base = data.create("mnist", str(tiny_mnist)).test
    assert torch.equal(test.images, RandomAffine(SHAPE).warp(base.images, test.factors[:, 1:]))
    assert torch.equal(test.images, data.create("mnist", str(tiny_mnist), random_affine={}).test.images)
    assert torch.equal(test.factors[:, 0].long(), base.labels)
    truth = data.ground_truth("mnist", str(tiny_mnist), random_affine={})
    factors, observations = truth.sample(500, np.random.default_rng(0))
    codes = truth.codes(factors)
    assert codes[:, 1].min() == 0 and codes[:, 1].max() == 9  # ten rotation bins
    assert set(codes[:, 2]) <= set(range(7))
    # each observation is a digit of its class under its warp
    first = 0
    digit = int(factors[first, 0])
    candidates = base.images[base.labels == digit]
    warped = RandomAffine(SHAPE).warp(candidates, torch.from_numpy(np.tile(factors[first, 1:], (len(candidates), 1))))
    assert any(torch.equal(observations[first], w) for w in warped)
    assert data.ground_truth("mnist", str(tiny_mnist)) is None  # plain MNIST has no known factors


def test_training_draws_fresh_warps_each_epoch_and_resumes_exactly(tiny_mnist, tmp_path, monkeypatch):
    from vitae import config as config_module
    from vitae.training import checkpoint
    from vitae.training.trainer import train

    seen = []
    original = RandomAffine.warp

    def recording(self, x, p):
        seen.append(p.clone())
        return original(self, x, p)

    def config(epochs):
        return config_module.from_dict({"model": "vae", "data_root": str(tiny_mnist), "epochs": epochs, "warmup": 1,
                                        "batch_size": 256, "eval_batch_size": 64, "lr": 1e-3,
                                        "data_options": {"random_affine": {}}})

    monkeypatch.setattr(RandomAffine, "warp", recording)
    straight = train(config(2), tmp_path / "straight", progress=False)
    batches = [p for p in seen if len(p) == 256]  # the training batches (the 64 test images are warped once, at load)
    assert len(batches) == 2 and not torch.equal(batches[0], batches[1])  # one batch per epoch, new warps
    train(config(1), tmp_path / "split", progress=False)
    train(config(2), tmp_path / "split", resume=True, progress=False)
    a = checkpoint.load(straight.path / "checkpoint.pt")["model"]
    b = checkpoint.load(tmp_path / "split" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
