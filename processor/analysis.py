"""The analysis contract, and loading an analysis module by file path or dotted name.

An analysis is a plain Python module, not a class hierarchy: a physicist reads it top to bottom,
and the framework can ship it to remote workers by value (no image rebuild). The module defines

``name: str``
    Short name; the default output directory is ``./lumiflow-output/<name>``.
``columns: Sequence[str]``
    The branches to read. Nothing else is read from the files.
``process(events: awkward.Array, dataset: DatasetInfo) -> Output``
    Runs on the events of one file (or one entry range of it). ``events`` is a record array
    whose fields are ``columns``. Fill ``hist.Hist`` objects with Weight storage, using
    ``dataset.weight`` as the per-event weight, and return them with a cutflow.
``templates: Templates``
    How the histograms become HistFactory channels and samples.
``lumi_pb: float`` (optional)
    Integrated luminosity used for MC weights when the fileset does not give ``lumi_pb``.
``column_types: Mapping[str, str]`` (optional)
    The awkward type of one event's value of some columns, as awkward prints it
    (``{"Muon_pt": "var * float32", "nMuon": "uint32"}``). A file whose branch has another type
    fails with a message naming the branch and both types, instead of an obscure error deep in
    ``process`` blamed on the analysis.
``default_fileset() -> str | os.PathLike`` (optional)
    The fileset used when the user gives none (hzz4l: the embedded demo data).

An analysis never imports dask and never opens files: the executor layer does that.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import hist

from .cache import cache_root
from .fileset import DatasetInfo

__all__ = ["Analysis", "AnalysisError", "AnalysisRef", "Output", "Templates", "load_analysis", "resolve_analysis"]


class AnalysisError(Exception):
    """The analysis module cannot be loaded or does not follow the contract."""


@dataclass
class Output:
    """What ``process`` returns for one file: histograms and an unweighted cutflow.

    Histograms must use Weight storage so that the MC statistical uncertainty survives into the
    HistFactory ``staterror``. The cutflow counts events passing each named step, in order.
    """

    hists: dict[str, hist.Hist] = field(default_factory=dict)
    cutflow: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Templates:
    """How an analysis' histograms become a HistFactory model.

    Samples come from the fileset: each dataset's ``role`` (signal, background, data) and
    ``sample`` name. Every background sample gets a normalisation uncertainty
    ``background_norm_uncertainty`` (normsys), every MC sample the luminosity uncertainty and
    a per-bin MC statistical uncertainty (staterror); the signal is scaled by ``poi``.
    """

    histogram: str
    channel_axis: str | None = None
    combine_channels: bool = False
    poi: str = "mu"
    background_norm_uncertainty: float = 0.10
    lumi_uncertainty: float = 0.026

    def split(self, h: hist.Hist) -> list[tuple[str, hist.Hist]]:
        """One-dimensional histograms, one per HistFactory channel, named by channel."""
        if self.channel_axis is None:
            return [(self.histogram, h)]
        if self.combine_channels:
            return [(self.histogram, h[{self.channel_axis: sum}])]
        return [(str(c), h[{self.channel_axis: c}]) for c in h.axes[self.channel_axis]]


@dataclass(frozen=True)
class Analysis:
    """A loaded analysis module, with the hash of its source for provenance and journals."""

    name: str
    columns: tuple[str, ...]
    process: Callable[[Any, DatasetInfo], Output]
    templates: Templates
    module: ModuleType
    source_path: Path | None
    source: bytes  # what was executed, so workers run exactly this even if the file changes
    source_sha256: str
    lumi_pb: float | None = None
    default_fileset: Callable[[], str | os.PathLike[str]] | None = None

    from_file: bool = False  # named by file path: workers get the source, not just the name
    column_types: Mapping[str, str] = field(default_factory=dict, hash=False)  # checked when a file is read

    def ref(self) -> AnalysisRef:
        """A small picklable handle that workers turn back into this analysis."""
        if self.from_file and self.source_path is not None:
            return AnalysisRef(str(self.source_path), self.source.decode(), self.source_sha256)
        return AnalysisRef(self.module.__name__, None, self.source_sha256)


@dataclass(frozen=True)
class AnalysisRef:
    """How a worker finds the analysis: a dotted name, or a file path plus its source.

    Shipping the source means a worker (a Kubernetes pod, say) needs no copy of the user's file
    and no image rebuild. Where the file is absent, tracebacks name the cached copy of it (same
    lines) under ``<cache>/analyses/<hash>/``.
    """

    spec: str
    source: str | None
    sha256: str


_RESOLVED: dict[str, Analysis] = {}


def resolve_analysis(ref: AnalysisRef) -> Analysis:
    """The analysis behind ``ref``, loaded once per process (kernels compile once per worker).

    A worker without the user's file (or with another version of it) loads the shipped source
    from a copy in the cache directory, named by its hash: Numba's ``cache=True`` needs a real
    file beside which to keep compiled kernels.
    """
    cached = _RESOLVED.get(ref.sha256)
    if cached is not None:
        return cached
    if ref.source is None:
        analysis = load_analysis(ref.spec)
    else:
        path = Path(ref.spec)
        if not (path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256):
            path = _shipped_copy(path.name, ref.source, ref.sha256)
        analysis = load_analysis(path)
    _RESOLVED[ref.sha256] = analysis
    return analysis


def _shipped_copy(filename: str, source: str, sha256: str) -> Path:
    path = cache_root() / "analyses" / sha256[:16] / filename
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(source)
        os.replace(tmp, path)  # concurrent workers on one machine may race here: same content
    return path


_FILE_MODULE_PREFIX = "lumiflow_analysis_"


def _import_name(path: Path) -> str | None:
    """The dotted name under which ``import`` would load exactly ``path``, if any.

    A file that is also importable (``analyses/hzz4l.py`` of an installed checkout) must be
    loaded under that one name: Numba's on-disk cache beside the file records the module name,
    and a kernel cached under another name fails to load in a process that imports it normally.
    """
    parts = [path.stem]
    package = path.parent
    while True:
        name = ".".join(reversed(parts))
        if all(p.isidentifier() for p in parts):
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin and Path(spec.origin).resolve() == path:
                return name
        if not (package / "__init__.py").is_file() or package.parent == package:
            return None
        parts.append(package.name)
        package = package.parent


def _module_from_path(path: Path) -> ModuleType:
    dotted = _import_name(path)
    if dotted is not None:
        try:
            return importlib.import_module(dotted)
        except Exception as exc:
            raise AnalysisError(f"cannot import analysis {path}: {type(exc).__name__}: {exc}") from exc
    module_name = f"{_FILE_MODULE_PREFIX}{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AnalysisError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before execution so dataclasses and pickling-by-value find the module.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise AnalysisError(f"cannot import analysis {path}: {type(exc).__name__}: {exc}") from exc
    return module


def load_analysis(spec: str | os.PathLike[str] | ModuleType) -> Analysis:
    """Load an analysis from a module file path (``analyses/hzz4l.py``) or a dotted name."""
    from_file = False
    if isinstance(spec, ModuleType):
        module = spec
    else:
        text = os.fspath(spec)
        path = Path(text)
        if text.endswith(".py") or path.is_file():
            if not path.is_file():
                raise AnalysisError(f"analysis file not found: {path}")
            module = _module_from_path(path.resolve())
            from_file = True
        else:
            try:
                module = importlib.import_module(text)
            except ImportError as exc:
                raise AnalysisError(f"cannot import analysis module {text!r}: {exc}") from exc
    analysis = dataclasses.replace(_analysis_from_module(module), from_file=from_file)
    # a task in this same process (local executor) reuses it instead of executing the module again
    _RESOLVED.setdefault(analysis.source_sha256, analysis)
    return analysis


def _analysis_from_module(module: ModuleType) -> Analysis:
    where = getattr(module, "__file__", None) or module.__name__
    missing = [attr for attr in ("name", "columns", "process", "templates") if not hasattr(module, attr)]
    if missing:
        raise AnalysisError(f"analysis {where} does not define {', '.join(missing)} (see processor.analysis)")
    if not callable(module.process):
        raise AnalysisError(f"analysis {where}: process must be a function process(events, dataset)")
    if not isinstance(module.templates, Templates):
        raise AnalysisError(f"analysis {where}: templates must be a processor.Templates")
    columns = module.columns
    if isinstance(columns, str) or not isinstance(columns, Sequence) or not columns:
        raise AnalysisError(f"analysis {where}: columns must be a non-empty list of branch names")
    source_path = Path(module.__file__) if getattr(module, "__file__", None) else None
    source = source_path.read_bytes() if source_path else module.__name__.encode()
    default = getattr(module, "default_fileset", None)
    lumi = getattr(module, "lumi_pb", None)
    types = getattr(module, "column_types", {})
    if not isinstance(types, Mapping) or not all(isinstance(t, str) and c in columns for c, t in types.items()):
        raise AnalysisError(f"analysis {where}: column_types must map names in columns to awkward type strings")
    return Analysis(
        name=str(module.name),
        columns=tuple(columns),
        process=module.process,
        templates=module.templates,
        module=module,
        source_path=source_path,
        source=source,
        source_sha256=hashlib.sha256(source).hexdigest(),
        lumi_pb=float(lumi) if lumi is not None else None,
        column_types=dict(types),
        default_fileset=default if callable(default) else None,
    )
