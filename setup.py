"""Build hook: ship the repository's `recipes/`, `accelerate_configs/` and `model_cards/` inside the wheel.

All metadata lives in pyproject.toml. This file only copies the three top-level folders into
`pretrain/recipes/`, `pretrain/accelerate_configs/` and `pretrain/model_cards/` of a built (non-editable) package, so that
`pretrain run tiny` works after a plain `pip install` and a recipe's `../../accelerate_configs/cpu.yaml`
resolves there as it does in a clone (src/pretrain/core/recipe_files.py finds either). An editable
install reads them from the checkout instead, so nothing is copied then.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = {
    "recipes": ("*/config.yaml", "*/README.md"),
    "accelerate_configs": ("*.yaml",),
    "model_cards": ("*.j2",),
}


class BuildPyWithRecipes(build_py):
    """`build_py`, plus the shipped recipes, accelerate configs and card templates copied into the package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for folder, patterns in SHIPPED.items():
            target = Path(self.build_lib) / "pretrain" / folder
            shutil.rmtree(target, ignore_errors=True)  # no stale file from an earlier build
            for pattern in patterns:
                for src in sorted((HERE / folder).glob(pattern)):
                    dst = target / src.relative_to(HERE / folder)
                    self.mkpath(str(dst.parent))
                    self.copy_file(str(src), str(dst))


setup(cmdclass={"build_py": BuildPyWithRecipes})
