"""Training and evaluating runs: the loop, checkpoints and the run folder."""
