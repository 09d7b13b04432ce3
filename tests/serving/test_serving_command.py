"""How `mlops serve` starts the server process: its command and the settings it passes on."""

import socket

from infra.settings import Settings
from serving.runner import command, settings_environment


def test_the_serving_settings_pass_on_and_its_credentials_do_not_twice(tmp_path):
    """The serving and traffic settings become MLOPS_ variables; the serving credentials are
    not copied under their MLOPS_ names (they go in under the clients' own)."""
    settings = Settings(_env_file=None, home=tmp_path, serve_reload_s=2.5, traffic_flush_s=1,
                        serve_mlflow_password="pw", serve_aws_secret_access_key="key")

    env = settings_environment(settings)

    assert env["MLOPS_SERVE_RELOAD_S"] == "2.5" and env["MLOPS_TRAFFIC_FLUSH_S"] == "1.0"
    assert env["MLOPS_TRAFFIC_URI"] == str((tmp_path / "traffic").resolve())
    assert "pw" not in env.values() and "key" not in env.values()
    assert Settings(_env_file=None, **{k.removeprefix("MLOPS_").lower(): v for k, v in env.items()
                                       if k != "MLOPS_TRAFFIC_URI"}).serve_reload_s == 2.5


def test_the_server_is_started_on_the_bound_socket_reading_its_environment_only():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))

        argv = command("wine", sock)

        assert argv[1:] == ["-m", "serving", "wine", "--fd", str(sock.fileno()), "--environment-only"]
        assert sock.get_inheritable()
