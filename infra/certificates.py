"""A private certificate authority of one certificate, for servers that talk to each other
over mutual TLS on this machine (SeaweedFS's master, volume server, filer and S3 gateway).

The authority signs one certificate, used by every server and client, and its own key is
thrown away: nothing can sign another certificate that these servers would accept. Whoever
lacks the certificate's key is refused at the TLS handshake.
"""

import datetime
import ipaddress
from dataclasses import dataclass

VALID_FOR = datetime.timedelta(days=3650)  # made afresh at every start; expiry is not the guard


@dataclass(frozen=True)
class Credentials:
    """PEM texts: the authority's certificate, and the certificate and key it vouches for."""

    ca: str
    certificate: str
    key: str


def issue(common_name: str, addresses: tuple[str, ...] = ("127.0.0.1",),
          names: tuple[str, ...] = ("localhost",)) -> Credentials:
    """A new authority and one certificate for `addresses` and `names`, for server and client use."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    authority_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    authority = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} authority")])

    def signed(builder: x509.CertificateBuilder) -> x509.Certificate:
        return (builder.issuer_name(authority).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + VALID_FOR)
                .sign(authority_key, hashes.SHA256()))

    ca = signed(x509.CertificateBuilder().subject_name(authority).public_key(authority_key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True))
    alternative = [x509.DNSName(n) for n in names]
    alternative += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    leaf = signed(
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .public_key(key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    pem = serialization.Encoding.PEM
    return Credentials(
        ca=ca.public_bytes(pem).decode(),
        certificate=leaf.public_bytes(pem).decode(),
        key=key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
    )
