"""Reading tables from paths and URIs, fingerprinting them, and splitting and sampling rows."""

import random

import pandas as pd
import pytest

from experiments.data import data_digest, load_table, sample_rows, split_holdout
from experiments.errors import InputError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"x": [1.5, 2.0, None, 4.0], "colour": ["red", "blue", "green", "red"], "y": [0, 1, 0, 1]}
    )


def test_csv_file_loads(tmp_path, frame):
    """Given a CSV file, when loaded by path, then the frame comes back with its values."""
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)

    loaded = load_table(str(path))

    pd.testing.assert_frame_equal(loaded, frame)


def test_parquet_file_loads(tmp_path, frame):
    """Given a Parquet file, when loaded by path, then the frame comes back unchanged."""
    path = tmp_path / "t.parquet"
    frame.to_parquet(path, index=False)

    pd.testing.assert_frame_equal(load_table(str(path)), frame)


def test_folder_of_parquet_partitions_is_concatenated(tmp_path, frame):
    """Given a folder with two parquet parts, when loaded, then the rows of both come back."""
    folder = tmp_path / "parts"
    (folder / "day=2").mkdir(parents=True)
    frame.iloc[:2].to_parquet(folder / "part-0.parquet", index=False)
    frame.iloc[2:].to_parquet(folder / "day=2" / "part-1.parquet", index=False)

    loaded = load_table(str(folder))

    assert len(loaded) == len(frame)
    assert sorted(loaded["x"].dropna()) == sorted(frame["x"].dropna())


def test_file_uri_loads(tmp_path, frame):
    """Given a file:// URI, when loaded, then the file at that path is read."""
    path = tmp_path / "with space.csv"
    frame.to_csv(path, index=False)

    loaded = load_table(path.as_uri())

    assert len(loaded) == len(frame)


def test_package_uri_loads_palmer_penguins():
    """Given the package:// URI of palmerpenguins' CSV, when loaded, then 344 rows come back."""
    loaded = load_table("package://palmerpenguins/data/penguins.csv")

    assert len(loaded) == 344
    assert "species" in loaded.columns


def _write(content: bytes, name: str):
    def make(tmp_path):
        path = tmp_path / name
        path.write_bytes(content)
        return str(path)

    return make


def _missing(tmp_path):
    return str(tmp_path / "absent.csv")


def _empty_folder(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    return str(tmp_path / "empty_dir")


@pytest.mark.parametrize(
    ("make_source", "expected"),
    [
        (_missing, "data file not found"),
        (_write(b"", "empty.csv"), "is empty"),
        (_write(b"  \n\t\n  ", "blank.csv"), "is empty"),
        (_write(random.Random(0).randbytes(4096), "garbage.csv"), "not UTF-8 text CSV"),
        (_write(random.Random(1).randbytes(4096), "garbage.parquet"), "not readable as Parquet"),
        (_write(b"a,b,y\n", "header_only.csv"), "has no rows"),
        (_write(b"a,b,a\n1,2,3\n", "dupes.csv"), "duplicate column names: a"),
        (_write(b"a,b\n1,2\n", "table.txt"), "expected a .csv or .parquet file"),
        (_empty_folder, "holds no .csv or .parquet files"),
    ],
    ids=[
        "missing", "empty", "whitespace-only", "garbage-csv", "garbage-parquet",
        "header-only", "duplicate-columns", "txt-suffix", "empty-folder",
    ],
)
def test_unusable_source_raises_input_error_naming_it(tmp_path, make_source, expected):
    """Given an unusable file, when loaded, then InputError names the file and the problem."""
    source = make_source(tmp_path)

    with pytest.raises(InputError) as caught:
        load_table(source)

    assert source in str(caught.value)
    assert expected in str(caught.value)


def test_unsupported_scheme_is_named():
    """Given an ftp:// URI, when loaded, then InputError names the URI and the scheme."""
    with pytest.raises(InputError) as caught:
        load_table("ftp://example.org/data.csv")

    assert "ftp://example.org/data.csv" in str(caught.value)
    assert "unsupported scheme 'ftp://'" in str(caught.value)


def test_data_digest_is_equal_for_equal_frames(frame):
    """Given two separately built equal frames, then their digests are equal."""
    assert data_digest(frame) == data_digest(frame.copy(deep=True))


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.assign(x=f["x"].replace(2.0, 2.5)),
        lambda f: f.assign(colour=f["colour"].replace("blue", "green")),
        lambda f: f.rename(columns={"colour": "color"}),
        lambda f: f.iloc[::-1].reset_index(drop=True),
    ],
    ids=["numeric-value", "text-value", "column-name", "row-order"],
)
def test_data_digest_changes_when_the_data_changes(frame, change):
    """Given a frame and a copy with one change, then their digests differ."""
    assert data_digest(change(frame)) != data_digest(frame)


def test_data_digest_ignores_the_index(frame):
    """Given the same rows under another index, then the digest is the same."""
    assert data_digest(frame.set_axis([10, 11, 12, 13])) == data_digest(frame)


@pytest.fixture
def labelled() -> pd.DataFrame:
    return pd.DataFrame({"x": range(100), "y": ["a"] * 80 + ["b"] * 20})


def test_split_holdout_is_stratified_by_class(labelled):
    """Given 80/20 classes and a 25 % holdout, then the holdout keeps the 80/20 proportion."""
    split = split_holdout(labelled, "y", "classification", 0.25, seed=0)

    assert split.holdout["y"].value_counts().to_dict() == {"a": 20, "b": 5}
    assert split.train["y"].value_counts().to_dict() == {"a": 60, "b": 15}


def test_split_holdout_is_deterministic_for_a_seed(labelled):
    """Given the same seed twice, then the same rows land in the holdout."""
    first = split_holdout(labelled, "y", "classification", 0.25, seed=7)
    second = split_holdout(labelled, "y", "classification", 0.25, seed=7)

    pd.testing.assert_frame_equal(first.holdout, second.holdout)
    pd.testing.assert_frame_equal(first.train, second.train)


def test_split_holdout_partitions_the_rows(labelled):
    """Given a split, then train and holdout are disjoint and together hold every row."""
    split = split_holdout(labelled, "y", "regression", 0.3, seed=0)

    assert len(split.holdout) == 30
    assert sorted([*split.train["x"], *split.holdout["x"]]) == list(range(100))
    assert split.holdout.index.tolist() == list(range(30))


def test_sample_rows_is_capped_and_deterministic(labelled):
    """Given 100 rows and max 10, then 10 original rows come back, the same for the same seed."""
    first = sample_rows(labelled, 10, seed=3)
    second = sample_rows(labelled, 10, seed=3)

    assert len(first) == 10
    pd.testing.assert_frame_equal(first, second)
    assert first.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(first, labelled.loc[first.index])


def test_sample_rows_returns_a_small_frame_whole(labelled):
    """Given fewer rows than the cap, then every row comes back."""
    assert len(sample_rows(labelled, 1000, seed=0)) == len(labelled)
