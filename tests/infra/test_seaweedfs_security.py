"""SeaweedFS's security settings (infra/objectstore.py) and the certificates they name
(infra/certificates.py), without starting SeaweedFS; tests/infra/test_closed_ports.py tries
them on a running server."""

import stat
import tomllib

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from infra.certificates import issue
from infra.objectstore import seaweedfs_service, security_config, write_security


def test_every_internal_port_wants_the_certificate_and_every_file_a_token(tmp_path):
    keys = {"jwt.signing": "a", "jwt.signing.read": "b", "jwt.filer_signing": "c",
            "jwt.filer_signing.read": "d"}
    config = tomllib.loads(security_config(tmp_path, keys))

    assert config["grpc"]["ca"] == str(tmp_path / "ca.pem")
    for role in ("master", "volume", "filer", "s3", "client"):
        assert config["grpc"][role] == {"cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem")}
    for role in ("master", "volume", "filer"):  # a `ca` makes the server require client certificates
        assert config["https"][role]["ca"] == str(tmp_path / "ca.pem")
    assert config["https"]["client"]["enabled"] is True
    assert config["jwt"]["signing"]["key"] == "a" and config["jwt"]["signing"]["read"]["key"] == "b"
    assert config["jwt"]["filer_signing"]["key"] == "c"
    assert config["jwt"]["filer_signing"]["read"]["key"] == "d"
    assert config["access"]["ui"] is False
    assert config["filer"]["expose_directory_metadata"]["enabled"] is False


def test_a_path_with_quotes_stays_one_toml_string(tmp_path):
    folder = tmp_path / 'a "b" \\ c'
    assert tomllib.loads(security_config(folder, {}))["grpc"]["ca"] == str(folder / "ca.pem")


def test_written_files_are_private_and_new_at_each_start(tmp_path):
    folder = tmp_path / "s3"
    write_security(folder)
    first = (folder / "security.toml").read_text()
    write_security(folder)

    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    written = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert written == ["security.toml", "tls/ca.pem", "tls/cert.pem", "tls/key.pem"]
    assert all(stat.S_IMODE((folder / p).stat().st_mode) == 0o600 for p in written)
    assert (folder / "security.toml").read_text() != first  # new signing keys


def test_the_certificate_is_the_authoritys_only_one():
    first, second = issue("seaweedfs"), issue("seaweedfs")
    ca, leaf = x509.load_pem_x509_certificate(first.ca.encode()), x509.load_pem_x509_certificate(
        first.certificate.encode())

    leaf.verify_directly_issued_by(ca)
    other = x509.load_pem_x509_certificate(second.certificate.encode())
    with pytest.raises(InvalidSignature):  # the same names, another start's authority
        other.verify_directly_issued_by(ca)
    usage = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usage)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(a) for a in names.get_values_for_type(x509.IPAddress)]


def test_internal_servers_bind_loopback_whatever_the_host(tmp_path):
    service = seaweedfs_service(tmp_path, "10.1.2.3", 8333, "key", "secret")
    argv = list(service.argv)

    assert argv[1:4] == ["-logtostderr=true", f"-config_dir={tmp_path / 's3'}", "server"]
    assert "-ip=127.0.0.1" in argv and "-ip.bind=127.0.0.1" in argv and "-s3.ip.bind=10.1.2.3" in argv
    assert service.cwd == tmp_path / "s3" and service.prepare is not None
    assert "-filer.localSocket=filer.sock" in argv and "-s3.localSocket=s3.sock" in argv
