"""Throwaway test PKI for the TLS integration tests, made with the `openssl` CLI (not a test
module itself): ECDSA P-256 roots, origin certificates they sign (SANs for given DNS names plus
IP:127.0.0.1, extendedKeyUsage serverAuth), and self-signed leaves nobody trusts.

    pki = Pki(directory)
    root = pki.ca("root", "OpenShell Test Root CA")           # Cert(cert=..., key=...)
    origin = pki.leaf("origin", ["api.test", "a.test"], root)
    stray = pki.self_signed("stray", ["api.test"])
"""
import os
import secrets
import subprocess
from collections import namedtuple

Cert = namedtuple("Cert", "cert key")

_CA_EXTENSIONS = """basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""
_LEAF_EXTENSIONS = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl(*args, input=None):
    result = subprocess.run(["openssl", *args], input=input, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, (args, result.stderr)
    return result.stdout


class Pki:
    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)

    def _paths(self, name):
        return os.path.join(self.dir, f"{name}.pem"), os.path.join(self.dir, f"{name}.key")

    def _config(self, name, common_name, extensions):
        path = os.path.join(self.dir, f"{name}.cnf")
        with open(path, "w") as handle:
            handle.write(f"[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {common_name}\n"
                         f"[ext]\n{extensions}")
        return path

    def _self_signed(self, name, common_name, extensions):
        cert, key = self._paths(name)
        openssl("req", "-x509", "-config", self._config(name, common_name, extensions),
                "-extensions", "ext", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-sha256",
                "-set_serial", "0x" + secrets.token_hex(8))
        return Cert(cert, key)

    def ca(self, name, common_name):
        """A root CA: self-signed, CA:TRUE, keyCertSign."""
        return self._self_signed(name, common_name, _CA_EXTENSIONS)

    def leaf(self, name, dns_names, issuer, ips=("127.0.0.1",)):
        """A server certificate for `dns_names` (the first is the CN) signed by `issuer`."""
        cert, key = self._paths(name)
        config = self._config(name, dns_names[0], _LEAF_EXTENSIONS.format(san=san(dns_names, ips)))
        csr = os.path.join(self.dir, f"{name}.csr")
        openssl("req", "-new", "-config", config, "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr)
        openssl("x509", "-req", "-in", csr, "-CA", issuer.cert, "-CAkey", issuer.key,
                "-set_serial", "0x" + secrets.token_hex(8), "-days", "2", "-sha256",
                "-extfile", config, "-extensions", "ext", "-out", cert)
        return Cert(cert, key)

    def self_signed(self, name, dns_names, ips=("127.0.0.1",)):
        """A server certificate that is its own issuer (no CA flag): trusted by nobody."""
        return self._self_signed(name, dns_names[0],
                                 _LEAF_EXTENSIONS.format(san=san(dns_names, ips)))


def san(dns_names, ips=()):
    return ", ".join([f"DNS:{name}" for name in dns_names] + [f"IP:{ip}" for ip in ips])


def text(cert_path):
    """`openssl x509 -noout -text` of a PEM file."""
    return openssl("x509", "-noout", "-text", "-in", cert_path)


def serial(cert_path):
    """The serial number as an int (python: int(getpeercert()["serialNumber"], 16))."""
    return int(openssl("x509", "-noout", "-serial", "-in", cert_path).strip().split("=")[1], 16)


def verify(ca_path, cert_path):
    """True when `cert_path` chains to `ca_path` (and nothing else)."""
    result = subprocess.run(["openssl", "verify", "-no-CApath", "-no-CAstore", "-CAfile", ca_path,
                             cert_path], capture_output=True, text=True, timeout=30)
    return result.returncode == 0 and result.stdout.strip().endswith(": OK")
