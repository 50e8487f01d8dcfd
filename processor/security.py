"""TLS for Dask traffic: encrypted and mutually authenticated client, scheduler and workers.

Dask's default ``tcp://`` is plain text and lets anyone who reaches the scheduler run code on
the workers. With a CA certificate and a certificate + key signed by it, every connection is
TLS and both ends must present a certificate from that CA (``distributed`` verifies peers
against the CA; it does not check host names, so one certificate may serve a whole cluster).
The same three files are given to ``dask scheduler``/``dask worker`` (``--tls-ca-file``,
``--tls-cert``, ``--tls-key``) and to ``lumiflow run`` (same option names).
"""

from __future__ import annotations

import os
from pathlib import Path

from distributed.security import Security

__all__ = ["tls_security"]


def tls_security(
    ca_file: str | os.PathLike[str], cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str] | None = None
) -> Security:
    """A ``distributed`` Security requiring TLS, for the client and (in a LocalCluster) every server.

    ``key_file`` may be omitted when the key is in ``cert_file`` (one PEM holding both). A missing
    file is a ``ValueError`` naming the option, before any connection is tried.
    """
    files = {"--tls-ca-file": ca_file, "--tls-cert": cert_file}
    if key_file is not None:
        files["--tls-key"] = key_file
    for option, path in files.items():
        if not Path(path).is_file():
            raise ValueError(f"{option} {path}: no such file")
    ca, cert = os.fspath(ca_file), os.fspath(cert_file)
    key = os.fspath(key_file) if key_file is not None else None
    return Security(
        require_encryption=True,
        tls_ca_file=ca,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert,
        tls_scheduler_key=key,
        tls_worker_cert=cert,
        tls_worker_key=key,
    )
