"""04's ablation grid: the chosen switches of `fdpkit.nb.params.ABLATIONS` as LOSO runs into
``work_dir/runs/ablations/<name>`` and their pooled metrics side by side."""

from __future__ import annotations

import pandas as pd
import torch

from fdpkit.io import write_csv
from fdpkit.model import make_config
from fdpkit.nb.notebook import Data, load_data, reuse_folds, run, run_dir
from fdpkit.nb.params import ABLATIONS, Params
from fdpkit.train.config import TrainConfig
from fdpkit.viz.records import comparison_table


def ablation_grid(names, include_official: bool = False, quiet: bool = False,
                  preset: str = "tiny") -> list[tuple[str, dict]]:
    """The chosen switches as (name, overrides); `variant-official` is skipped on a CPU unless asked."""
    if not quiet:
        model, train = make_config(preset), TrainConfig.from_preset(preset)
        print(f"The fdp entry is preset {preset} as it is: encoder {model.encoder}, rank scorer "
              f"{model.rank_scorer}, dynamic-image loss weight {train.di_weight:g}, variant {model.variant}, "
              f"T = {model.frames}; every other entry changes one of these.")
    grid = []
    for name in names:
        if name == "variant-official" and not include_official and not torch.cuda.is_available():
            if not quiet:
                print("variant-official is skipped: there is no CUDA device, and the released layout is left to "
                      "GPU machines to keep the grid affordable on a CPU. Set include_official = True in the "
                      "first cell to run it anyway.")
            continue
        grid.append((name, dict(ABLATIONS[name])))
    return grid


def run_ablations(p: Params, data: Data, grid, folds, quiet: bool = False) -> pd.DataFrame:
    """Each grid entry as a LOSO run over ``folds`` into ``work_dir/runs/ablations/<name>``; a
    `frames` entry uses its own cache (``work_dir/cache-T<frames>``); the `fdp` entry reuses the
    matching folds of ``runs/fdp``. Returns the pooled metrics table (also ablations/grid.csv)."""
    names = []
    for name, overrides in grid:
        overrides, cache = dict(overrides), None
        if "frames" in overrides and overrides["frames"] != data.frames:
            cache = load_data(p, frames=overrides.pop("frames"), quiet=quiet)
        overrides.pop("frames", None)
        target = f"ablations/{name}"
        if not overrides and cache is None:
            reuse_folds(run_dir(p.work_dir, "fdp"), run_dir(p.work_dir, target), folds)
        if not quiet:
            print(f"== {name} ==")
        run(p, data, target, folds=folds, overrides=overrides, cache=cache, quiet=quiet)
        names.append(target)
    table = comparison_table(p, names)
    table["name"] = table["name"].str.replace("ablations/", "", regex=False)
    write_csv(run_dir(p.work_dir, "ablations") / "grid.csv", table)
    return table


__all__ = ["ablation_grid", "run_ablations"]
