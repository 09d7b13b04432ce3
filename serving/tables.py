"""Tables too big for memory: read in chunks, written in chunks to a staging file that takes
its final place (local or `s3://`) only when every chunk is written.

A local or S3 CSV or Parquet file (data to read may also be `package://PKG/path`). S3 objects
are copied to a local temporary file first (disk, not memory); boto3 takes its endpoint and
keys from the environment.
"""

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from experiments.data import FORMATS
from experiments.errors import InputError


@dataclass(frozen=True)
class Location:
    """Where a table lies: an S3 bucket and key, or a local path."""

    uri: str
    suffix: str
    path: Path | None = None
    bucket: str = ""
    key: str = ""

    @property
    def on_s3(self) -> bool:
        return self.path is None


def locate(uri: str, what: str, packaged: bool = False) -> Location:
    """The file a URI names; InputError unless it is a .csv or .parquet file, local or S3 (or,
    when `packaged`, shipped inside an installed package)."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        key = parsed.path.lstrip("/")
        location = Location(uri, Path(key).suffix.lower(), bucket=parsed.netloc, key=key)
    elif parsed.scheme == "package" and packaged:
        path = Path(str(resources.files(parsed.netloc).joinpath(parsed.path.lstrip("/"))))
        location = Location(uri, path.suffix.lower(), path=path)
    elif parsed.scheme == "file":
        location = Location(uri, Path(parsed.path).suffix.lower(), path=Path(unquote(parsed.path)))
    elif parsed.scheme == "" or len(parsed.scheme) == 1:  # 1 letter: a drive
        path = Path(uri).expanduser()
        location = Location(uri, path.suffix.lower(), path=path)
    else:
        raise InputError(f"{what} {uri}: unsupported scheme '{parsed.scheme}://'")
    if location.suffix not in FORMATS:
        raise InputError(f"{what} {uri}: expected a .csv or .parquet file")
    return location


def _s3():
    import boto3

    return boto3.client("s3")


def exists(location: Location) -> bool:
    if not location.on_s3:
        return location.path.exists()
    from botocore.exceptions import ClientError

    try:
        _s3().head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise InputError(f"cannot reach {location.uri}: {error}") from error
    return True


def require_new_output(uri: str, overwrite: bool) -> Location:
    """Where the output goes; InputError if it is no .csv/.parquet file, or exists unasked."""
    location = locate(uri, "output")
    if not overwrite and exists(location):
        raise InputError(f"output {uri} exists; pass --overwrite to replace it")
    return location


class ChunkedInput:
    """A CSV or Parquet file read `chunk_rows` rows at a time.

    CSV columns are read as text, except `numeric` ones (left to pandas, which gives text for
    a value that is not a number, for the contract check to find): a chunk's type must not
    depend on which rows it holds, or one output file could not hold every chunk.
    """

    def __init__(self, path: Path, suffix: str, uri: str, numeric: list[str]) -> None:
        self.path, self.suffix, self.uri, self.numeric = path, suffix, uri, numeric
        try:
            if suffix == ".parquet":
                # Unbuffered, a row group's column chunks are read as the batches need them
                # (pre-buffering them all took ~100 MB more for a 1M-row group).
                self._parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
                self.schema = self._parquet.schema_arrow
                self.columns = list(self.schema.names)
                self.rows: int | None = self._parquet.metadata.num_rows
            else:
                self.columns = list(pd.read_csv(path, nrows=0).columns)
                self.schema = None
                self.rows = None
        except (OSError, ValueError, pa.ArrowException, pd.errors.ParserError) as error:
            raise InputError(f"data file {uri} is not readable: {_first_line(error)}") from error
        if len(set(self.columns)) != len(self.columns):
            raise InputError(f"data file {uri} has duplicate column names")

    def chunks(self, chunk_rows: int) -> Iterator[pd.DataFrame]:
        try:
            if self.suffix == ".parquet":
                for batch in self._parquet.iter_batches(batch_size=chunk_rows):
                    yield batch.to_pandas()
                return
            text = {c: str for c in self.columns if c not in set(self.numeric)}
            with pd.read_csv(self.path, chunksize=chunk_rows, dtype=text, low_memory=False) as reader:
                yield from reader
        except (OSError, ValueError, pa.ArrowException, pd.errors.ParserError) as error:
            raise InputError(f"data file {self.uri} is not readable: {_first_line(error)}") from error


@contextmanager
def open_input(uri: str, numeric: list[str]) -> Iterator[ChunkedInput]:
    """The table at URI, ready to be read in chunks; InputError when it is not there."""
    location = locate(uri, "data file", packaged=True)
    if not location.on_s3:
        if not location.path.is_file():
            raise InputError(f"data file not found: {uri}")
        yield ChunkedInput(location.path, location.suffix, uri, numeric)
        return
    from botocore.exceptions import BotoCoreError, ClientError

    with tempfile.TemporaryDirectory(prefix="mlops-input-") as tmp:
        local = Path(tmp) / f"input{location.suffix}"
        try:
            _s3().download_file(location.bucket, location.key, str(local))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code", "") in ("404", "NoSuchKey", "NoSuchBucket"):
                raise InputError(f"data file not found: {uri}") from error
            raise InputError(f"cannot read {uri}: {error}") from error
        except BotoCoreError as error:
            raise InputError(f"cannot read {uri}: {error}") from error
        yield ChunkedInput(local, location.suffix, uri, numeric)


class StagedOutput:
    """Chunks appended to a staging file; `publish` moves it to its place, `discard` drops it.

    A local output is staged beside its place (so the move is one rename); an S3 output in a
    temporary folder, then uploaded (boto3 uploads big files in parts).
    """

    def __init__(self, uri: str, overwrite: bool) -> None:
        self.location = require_new_output(uri, overwrite)
        if self.location.on_s3:
            self._tmpdir = tempfile.mkdtemp(prefix="mlops-output-")
            self.staging = Path(self._tmpdir) / f"output{self.location.suffix}"
        else:
            folder = self.location.path.parent
            if not folder.is_dir():
                raise InputError(f"output {uri}: folder {folder} does not exist")
            self._tmpdir = None
            fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=self.location.suffix, dir=folder)
            os.close(fd)
            self.staging = Path(name)
        self._writer: pq.ParquetWriter | None = None
        self._started = False

    def append(self, frame: pd.DataFrame, schema: pa.Schema) -> None:
        if self.location.suffix == ".csv":
            frame.to_csv(self.staging, mode="a" if self._started else "w", header=not self._started,
                         index=False)
        else:
            if self._writer is None:
                self._writer = pq.ParquetWriter(self.staging, schema)
            self._writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
        self._started = True

    def publish(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if not self._started:  # nothing scored: an empty file with no columns is no table
            raise InputError(f"no rows to write to {self.location.uri}")
        if self.location.on_s3:
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                _s3().upload_file(str(self.staging), self.location.bucket, self.location.key)
            except (BotoCoreError, ClientError) as error:
                raise InputError(f"cannot write {self.location.uri}: {error}") from error
        else:
            os.replace(self.staging, self.location.path)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
        else:
            self.staging.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove what staging is left (after publish, an S3 upload's local copy)."""
        self.discard()


class Digest:
    """A fingerprint of a table read in chunks, as data_digest gives for the whole frame."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._columns: list[str] = []

    def update(self, frame: pd.DataFrame) -> None:
        self._hash.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        self._columns = [str(c) for c in frame.columns]

    def hexdigest(self) -> str:
        digest = self._hash.copy()
        digest.update("\x1f".join(self._columns).encode())
        return digest.hexdigest()[:16]


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
