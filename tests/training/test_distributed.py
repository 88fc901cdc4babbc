"""Distributed data parallel on CPU: two processes with gloo train to the parameters of one process
with the same global batch (VAE, beta-TCVAE with either estimator, DIP-VAE-II, C-VITAE), a
resumed distributed run ends where an uninterrupted one does, and bad input fails on every
process with a clear error instead of a hang.

The reparameterisation noise is the one thing two processes cannot share with one (each draws
its own), so the equivalence runs replace it by zero, ``z = mean``; the resume test keeps it.
"""

import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
import torch.multiprocessing as mp

from conftest import write_mnist_folder
from vitae import config as config_module
from vitae import collectives, models
from vitae.errors import DivergedError, VitaeError
from vitae.models import tcvae
from vitae.models.base import Inference
from vitae.models.distributions import DiagonalGaussian
from vitae.training import checkpoint, distributed, trainer
from vitae.training.trainer import train

WORLD = 2
EQUIVALENT = {
    "vae": {"model": "vae"},
    "tcvae_mws": {"model": "beta_tcvae"},
    "tcvae_mss": {"model": "beta_tcvae", "model_options": {"estimator": "mss"}},
    "dip_vae_ii": {"model": "dip_vae"},
    "cvitae": {"model": "cvitae"},
}
RESUMED = {"model": "beta_tcvae", "model_options": {"estimator": "mss"}}
SAMPLE = DiagonalGaussian.rsample


def tiny_config(root, **overrides):
    values = {"data_root": str(root), "epochs": 1, "warmup": 2, "batch_size": 64, "eval_batch_size": 64,
              "lr": 1e-3, "seed": 7, **overrides}
    return config_module.from_dict(values)


def real_mnist_config():
    """One epoch of C-VITAE on 1,024 images of the shipped MNIST, global batch 512: two steps.
    (Longer runs part by more than rounding whatever the noise: Adam's normalisation makes
    float-rounding differences in near-zero gradients lr-sized; ``benchmarks/ddp_rounding.py``
    shows one process drifting 5 nats in 16 steps from the same gradients summed in two halves.)"""
    return config_module.from_dict({"model": "cvitae", "epochs": 1, "warmup": 1, "batch_size": 512, "lr": 1e-3,
                                    "seed": 3, "eval_batch_size": 1000,
                                    "data_options": {"n_train": 1024, "n_test": 2000}})


def without_noise(self):
    return self.mean + self.var.sqrt() * torch.zeros_like(self.mean)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def params(path):
    return checkpoint.load(path / "checkpoint.pt")["model"]


def worker(rank, port, data, out):
    """One of the two processes: every distributed run of this file, in one process group."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    with distributed.process_group():
        errors = batch_statistic_errors()
        if rank == 0:
            torch.save(errors, out / "batch_statistics.pt")
        DiagonalGaussian.rsample = without_noise
        for name, overrides in EQUIVALENT.items():
            train(tiny_config(data, **overrides), out / name, progress=False)
        gather = collectives.gather
        collectives.gather = lambda tensor: tensor  # the control: per-process batch statistics
        train(tiny_config(data, **EQUIVALENT["dip_vae_ii"]), out / "dip_vae_local", progress=False)
        collectives.gather = gather
        DiagonalGaussian.rsample = SAMPLE
        train(tiny_config(data, epochs=2, **RESUMED), out / "straight", progress=False)
        train(tiny_config(data, **RESUMED), out / "split", progress=False)
        train(tiny_config(data, epochs=2, **RESUMED), out / "split", resume=True, progress=False)
        try:
            train(tiny_config(data, batch_size=63), out / "odd", progress=False)
        except VitaeError as exc:
            (out / f"odd.error.{rank}").write_text(str(exc))
        train(real_mnist_config(), out / "real_cvitae", progress=False)  # with the reparameterisation noise
        if rank == 1:  # a loss that turns NaN on one process only
            forward = models.GenerativeModel.forward
            models.GenerativeModel.forward = lambda self, x, kl_weight=1.0: replace(forward(self, x, kl_weight), loss=torch.tensor(float("nan")))
        try:
            train(tiny_config(data, model="vae"), out / "diverged", progress=False)
        except DivergedError as exc:
            (out / f"diverged.error.{rank}").write_text(str(exc))


def batch_statistic_errors() -> dict[str, tuple[float, float]]:
    """On a fixed global batch of 8 posteriors and samples (float64): the largest differences of
    the loss averaged over processes and of the gradients as DDP averages them, each process
    holding 4 rows, from one process holding all 8; for beta-TCVAE's MSS penalty and DIP-VAE-II's."""
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(8, 3, dtype=torch.float64, generator=generator)
    var = torch.rand(8, 3, dtype=torch.float64, generator=generator) + 0.5
    z = mean + var.sqrt() * torch.randn(8, 3, generator=generator, dtype=torch.float64)
    share = slice(4 * distributed.rank(), 4 * distributed.rank() + 4)
    losses = {
        "tcvae_mss": (models.create("beta_tcvae", (1, 28, 28), estimator="mss", dataset_size=100),
                      lambda m, inf: m.kl_penalty(inf, {"z": inf.posteriors["z"].kl_to_standard_normal()}).mean()),
        "dip_vae_ii": (models.create("dip_vae", (1, 28, 28)), lambda m, inf: m.regularizer(inf)),
    }
    errors = {}
    for name, (model, loss_of) in losses.items():
        results = []
        for training, rows in ((False, slice(None)), (True, share)):  # eval mode: no gathering
            leaves = [t[rows].clone().requires_grad_() for t in (z, mean, var)]
            inference = Inference({"z": DiagonalGaussian(leaves[1], leaves[2])}, {"z": leaves[0]}, torch.zeros(()))
            loss = loss_of(model.train(training), inference)
            results.append((loss.detach(), torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)))
        (single_loss, single_grads), (local_loss, local_grads) = results
        loss_error = (distributed.mean_over_processes(local_loss) - single_loss).abs().item()
        grad_error = max((distributed.gather(g) / WORLD - s).abs().max().item() for g, s in zip(local_grads, single_grads))
        errors[name] = (loss_error, grad_error)
    return errors


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The distributed runs (spawned once for the whole file) and their single-process twins."""
    root = tmp_path_factory.mktemp("ddp")
    data = write_mnist_folder(root / "idx")
    (root / "ddp").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        mp.spawn(worker, args=(free_port(), data, root / "ddp"), nprocs=WORLD)
    DiagonalGaussian.rsample = without_noise
    try:
        for name, overrides in EQUIVALENT.items():
            train(tiny_config(data, **overrides), root / "single" / name, progress=False)
    finally:
        DiagonalGaussian.rsample = SAMPLE
    train(real_mnist_config(), root / "single" / "real_cvitae", progress=False)
    return root


def test_two_processes_train_like_one_on_real_mnist_noise_and_all(runs):
    """With the reparameterisation noise drawn for the global batch, 2 gloo processes end an
    epoch of C-VITAE on real MNIST where one process does: parameters up to float rounding, test
    ELBO within 0.01 nats (per-process noise, before, put them apart by nats)."""
    two, one = params(runs / "ddp" / "real_cvitae"), params(runs / "single" / "real_cvitae")
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=1e-4, msg=key)
    elbo = [float((runs / kind / "real_cvitae" / "log.csv").read_text().splitlines()[1].split(",")[4])
            for kind in ("ddp", "single")]
    header = (runs / "single" / "real_cvitae" / "log.csv").read_text().splitlines()[0].split(",")
    assert header[4] == "test_elbo" and abs(elbo[0] - elbo[1]) < 0.01, elbo


@pytest.mark.parametrize("name", EQUIVALENT)
def test_two_processes_train_like_one_with_the_global_batch(runs, name):
    distributed_params, single = params(runs / "ddp" / name), params(runs / "single" / name)
    assert distributed_params.keys() == single.keys()
    for key in single:
        torch.testing.assert_close(distributed_params[key], single[key], atol=1e-5, rtol=1e-4, msg=key)


def test_gathered_batch_statistics_give_the_single_process_loss_and_gradient(runs):
    errors = torch.load(runs / "ddp" / "batch_statistics.pt")
    for name, (loss_error, grad_error) in errors.items():
        assert loss_error < 1e-12 and grad_error < 1e-12, name


def test_without_gathering_the_batch_statistics_differ(runs):
    local, single = params(runs / "ddp" / "dip_vae_local"), params(runs / "single" / "dip_vae_ii")
    assert any((local[key] - single[key]).abs().max() > 1e-4 for key in single)


def test_a_resumed_distributed_run_matches_an_uninterrupted_one(runs):
    straight, resumed = params(runs / "ddp" / "straight"), params(runs / "ddp" / "split")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    rows = (runs / "ddp" / "split" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]  # rank 0 alone writes the log


def test_rank_zero_alone_logs_to_tensorboard(runs):
    pytest.importorskip("tensorboard")  # logger = "auto": the runs log when it is installed
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = runs / "ddp" / "straight" / "tensorboard"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # one writer: rank 0
    reader = EventAccumulator(str(folder))
    reader.Reload()
    assert [s.step for s in reader.Scalars("test/elbo")] == [1, 2]


def test_a_batch_the_processes_cannot_share_is_an_error_on_every_process(runs):
    for rank in range(WORLD):
        message = (runs / "ddp" / f"odd.error.{rank}").read_text()
        assert message.startswith("batch_size 63 is not divisible by the 2 processes")


def test_a_loss_that_diverges_on_one_process_stops_every_process_alike(runs):
    messages = [(runs / "ddp" / f"diverged.error.{rank}").read_text() for rank in range(WORLD)]
    assert messages[0] == messages[1] and "diverged at epoch 1, step 0 (loss nan)" in messages[0]
    assert '"diverged": true' in (runs / "ddp" / "diverged" / "metrics.json").read_text()


def test_a_process_that_cannot_reach_the_others_fails_within_the_timeout(tiny_mnist, tmp_path):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2",
           "RANK": "0", "LOCAL_RANK": "0", distributed.TIMEOUT_VARIABLE: "2", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "vitae", "train", "configs/mnist_vae.toml", f"data_root={tiny_mnist}",
                           "--out", str(tmp_path / "run"), "--quiet"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "could not reach the others at 127.0.0.1" in done.stderr and "within 2 s" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_each_process_estimates_its_share_of_the_global_batch():
    """log q(z_i) of a process's samples against the gathered batch, with their rows of W, are
    the rows of the single-process estimate (MSS, where the rows differ)."""
    generator = torch.Generator().manual_seed(0)
    mean, var = torch.randn(6, 3, generator=generator), torch.rand(6, 3, generator=generator) + 0.5
    z = mean + var.sqrt() * torch.randn(6, 3, generator=generator)
    whole = tcvae.log_aggregate_posterior(z, DiagonalGaussian(mean, var), 100, "mss")
    shares = [tcvae.log_aggregate_posterior(z[i:i + 3], DiagonalGaussian(mean, var), 100, "mss", offset=i) for i in (0, 3)]
    for part, full in zip(zip(*shares), whole):
        torch.testing.assert_close(torch.cat(part), full)


def test_the_estimator_gradient_for_a_share_of_the_batch():
    generator = torch.Generator().manual_seed(1)
    z = torch.randn(2, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    mean = torch.randn(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    var = (torch.rand(5, 3, dtype=torch.float64, generator=generator) + 0.5).requires_grad_()
    log_w = tcvae.mss_log_weights(5, 50)[1:3]
    assert torch.autograd.gradcheck(lambda *a: tcvae.WeightedMixtureLogDensity.apply(*a, log_w), (z, mean, var))


needs_bf16 = pytest.mark.skipif(not trainer.cpu_has_bfloat16(), reason="this CPU has no AVX512-BF16 or AMX")


@needs_bf16
@pytest.mark.parametrize("name", ["vae", "cvitae"])
def test_mixed_precision_on_cpu_runs_the_networks_in_bfloat16_and_hands_on_float32(name):
    torch.manual_seed(0)
    model = models.create(name, (1, 28, 28))
    x = torch.rand(16, 1, 28, 28)
    torch.manual_seed(1)
    reference = model(x).elbo
    seen = []
    encoder = model.encoder if name == "vae" else model.appearance_encoder
    first = next(m for m in encoder.modules() if isinstance(m, torch.nn.Linear))
    first.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    trainer.use_mixed_precision(model, torch.device("cpu"))
    torch.manual_seed(1)
    out = model(x)
    posterior = model.encode(x)["z" if name == "vae" else "z_A"]
    assert seen[0] == torch.bfloat16  # the networks' products in bfloat16 ...
    assert out.elbo.dtype == posterior.mean.dtype == posterior.var.dtype == torch.float32  # ... their outputs in float32
    # bfloat16 keeps 8 bits of mantissa: the ELBO moves by far less than a nat per image here
    assert (out.elbo - reference).abs().max() < 1.0 and not torch.equal(out.elbo, reference)


@needs_bf16
def test_mixed_precision_training_resumes_exactly(tiny_mnist, tmp_path):
    straight = train(tiny_config(tiny_mnist, model="vae", amp=True, epochs=2), tmp_path / "straight", progress=False)
    train(tiny_config(tiny_mnist, model="vae", amp=True, epochs=1), tmp_path / "split", progress=False)
    resumed = train(tiny_config(tiny_mnist, model="vae", amp=True, epochs=2), tmp_path / "split", resume=True, progress=False)
    a, b = params(straight.path), params(resumed.path)
    assert all(torch.equal(a[key], b[key]) for key in a)


@needs_bf16
def test_mixed_precision_keeps_the_transformers_parameters_in_float32():
    """The perspective networks ``q(z_P | x)`` and ``g_P`` give the spatial transformer its
    parameters: under amp they run in float32 (bit-identical to the float32 model), the
    appearance networks in bfloat16."""
    torch.manual_seed(0)
    model = models.create("cvitae", (1, 28, 28))
    z, x = torch.randn(8, 2), torch.rand(8, 1, 28, 28)
    gamma, q_p, canonical = model.perspective_decoder(z), model.perspective_encoder(x), model.appearance_decoder(z)
    trainer.use_mixed_precision(model, torch.device("cpu"))
    assert torch.equal(model.perspective_decoder(z), gamma)
    amp_q_p = model.perspective_encoder(x)
    assert torch.equal(amp_q_p.mean, q_p.mean) and torch.equal(amp_q_p.var, q_p.var)
    amp_canonical = model.appearance_decoder(z)
    assert amp_canonical.dtype == torch.float32 and not torch.equal(amp_canonical, canonical)
