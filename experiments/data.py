"""Reading tables from a path, file://, s3:// or package:// URI, and fingerprinting them."""

import csv
import hashlib
import io
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

from experiments.errors import InputError

FORMATS = (".csv", ".parquet")


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


def load_table(uri: str) -> pd.DataFrame:
    """Read a CSV or Parquet file, or a folder of them, into a DataFrame.

    `package://PKG/path/in/package.csv` reads data shipped inside an installed package.
    Raises InputError with the source named when it is missing, unreadable or empty.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return _load_s3(parsed.netloc, parsed.path.lstrip("/"), uri)
    if parsed.scheme == "package":
        path = Path(str(resources.files(parsed.netloc).joinpath(parsed.path.lstrip("/"))))
    elif parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme in ("", "local") or len(parsed.scheme) == 1:  # 1 letter: a drive
        path = Path(uri).expanduser()
    else:
        raise InputError(f"data source {uri}: unsupported scheme '{parsed.scheme}://'")
    if path.is_dir():
        return _load_folder(path, uri)
    if not path.is_file():
        raise InputError(f"data file not found: {uri}")
    return _parse(path.read_bytes, path.suffix.lower(), uri)


def _load_folder(folder: Path, uri: str) -> pd.DataFrame:
    parts = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
    if not parts:
        raise InputError(f"data folder {uri} holds no .csv or .parquet files")
    frames = [_parse(p.read_bytes, p.suffix.lower(), str(p)) for p in parts]
    return pd.concat(frames, ignore_index=True)


def _load_s3(bucket: str, key: str, uri: str) -> pd.DataFrame:
    import boto3  # boto3 reads its own endpoint and credentials from the environment
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client("s3")
    try:
        if key.endswith("/") or Path(key).suffix == "":
            listing = client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/")
            keys = sorted(
                o["Key"] for o in listing.get("Contents", []) if Path(o["Key"]).suffix in FORMATS
            )
            if not keys:
                raise InputError(f"data folder {uri} holds no .csv or .parquet files")
            return pd.concat(
                [_load_s3(bucket, k, f"s3://{bucket}/{k}") for k in keys], ignore_index=True
            )
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NoSuchBucket"):
            raise InputError(f"data file not found: {uri}") from error
        raise InputError(f"cannot read {uri}: {error}") from error
    except BotoCoreError as error:
        raise InputError(f"cannot read {uri}: {error}") from error
    return _parse(lambda: body, Path(key).suffix.lower(), uri)


def _parse(read_bytes, suffix: str, uri: str) -> pd.DataFrame:
    if suffix not in FORMATS:
        raise InputError(f"data file {uri}: expected a .csv or .parquet file")
    try:
        content = read_bytes()
    except OSError as error:
        raise InputError(f"cannot read {uri}: {error.strerror or error}") from error
    if not content.strip():
        raise InputError(f"data file {uri} is empty")
    try:
        if suffix == ".csv":
            text = content.decode("utf-8-sig")
            _reject_duplicate_header(text, uri)
            frame = pd.read_csv(io.StringIO(text), low_memory=False)
        else:
            frame = pd.read_parquet(io.BytesIO(content))
    except UnicodeDecodeError as error:
        raise InputError(f"data file {uri} is not UTF-8 text CSV (bad byte at {error.start})") from error
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - parsers raise many types; all mean "unreadable"
        kind = "CSV" if suffix == ".csv" else "Parquet"
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"data file {uri} is not readable as {kind}: {first}") from error
    if frame.empty:
        raise InputError(f"data file {uri} has no rows")
    return frame


def _reject_duplicate_header(text: str, uri: str) -> None:
    # pandas renames a repeated column to "x.1"; the contract forbids duplicates outright.
    header = next(csv.reader(io.StringIO(text)), [])
    repeated = sorted(name for name, n in Counter(header).items() if n > 1)
    if repeated:
        raise InputError(f"data file {uri}: duplicate column names: {', '.join(repeated)}")


def data_digest(frame: pd.DataFrame) -> str:
    """A content fingerprint: equal for equal data (values, columns and order)."""
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(hashes.tobytes())
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most max_rows rows, drawn with a fixed seed so the same data gives the same sample."""
    if len(frame) <= max_rows:
        return frame
    rng = np.random.default_rng(seed)
    return frame.iloc[np.sort(rng.choice(len(frame), size=max_rows, replace=False))]


def split_holdout(frame: pd.DataFrame, target: str, task: str, fraction: float, seed: int) -> Split:
    """A fixed-seed holdout, stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    stratify = frame[target].astype(str) if task == "classification" else None
    train, holdout = train_test_split(
        frame, test_size=fraction, random_state=seed, stratify=stratify
    )
    return Split(train=train.reset_index(drop=True), holdout=holdout.reset_index(drop=True))
