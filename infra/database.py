"""PostgreSQL for the full profile: one database per store, created when missing, each
owned by a login role of its own (named after it) that no other role can connect with.
The admin connection (MLOPS_DATABASE_URL) only creates roles and databases."""

from collections.abc import Mapping
from urllib.parse import quote, urlsplit, urlunsplit

from infra.errors import PlatformError

STORES = ("mlflow", "mlflow_auth", "prefect", "optuna")


def database_name(prefix: str, store: str) -> str:
    return f"{prefix}_{store}"


def database_uri(server_url: str, database: str, driver: str | None = None) -> str:
    """The server URL with a database (and a SQLAlchemy driver, e.g. asyncpg) filled in."""
    parts = urlsplit(server_url)
    scheme = "postgresql" + (f"+{driver}" if driver else "")
    return urlunsplit((scheme, parts.netloc, f"/{database}", parts.query, ""))


def role_uri(server_url: str, database: str, password: str, driver: str | None = None) -> str:
    """The URL a service uses: its database, as the role named after it."""
    parts = urlsplit(server_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(database, safe='')}:{quote(password, safe='')}@{host}"
    scheme = "postgresql" + (f"+{driver}" if driver else "")
    return urlunsplit((scheme, netloc, f"/{database}", parts.query, ""))


def redact(url: str) -> str:
    """The URL without its password, fit for status output and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _connect(server_url: str, database: str = "postgres"):
    import psycopg2

    try:
        connection = psycopg2.connect(database_uri(server_url, database), connect_timeout=5)
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


def ensure_roles(server_url: str, passwords: Mapping[str, str]) -> None:
    """Give each database (name -> password) a login role of the same name that owns it and
    everything in it, and take CONNECT from PUBLIC, so one service's role cannot open another
    service's database. Databases an earlier version made (owned by the admin) are handed over.
    The server is sent a SCRAM hash, never the password itself (nor is any log)."""
    from psycopg2 import sql
    from psycopg2.extensions import encrypt_password

    connection = _connect(server_url)
    with connection.cursor() as cursor:
        for name, password in passwords.items():
            role = sql.Identifier(name)
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"
            hashed = encrypt_password(password, name, connection, "scram-sha-256")
            cursor.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(hashed)))
            cursor.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(role, role))
            cursor.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(role))
    connection.close()
    for name in passwords:
        _hand_over(server_url, name)


# What the admin made in a database before it had a role of its own: tables (with their
# indexes and owned sequences), views, other sequences, and types such as enums.
_OWNED_BY_OTHERS = """
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                      WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = ANY(%s) AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = %s)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')
                  AND d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass)
UNION ALL
SELECT 'TYPE', n.nspname, t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE %s AND t.typtype IN ('e', 'd') AND t.typowner <> (SELECT oid FROM pg_roles WHERE rolname = %s)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


def _hand_over(server_url: str, name: str) -> None:
    """Make the role `name` the owner of every table, sequence, view and type in its database."""
    from psycopg2 import sql

    connection = _connect(server_url, name)
    with connection.cursor() as cursor:
        for kinds, types in ((["r", "p", "v", "m"], True), (["S"], False)):
            cursor.execute(_OWNED_BY_OTHERS, (kinds, name, types, name))
            for kind, schema, relation in cursor.fetchall():
                cursor.execute(sql.SQL(f"ALTER {kind} {{}}.{{}} OWNER TO {{}}").format(
                    sql.Identifier(schema), sql.Identifier(relation), sql.Identifier(name)))
    connection.close()


def drop_databases(server_url: str, names: list[str]) -> None:
    """Remove databases and the roles named after them (tests clean up with this); live
    connections are closed first."""
    from psycopg2 import sql

    connection = _connect(server_url)
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    connection.close()
