"""The full profile's restricted MLflow account: the user `mlops serve` reads models as.

`up` creates it (or sets the password `secrets.env` holds now) through MLflow's basic-auth
REST API, as the admin. It is not an admin, and the server's `default_permission = READ`
lets it read experiments, runs and models and write none of them.
"""

import base64
import json
import urllib.error
import urllib.request

from infra.errors import PlatformError

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(mlflow_url: str, admin: tuple[str, str], method: str, path: str, body: dict) -> int:
    token = base64.b64encode(":".join(admin).encode()).decode()
    request = urllib.request.Request(
        f"{mlflow_url}/api/2.0/mlflow/users/{path}", data=json.dumps(body).encode(), method=method,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
    try:
        with _NO_PROXY.open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError as error:
        raise PlatformError(f"MLflow at {mlflow_url} did not answer: {error}") from error


def ensure_mlflow_user(mlflow_url: str, admin: tuple[str, str], username: str, password: str) -> None:
    """Create the user, or reset its password when it exists already."""
    body = {"username": username, "password": password}
    created = _call(mlflow_url, admin, "POST", "create", body)
    if created == 200:
        return
    updated = _call(mlflow_url, admin, "PATCH", "update-password", body)
    if updated != 200:
        raise PlatformError(f"MLflow at {mlflow_url} would not create the user {username} "
                            f"(HTTP {created}) nor set its password (HTTP {updated})")


def require_mlflow_login(mlflow_url: str, username: str, password: str) -> None:
    """One line unless MLflow accepts this user (a platform `up` has not set it up for)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    request = urllib.request.Request(f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1",
                                     headers={"Authorization": f"Basic {token}"})
    try:
        with _NO_PROXY.open(request, timeout=30):
            return
    except urllib.error.HTTPError as error:
        raise PlatformError(f"MLflow at {mlflow_url} refused the serving user {username} (HTTP "
                            f"{error.code}); run `mlops up --profile full` to set it up") from error
    except OSError as error:
        raise PlatformError(f"MLflow at {mlflow_url} did not answer: {error}") from error
