"""PostgreSQL for the full profile: one database per store, created when missing."""

from urllib.parse import urlsplit, urlunsplit

from infra.errors import PlatformError

STORES = ("mlflow", "mlflow_auth", "prefect", "optuna")


def database_name(prefix: str, store: str) -> str:
    return f"{prefix}_{store}"


def database_uri(server_url: str, database: str, driver: str | None = None) -> str:
    """The server URL with a database (and a SQLAlchemy driver, e.g. asyncpg) filled in."""
    parts = urlsplit(server_url)
    scheme = "postgresql" + (f"+{driver}" if driver else "")
    return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def redact(url: str) -> str:
    """The URL without its password, fit for status output and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _connect(server_url: str):
    import psycopg2

    try:
        connection = psycopg2.connect(database_uri(server_url, "postgres"), connect_timeout=5)
    except psycopg2.OperationalError as error:
        raise PlatformError(f"PostgreSQL at {redact(server_url)} refused: {_reason(error)}") from error
    # CREATE DATABASE cannot run in a transaction (nor in `with connection:`, which opens one)
    connection.autocommit = True
    return connection


def require_reachable(database_url: str) -> None:
    """One line naming the server when a database does not answer (a SQLAlchemy URL)."""
    import psycopg2

    dsn = database_url.replace("+psycopg2", "").replace("+asyncpg", "")
    try:
        psycopg2.connect(dsn, connect_timeout=5).close()
    except psycopg2.OperationalError as error:
        raise PlatformError(f"the platform's database at {redact(dsn)} does not answer: "
                            f"{_reason(error)}") from error


def _reason(error: Exception) -> str:
    """The first line of a driver's error: the rest repeats it or shows the query."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def ensure_databases(server_url: str, names: list[str]) -> list[str]:
    """Create each database that does not exist yet; returns the ones created."""
    from psycopg2 import sql

    created = []
    connection = _connect(server_url)
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                created.append(name)
    connection.close()
    return created


def drop_databases(server_url: str, names: list[str]) -> None:
    """Remove databases (tests clean up with this); live connections are closed first."""
    from psycopg2 import sql

    connection = _connect(server_url)
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    connection.close()
