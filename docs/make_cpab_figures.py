"""Write docs/cpab_field.png and docs/cpab_grid.png: a CPAB tessellation with a random velocity
field, and a grid deformed by the same transformation.

Run: python docs/make_cpab_figures.py
"""

from pathlib import Path

from vitae.plotting.cpab import random_theta, save_deformed_grid, save_field
from vitae.transforms.cpab import CPAB

HERE = Path(__file__).parent

if __name__ == "__main__":
    transform = CPAB(tessellation=(4, 4), zero_boundary=True)
    theta = random_theta(transform, scale=1.5, seed=3)
    print("wrote", save_field(HERE / "cpab_field.png", transform, theta),
          save_deformed_grid(HERE / "cpab_grid.png", transform, theta))
