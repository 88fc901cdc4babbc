"""Copy the README's result figures out of a medium-scale reproduction.

    vitae reproduce all --scale medium --out results
    python docs/make_results_figures.py results      # writes docs/results/*.png
"""

import sys
from pathlib import Path

from PIL import Image

MAX_SIDE = 900  # pixels: the faces' figures are 6000 wide at full size

FIGURES = {
    "stability.png": "figures/stability.png",
    "mnist_cvitae_swap.png": "runs/table1/mnist/cvitae/seed0/figures/swap.png",
    "mnist_cvitae_traversals_perspective.png": "runs/table1/mnist/cvitae/seed0/figures/traversals_perspective.png",
    "sprites_uvitae_swap.png": "runs/table1/sprites/uvitae/seed0/figures/swap.png",
    "bodies_cvitae_swap.png": "runs/table1/bodies/cvitae/seed0/figures/swap.png",
    "faces_cvitae_swap.png": "runs/faces/cvitae/seed0/figures/swap.png",
}


def main(out: str) -> None:
    target = Path(__file__).parent / "results"
    target.mkdir(exist_ok=True)
    for name, source in FIGURES.items():
        path = Path(out) / source
        if not path.is_file():
            sys.exit(f"make_results_figures: {path} is missing; run `vitae reproduce all --scale medium --out {out}` first")
        image = Image.open(path)
        image.thumbnail((MAX_SIDE, MAX_SIDE))  # keeps the aspect ratio; never enlarges
        image.save(target / name, optimize=True)
        print(f"written: {target / name}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
