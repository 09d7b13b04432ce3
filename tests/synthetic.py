"""Small synthetic tables with known structure, made in the tests (nothing downloaded)."""

import numpy as np
import pandas as pd


def binary_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Label is an XOR of two features (no linear model can learn it), plus a categorical
    column and missing values in both kinds of column."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    noise = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n).astype(object)
    label = np.where((x1 > 0) ^ (x2 > 0), "yes", "no")
    frame = pd.DataFrame({"x1": x1, "x2": x2, "noise": noise, "colour": colour, "label": label})
    frame.loc[rng.choice(n, n // 10, replace=False), "noise"] = np.nan
    frame.loc[rng.choice(n, n // 10, replace=False), "colour"] = np.nan
    return frame


def multiclass_frame(n: int = 240, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.normal(size=n)
    shape = rng.choice(["round", "square"], size=n)
    kind = np.where(size < -0.4, "small", np.where(size > 0.4, "large", "medium"))
    frame = pd.DataFrame({"size": size + rng.normal(scale=0.2, size=n), "shape": shape,
                          "other": rng.normal(size=n), "kind": kind})
    frame.loc[rng.choice(n, n // 10, replace=False), "other"] = np.nan
    return frame


def regression_frame(n: int = 240, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    group = rng.choice(["north", "south"], size=n)
    y = 3 * a - 2 * b + np.where(group == "north", 1.5, -1.5) + rng.normal(scale=0.3, size=n)
    frame = pd.DataFrame({"a": a, "b": b, "group": group, "y": y})
    frame.loc[rng.choice(n, n // 10, replace=False), "b"] = np.nan
    return frame


def log_target_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """y depends on log(x) of a heavy-tailed x: a linear model on x itself fits it poorly."""
    rng = np.random.default_rng(seed)
    x = rng.lognormal(0, 1.5, n)
    z = rng.normal(size=n)
    site = rng.choice(["north", "south"], n).astype(object)
    y = 2 * np.log(x) + 0.5 * z + rng.normal(0, 0.3, n)
    return pd.DataFrame({"x": x, "z": z, "site": site, "y": y})
