"""The paper's own numbers, to print beside ours (NOTES.md section 4).

Table 1 of the main paper (as printed on the authors' poster): ELBO / log p(x) / D_score per model
and data set; supplement Table 5: forward and backward seconds per batch on a GTX TITAN X.
"""

from __future__ import annotations

# data set -> model -> (ELBO, log p(x), D_score)
TABLE1: dict[str, dict[str, tuple[float, float, float]]] = {
    "sprites": {"vae": (-47.05, -49.32, 0.05), "beta_vae": (-79.45, -81.38, 0.18), "beta_tcvae": (-66.48, -68.12, 0.30),
                "dip_vae": (-46.32, -48.92, 0.12), "uvitae": (-55.25, -57.29, 0.22), "cvitae": (-68.26, -70.49, 0.38)},
    "mnist": {"vae": (-169, -172, 0.579), "beta_vae": (-150, -152, 0.653), "beta_tcvae": (-141, -144, 0.679),
              "dip_vae": (-140, -155, 0.733), "uvitae": (-142, -143, 0.782), "cvitae": (-139, -141, 0.884)},
    "bodies": {"vae": (-8.62e3, -8.62e3, 0.485), "beta_vae": (-8.62e3, -8.60e3, 0.525), "beta_tcvae": (-8.62e3, -8.56e3, 0.651),
               "dip_vae": (-8.62e3, -8.54e3, 0.743), "uvitae": (-8.62e3, -8.55e3, 0.673), "cvitae": (-8.62e3, -8.52e3, 0.943)},
}

# Table 5 row label (vitae.reproduce.timing.ROWS) -> (forward, backward) seconds; None: not reported
TIMING: dict[str, tuple[float | None, float | None]] = {
    "VAE": (0.0016, 0.014), "beta-VAE": (0.0016, 0.014), "beta-TCVAE": (0.0020, 0.016), "DIP-VAE-II": (0.0025, 0.018),
    "C-VITAE affine": (0.0092, None), "C-VITAE cpab": (0.1, None),
}

MODEL_NAMES = {"vae": "VAE", "beta_vae": "beta-VAE", "beta_tcvae": "beta-TCVAE", "dip_vae": "DIP-VAE-II",
               "uvitae": "U-VITAE", "cvitae": "C-VITAE"}
DATA_NAMES = {"sprites": "dSprites (generated)", "mnist": "MNIST", "bodies": "SMPL-style bodies (mannequin-x)",
              "faces": "faces"}
