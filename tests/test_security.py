"""Security: URLs are data, the analysis run is the one named, Dask over TLS, nothing written elsewhere."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DIMUON, result_bits

import processor
from processor.cli import main
from processor.executors.dask import DaskExecutor
from processor.executors.local import LocalExecutor
from processor.security import tls_security

pytestmark = pytest.mark.timeout(180)


def test_fileset_urls_are_data_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    markers = [tmp_path / f"pwned{i}" for i in range(5)]
    urls = [
        f"$(touch {markers[0]})",
        f"`touch {markers[1]}`",
        f"x.root; touch {markers[2]}",
        f"x.root | touch {markers[3]} &&",
        f"file://$(touch {markers[4]})",
    ]
    fileset = {"d": {"files": urls, "metadata": {"is_data": True}}}
    result = processor.run(DIMUON, processor.parse_fileset(fileset, tmp_path), executor=LocalExecutor(), write=False)
    assert [r.status for r in result.files] == ["failed"] * len(urls)
    assert all(r.error.startswith("FileNotFoundError") for r in result.files), [r.error for r in result.files]
    assert not any(m.exists() for m in markers)


def test_workers_run_the_analysis_named_even_if_its_file_changes(muon_fileset, tmp_path):
    """The source loaded (and hashed) when the user named it is what every worker runs."""
    analysis_file = tmp_path / "named_dimuon.py"
    shutil.copy(DIMUON, analysis_file)
    analysis = processor.load_analysis(analysis_file)
    marker = tmp_path / "other-code-ran"
    analysis_file.write_text(f"open({str(marker)!r}, 'w').close()\n" + DIMUON.read_text())
    result = processor.run(analysis, muon_fileset, executor=DaskExecutor(workers=1), write=False)
    assert not result.failures and not marker.exists()
    assert result_bits(result) == result_bits(processor.run(DIMUON, muon_fileset, write=False))


def test_nothing_is_written_outside_the_output_and_cache_directories(muon_fileset, tmp_path):
    """A whole ``lumiflow run`` on a LocalCluster, with HOME, TMPDIR and the working directory watched."""
    dirs = {name: tmp_path / name for name in ("home", "tmp", "cwd", "analysis", "data")}
    for d in dirs.values():
        d.mkdir()
    shutil.copy(DIMUON, dirs["analysis"] / "dimuon.py")
    for f in muon_fileset.parent.iterdir():
        shutil.copy(f, dirs["data"] / f.name)
    before = set(tmp_path.rglob("*"))
    env = {
        **os.environ,
        "HOME": str(dirs["home"]),
        "TMPDIR": str(dirs["tmp"]),
        "LUMIFLOW_CACHE": str(tmp_path / "cache"),
    }
    env.pop("MPLCONFIGDIR", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a user's machine: Python caches what it imports
    proc = subprocess.run(
        [sys.executable, "-m", "processor.cli", "run", str(dirs["analysis"] / "dimuon.py"), "--no-progress"]
        + ["--fileset", str(dirs["data"] / "fileset.json"), "--output", str(tmp_path / "out"), "--workers", "1"],
        cwd=dirs["cwd"],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr
    # besides output and cache: Python's (and Numba's) cache of the analysis, beside it, as for any import
    allowed = (tmp_path / "out", tmp_path / "cache", dirs["analysis"] / "__pycache__")
    outside = sorted(str(p) for p in set(tmp_path.rglob("*")) - before if not any(p.is_relative_to(a) for a in allowed))
    assert outside == [] and (tmp_path / "out" / "report.json").exists()
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.startswith(".")]  # no temporary files left


# --- Dask over TLS ----------------------------------------------------------------------------


def _certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A self-signed CA and a certificate + key it signed for 127.0.0.1: (ca, cert, key) PEM files."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key, issuer: str, issuer_key, ca: bool):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = certificate(f"{name} CA", ca_key, f"{name} CA", ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate(f"{name} dask", key, f"{name} CA", ca_key, ca=False)
    paths = (directory / f"{name}-ca.pem", directory / f"{name}-cert.pem", directory / f"{name}-key.pem")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    paths[2].chmod(0o600)
    return paths


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    """A real ``dask scheduler`` and ``dask worker`` on loopback that speak TLS only."""
    base = tmp_path_factory.mktemp("tls")
    ca, cert, key = _certificates(base, "lumiflow")
    tls = ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]
    scheduler_file = base / "scheduler.json"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--protocol",
                "tls",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ]
            + ["--no-dashboard", "--scheduler-file", str(scheduler_file), *tls],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and processes[0].poll() is None, "the TLS scheduler did not start"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard"]
                + ["--host", "127.0.0.1", "--no-nanny", *tls],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        yield address, (ca, cert, key), base
    finally:
        for p in processes:
            p.kill()
            p.wait(timeout=30)


def test_run_over_tls_gives_the_same_bits(tls_cluster, muon_fileset, tmp_path):
    address, (ca, cert, key), _ = tls_cluster
    executor = DaskExecutor(scheduler=address, security=tls_security(ca, cert, key))
    result = processor.run(DIMUON, muon_fileset, executor=executor, write=False)
    assert not result.failures
    assert result_bits(result) == result_bits(processor.run(DIMUON, muon_fileset, write=False))

    args = ["run", str(DIMUON), "--fileset", str(muon_fileset), "--scheduler", address, "--no-progress"]
    args += ["--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key), "--output", str(tmp_path / "o")]
    assert main(args) == 0
    assert json.loads((tmp_path / "o" / "report.json").read_text())["totals"]["files_ok"] == 12


def test_tls_scheduler_refuses_plain_and_foreign_clients(tls_cluster):
    from distributed import Client

    address, _, base = tls_cluster
    with pytest.raises(OSError):  # plain TCP to the TLS port: no handshake, no access
        Client(address.replace("tls://", "tcp://"), timeout="3s")
    rogue = _certificates(base, "rogue")  # a certificate from another CA
    with pytest.raises(OSError):
        Client(address, security=tls_security(*rogue), timeout="3s")


def test_tls_options_are_checked_before_connecting(tmp_path, muon_fileset):
    with pytest.raises(ValueError, match="--tls-cert .*nowhere.pem: no such file"):
        tls_security(DIMUON, tmp_path / "nowhere.pem")
    args = ["run", str(DIMUON), "--fileset", str(muon_fileset), "--tls-cert", str(DIMUON), "--no-progress"]
    assert main(args) == 2  # --tls-cert without --tls-ca-file
