"""The FactorVAE score (Kim & Mnih 2018), as disentanglement_lib computes it.

Convention: the codes are divided by their standard deviation over ``num_variance_estimate``
i.i.d. samples, and codes with a standard deviation below 0.05 are dropped (collapsed dimensions).
A vote: pick a factor ``k`` uniformly, draw ``batch_size`` samples that share one value of ``k``
(the others i.i.d.), and vote ``(argmin_i var(code_i), k)``. A majority-vote classifier maps each
code to the factor it most often won for on ``num_train`` votes; the score is its accuracy on
``num_eval`` fresh votes. With no active code the score is 0. Chance level is about ``1 / K``.

Sizes: disentanglement_lib uses 10,000 training and 5,000 evaluation votes of 64 samples, 960,000
rendered and encoded images, which takes many minutes on a CPU. The defaults here are 500 and 500
votes (64,000 images): the vote table has at most ``d x K`` cells, so 500 votes fill it well, and
500 evaluation votes put the score's standard error under 0.023.
"""

from __future__ import annotations

import numpy as np

from vitae.metrics.sampling import represent, require

PRUNE_STD = 0.05


def vote_table(ground_truth, representation_fn, n: int, rng: np.random.Generator, *, scale: np.ndarray,
               active: np.ndarray, batch_size: int, votes_per_call: int = 50) -> np.ndarray:
    """Counts ``[d, K]`` of ``n`` votes (see the module's convention)."""
    table = np.zeros((len(scale), ground_truth.num_factors), dtype=np.int64)
    active_index = np.nonzero(active)[0]
    for start in range(0, n, votes_per_call):
        m = min(votes_per_call, n - start)
        fixed = rng.integers(ground_truth.num_factors, size=m)
        factors = ground_truth.sample_factors(m * batch_size, rng).reshape(m, batch_size, -1)
        factors[np.arange(m), :, fixed] = factors[np.arange(m), :1, fixed]
        codes = represent(ground_truth, representation_fn, factors.reshape(m * batch_size, -1), rng,
                          batch_size=votes_per_call * batch_size)
        codes = codes.reshape(m, batch_size, -1)[:, :, active] / scale[active]
        winner = active_index[np.argmin(np.var(codes, axis=1, ddof=1), axis=1)]
        np.add.at(table, (winner, fixed), 1)
    return table


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> float:
    """Accuracy on ``eval_votes`` of the classifier that maps each code to its most-voted factor."""
    classifier = np.argmax(train_votes, axis=1)
    return float(eval_votes[np.arange(len(classifier)), classifier].sum() / eval_votes.sum())


def compute(ground_truth, representation_fn, *, seed: int = 0, batch_size: int = 64, num_train: int = 500,
            num_eval: int = 500, num_variance_estimate: int = 10_000) -> float:
    require(batch_size, 2, "FactorVAE's variance of a batch")
    require(num_train, 1, "FactorVAE training")
    require(num_eval, 1, "FactorVAE evaluation")
    require(num_variance_estimate, 2, "FactorVAE's variance estimate")
    rng = np.random.default_rng(seed)
    factors = ground_truth.sample_factors(num_variance_estimate, rng)
    codes = represent(ground_truth, representation_fn, factors, rng)
    scale = np.std(codes, axis=0, ddof=1)
    active = scale >= PRUNE_STD
    if not active.any():
        return 0.0
    tables = [vote_table(ground_truth, representation_fn, n, rng, scale=scale, active=active, batch_size=batch_size)
              for n in (num_train, num_eval)]
    return majority_vote_accuracy(*tables)
