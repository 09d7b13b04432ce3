"""The live-traffic store: served records and their feedback as hourly Parquet parts.

Layout under a base (a local folder or `s3://bucket/prefix`):
`<model>/hour=YYYY-MM-DDTHH/part-<timestamp>-<uuid>.parquet` for served records and
`<model>/feedback/hour=.../part-...parquet` for the true labels sent later, and
`<model>/shadow/hour=.../part-...parquet` for the challenger's predictions on the same
records (scored after the answer, so kept apart and joined on reading). Parts are
written whole (a temporary name renamed, or one S3 put), so a reader never sees half a file.
"""

import io
import logging
import os
import re
import tempfile
import threading
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

TRAFFIC = "traffic"
FEEDBACK = "feedback"
SHADOW = "shadow"
LABEL = "label"
# The challenger's prediction on a served record, beside the champion's `prediction`.
CHALLENGER_PREDICTION = "challenger_prediction"
CHALLENGER_VERSION = "challenger_version"
HOUR_FORMAT = "%Y-%m-%dT%H"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # as a spec's name
_PART = re.compile(r"hour=(\d{4}-\d{2}-\d{2}T\d{2})/part-[^/]+\.parquet$")


def hour_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(HOUR_FORMAT)


class LocalFiles:
    """Parts in a local folder; each written to a hidden temporary name, then renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def list(self, prefix: str, from_hour: str = "") -> list[str]:
        """Keys of the parts under `prefix`, of hours from `from_hour` on."""
        folder = self.root / prefix
        if not folder.is_dir():
            return []
        hours = [d for d in folder.glob("hour=*") if d.name >= f"hour={from_hour}"]
        return sorted(str(p.relative_to(self.root)) for d in hours for p in d.glob("part-*.parquet"))

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()


class S3Files:
    """Parts in an S3 bucket; boto3 takes its endpoint and keys from the environment."""

    def __init__(self, bucket: str, prefix: str) -> None:
        import boto3

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._session = boto3.Session()
        self._client = self._session.client("s3")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def write(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def list(self, prefix: str, from_hour: str = "") -> list[str]:
        """Keys of the parts under `prefix`, of hours from `from_hour` on: the hour folders
        first (one short listing), then the parts of the hours wanted."""
        start = len(self._key(""))
        paginator = self._client.get_paginator("list_objects_v2")
        folders = paginator.paginate(Bucket=self.bucket, Prefix=self._key(f"{prefix}/hour="),
                                     Delimiter="/")
        hours = [p["Prefix"] for page in folders for p in page.get("CommonPrefixes", [])
                 if p["Prefix"].rstrip("/").rsplit("hour=", 1)[1] >= from_hour]
        return sorted(o["Key"][start:] for hour in hours
                      for page in paginator.paginate(Bucket=self.bucket, Prefix=hour)
                      for o in page.get("Contents", []) if o["Key"].endswith(".parquet"))

    def read(self, key: str) -> bytes:
        return self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def arrow_filesystem(self):
        """Arrow's S3 filesystem on the endpoint, region and keys boto3 found, and the path
        the keys are under."""
        from pyarrow.fs import S3FileSystem

        endpoint = urlparse(self._client.meta.endpoint_url)
        credentials = self._session.get_credentials()
        keys = {}
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            keys = {"access_key": frozen.access_key, "secret_key": frozen.secret_key,
                    "session_token": frozen.token}
        filesystem = S3FileSystem(region=self._client.meta.region_name or "us-east-1",
                                  endpoint_override=endpoint.netloc, scheme=endpoint.scheme, **keys)
        return filesystem, f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket


def open_files(base: str) -> LocalFiles | S3Files:
    """The store at a base URI: `s3://bucket/prefix`, `file:///path` or a plain path."""
    parsed = urlparse(base)
    if parsed.scheme == "s3":
        return S3Files(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalFiles(Path(unquote(parsed.path)))
    return LocalFiles(Path(base).expanduser())


def _folder(model: str, kind: str) -> str:
    if not MODEL_NAME.fullmatch(model):
        raise ValueError(f"'{model}' cannot name a traffic folder")
    return model if kind == TRAFFIC else f"{model}/{kind}"


class BufferFull(RuntimeError):
    """The writer holds as many unwritten rows as it may: the caller must refuse the request
    rather than answer it unrecorded."""

    def __init__(self, rows: int, limit: int, retry_after_s: float) -> None:
        super().__init__(f"live traffic not written: {rows} rows wait for the store (at most "
                         f"{limit}, MLOPS_TRAFFIC_MAX_ROWS)")
        self.retry_after_s = retry_after_s


class TrafficWriter:
    """Buffers rows off the request path; a thread writes them every `flush_s` seconds,
    sooner when `flush_rows` are waiting, and `close()` writes the rest.

    The buffer is bounded: beyond `max_rows` unwritten rows `add` raises BufferFull, and
    nothing is ever dropped. When the store fails, the thread retries with exponential
    back-off up to `backoff_max_s`, and logs once when writing fails and once when it works
    again, not at every attempt.

    Rows come as columns ({name: array}); naive datetime64 columns are UTC. Frames are
    made only when writing: a DataFrame per batch would cost more than the batch's model.
    """

    def __init__(self, files, model: str, flush_s: float = 5.0, flush_rows: int = 50_000,
                 max_rows: int = 1_000_000, backoff_max_s: float = 60.0) -> None:
        self._files = files
        self._folders = {kind: _folder(model, kind) for kind in (TRAFFIC, FEEDBACK, SHADOW)}
        self._flush_s = flush_s
        self._flush_rows = flush_rows
        self._max_rows = max_rows
        self._backoff_max_s = backoff_max_s
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._buffer: list[tuple[str, str, dict]] = []
        self._rows = 0  # unwritten: buffered, or taken by a flush that has not written them yet
        self.failed_attempts = 0  # consecutive failed writes; 0 while the store works
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="traffic-writer", daemon=True)
        self._thread.start()

    def add(self, kind: str, hour: str, columns: dict) -> None:
        """Queue rows of one hour partition (`kind` is TRAFFIC, FEEDBACK or SHADOW); BufferFull when
        they would take the unwritten rows beyond `max_rows`."""
        n = _length(columns)
        with self._lock:
            if self._rows and self._rows + n > self._max_rows:
                raise BufferFull(self._rows, self._max_rows, self.retry_after_s)
            self._buffer.append((kind, hour, columns))
            self._rows += n
            full = self._rows >= self._flush_rows
        if full:
            self._wake.set()

    @property
    def pending_rows(self) -> int:
        return self._rows

    @property
    def retry_after_s(self) -> float:
        """When the next write is due: the back-off delay while failing, else one flush."""
        return self._backoff(self.failed_attempts) if self.failed_attempts else self._flush_s

    def flush(self) -> int:
        """Write what is buffered, one part per kind and hour; return the rows written."""
        with self._write_lock:
            with self._lock:
                taken, self._buffer = self._buffer, []
            # A new champion may have other features: its rows go to a part of their own.
            groups: dict[tuple, list[dict]] = defaultdict(list)
            for kind, hour, columns in taken:
                groups[kind, hour, tuple(columns)].append(columns)
            parts = [(kind, hour, _joined(batches)) for (kind, hour, _), batches in groups.items()]
            written = 0
            for done, (kind, hour, columns) in enumerate(parts):
                try:
                    self._files.write(self._part_key(kind, hour), _to_parquet(columns))
                except Exception:
                    with self._lock:  # still counted in _rows: nothing was dropped
                        self._buffer[:0] = parts[done:]
                    raise
                with self._lock:
                    self._rows -= _length(columns)
                written += _length(columns)
            return written

    def close(self) -> None:
        """Stop the thread and write everything still buffered."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - shutdown goes on; the log says what was lost
            log.exception("could not write %d rows of live traffic at shutdown", self._rows)

    def _part_key(self, kind: str, hour: str) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{self._folders[kind]}/hour={hour}/part-{stamp}-{uuid.uuid4().hex}.parquet"

    def _backoff(self, failures: int) -> float:
        return min(self._backoff_max_s, 0.5 * 2 ** min(failures, 30))

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.failed_attempts:
                self._stop.wait(self._backoff(self.failed_attempts))
            else:
                self._wake.wait(self._flush_s)
                self._wake.clear()
            if self._stop.is_set():
                return
            self._attempt()

    def _attempt(self) -> None:
        """One flush; the log says when writing starts failing and when it works again."""
        try:
            self.flush()
        except Exception as error:  # noqa: BLE001 - the rows stay buffered; the next try writes them
            if not self.failed_attempts:
                log.error("writing live traffic failed (%s: %s); %d rows kept, retrying with "
                          "back-off up to %g s", type(error).__name__, _first_line(error),
                          self._rows, self._backoff_max_s)
            self.failed_attempts += 1
            return
        if self.failed_attempts:
            log.warning("live traffic written again after %d failed attempts", self.failed_attempts)
            self.failed_attempts = 0


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _length(columns: dict) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def _joined(batches: list[dict]) -> dict:
    if len(batches) == 1:
        return batches[0]
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def _to_parquet(columns: dict) -> bytes:
    frame = pd.DataFrame(columns)
    for name in frame.columns:
        if frame[name].dtype.kind == "M" and frame[name].dt.tz is None:
            frame[name] = frame[name].dt.tz_localize(UTC)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def read_parts(files, model: str, kind: str, since: datetime | None = None) -> pd.DataFrame:
    """Every part of one kind, or those of the hours from `since` on, as one frame."""
    first_hour = hour_of(since) if since is not None else ""
    frames = []
    for key in files.list(_folder(model, kind), first_hour):
        match = _PART.search(key)
        if match is None or match.group(1) < first_hour:
            continue
        frame = _read_part(files, key)
        if frame is not None:
            frames.append(frame)
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _read_part(files, key: str) -> pd.DataFrame | None:
    """One part, or None (with a warning) when it is not Parquet: one damaged file must not
    stop every later check. Parts are written whole, so this is damage from outside."""
    import pyarrow

    try:
        return pd.read_parquet(io.BytesIO(files.read(key)))
    except (pyarrow.ArrowException, OSError, ValueError) as error:
        skipping_unreadable(key, error)
        return None


def skipping_unreadable(part: str, error: Exception) -> None:
    """The warning for a traffic part a reader leaves out because it cannot be read."""
    log.warning("skipping the unreadable traffic part %s: %s", part, str(error).splitlines()[0])


def read_window(files, model: str, minutes: float, now: datetime | None = None) -> pd.DataFrame:
    """Records served in the last `minutes` (all versions of the model), oldest first."""
    since = (now or datetime.now(UTC)) - timedelta(minutes=minutes)
    traffic = read_parts(files, model, TRAFFIC, since)
    if traffic.empty:
        return traffic
    recent = traffic[traffic["served_at"] >= since]
    return recent.sort_values("served_at", kind="stable").reset_index(drop=True)


def read_labelled(files, model: str, target: str, since: datetime | None = None) -> pd.DataFrame:
    """Served records joined with their feedback: the true label in column `target`.

    When a request got feedback twice, the later labels win.
    """
    feedback = read_parts(files, model, FEEDBACK, since)
    if feedback.empty:
        return pd.DataFrame()
    feedback = (feedback.sort_values("received_at", kind="stable")
                .drop_duplicates(["request_id", "record_index"], keep="last"))
    earliest = datetime.strptime(feedback["served_hour"].min(), HOUR_FORMAT).replace(tzinfo=UTC)
    traffic = read_parts(files, model, TRAFFIC, earliest)
    if traffic.empty:
        return pd.DataFrame()
    # A feature may be called "label" too: the label travels under a name no column has.
    labels = feedback[["request_id", "record_index", LABEL]].rename(columns={LABEL: "__label__"})
    joined = traffic.merge(labels, on=["request_id", "record_index"], how="inner")
    return joined.rename(columns={"__label__": target}).reset_index(drop=True)


def with_challenger(files, model: str, rows: pd.DataFrame) -> pd.DataFrame:
    """The served rows that the challenger scored too, with its prediction and version beside
    the champion's (CHALLENGER_PREDICTION, CHALLENGER_VERSION)."""
    if rows.empty:
        return rows
    earliest = datetime.strptime(hour_of(rows["served_at"].min()), HOUR_FORMAT).replace(tzinfo=UTC)
    shadow = read_parts(files, model, SHADOW, earliest)
    if shadow.empty:
        return rows.iloc[0:0]
    shadow = shadow[["request_id", "record_index", CHALLENGER_PREDICTION, CHALLENGER_VERSION]]
    return rows.merge(shadow, on=["request_id", "record_index"], how="inner").reset_index(drop=True)
