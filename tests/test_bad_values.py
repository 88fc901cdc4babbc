"""Values that are accepted by type but invalid are refused before any work starts, with one line
naming the key and its range; unknown nested data options name the ones the data set takes."""

import pytest
import torch

from vitae import cli, config, data
from vitae.errors import VitaeError


@pytest.mark.parametrize("override, message", [
    ("latent_dim=0", "'latent_dim' must be at least 1"),
    ("appearance_dim=0", "'appearance_dim' must be at least 1"),
    ("perspective_dim=-2", "'perspective_dim' must be at least 1"),
    ("width=0", "'width' must be in (0, 64]"),
    ("width=-0.5", "'width' must be in (0, 64]"),
    ("width=nan", "'width' must be in (0, 64]"),
    ("beta=nan", "'beta' must be a finite number"),
    ("beta=-1", "'beta' must be a finite number"),
    ("lr=inf", "'lr' must be a finite positive number"),
    ("lr=nan", "'lr' must be a finite positive number"),
])
def test_out_of_range_values_are_refused(override, message):
    with pytest.raises(VitaeError) as error:
        config.load(None, [override])
    assert message in str(error.value)


def test_unknown_data_options_name_the_ones_taken():
    with pytest.raises(VitaeError, match=r"data set 'mnist' takes no data_options \['n_trian'\]; it takes: n_train, n_test, random_affine"):
        data.create("mnist", None, n_trian=10)
    with pytest.raises(VitaeError, match="data set 'sprites' takes no data_options"):
        data.ground_truth("sprites", None, size=3)


@pytest.mark.parametrize("flag", ["--limit", "--samples"])
@pytest.mark.parametrize("value", ["0", "-5"])
def test_evaluate_refuses_a_count_below_one_before_touching_the_run(flag, value, tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"vitae: error: {flag} must be at least 1, got {value}"


@pytest.mark.parametrize("tessellation", [[1000, 1000], [17, 17], [64, 8]])
def test_a_tessellation_too_large_for_memory_is_refused_with_the_estimate(tessellation):
    from vitae import transforms

    with pytest.raises(VitaeError, match=r"needs about [\d.]+ GiB for its field basis"):
        transforms.create("cpab", tessellation=tessellation)
    assert transforms.create("cpab", tessellation=[4, 4]).theta_dim == 62  # the paper's sizes build


@pytest.mark.parametrize("size", [[64], [64, 32, 3], "big", [0, 5], 2.5, True, [64, "x"]])
def test_an_image_size_that_is_not_one_or_two_whole_numbers(size):
    from vitae.data.image_folder import target_size

    with pytest.raises(VitaeError, match="data_options.size must be a whole number or two"):
        target_size(size)
    assert target_size(64) == (64, 64) and target_size([32, 48]) == (32, 48)


def test_nan_or_out_of_range_pixels_are_refused_before_training(tmp_path):
    from vitae.data.base import Dataset, Split
    from vitae.training.trainer import check_pixels

    good = torch.rand(4, 1, 2, 2)
    for bad, likelihood, message in ((torch.full((4, 1, 2, 2), float("nan")), "gaussian", "NaN or infinite"),
                                     (good * 3, "bernoulli", r"outside \[0, 1\]")):
        with pytest.raises(VitaeError, match=message):
            check_pixels(Dataset("toy", Split(bad), Split(good)), likelihood)
    check_pixels(Dataset("toy", Split(good * 3), Split(good)), "gaussian")  # a Gaussian takes any finite pixels
