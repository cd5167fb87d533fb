"""The one registry of reconstruction methods the platform and the CLI read.

A method is a small module under :mod:`recon_engine.methods` that builds a
:class:`MethodSpec` and registers it with :func:`register`. The platform lists
methods, renders parameter forms and validates protocols from the spec alone,
without importing anything method specific.

Every method's ``run`` has the same signature::

    run(data: ReconInput, params: dict) -> ReconOutput

where ``params`` has already been validated and completed with defaults by
:meth:`MethodSpec.validate`.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

FAMILIES = (
    "baseline",
    "parallel_imaging",
    "compressed_sensing",
    "simultaneous_multislice",
    "deep_learning",
    "super_resolution",
)

PARAM_TYPES = ("int", "float", "bool", "choice", "str")


class ParameterError(ValueError):
    """A protocol parameter is missing, unknown, of the wrong type or out of range."""


class ReconError(ValueError):
    """The input cannot be reconstructed by this method (message names the problem)."""


@dataclass(frozen=True)
class Param:
    """One parameter of a method: the platform renders a form field from it."""

    name: str
    type: str
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"parameter {self.name!r}: unknown type {self.type!r}")
        if self.type == "choice" and not self.choices:
            raise ValueError(f"parameter {self.name!r}: a choice needs choices")

    def coerce(self, value: Any) -> Any:
        """Convert ``value`` (possibly a string from a CLI or form) and check its range."""
        name = self.name
        try:
            if self.type == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise TypeError
                value = int(value)
            elif self.type == "float":
                if isinstance(value, bool):
                    raise TypeError
                value = float(value)
            elif self.type == "bool":
                if isinstance(value, str):
                    lowered = value.strip().lower()
                    if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                        raise TypeError
                    value = lowered in {"true", "1", "yes"}
                elif not isinstance(value, bool):
                    raise TypeError
            else:
                value = str(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name}: expected {self.type}, got {value!r}") from None
        if self.type in ("int", "float"):
            if value != value:  # NaN
                raise ParameterError(f"{name}: NaN is not allowed")
            if self.min is not None and value < self.min:
                raise ParameterError(f"{name}: {value} is below the minimum {self.min}")
            if self.max is not None and value > self.max:
                raise ParameterError(f"{name}: {value} is above the maximum {self.max}")
        if self.type == "choice" and value not in self.choices:
            raise ParameterError(f"{name}: {value!r} is not one of {', '.join(self.choices)}")
        return value


@dataclass
class ReconInput:
    """What every method receives.

    kspace: ``(S, C, H, W)`` complex64, zeros where not sampled.
    mask: float32 0/1 broadcastable to ``kspace`` (``(1, 1, 1, W)`` or ``(1, 1, H, W)``
        or per slice ``(S, 1, H or 1, W)``).
    acs_mask: optional mask of the calibration (ACS) region, same layout as ``mask``.
    sensitivities: optional ``(S, C, H, W)`` coil maps (e.g. from a prescan).
    metadata: free-form acquisition facts (e.g. ``{"sms_factor": 2}``).
    device: where to compute.
    progress: optional callback ``progress(done, total)`` called per slice/batch.
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    acs_mask: torch.Tensor | None = None
    sensitivities: torch.Tensor | None = None
    metadata: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: Callable[[int, int], None] | None = None


@dataclass
class ReconOutput:
    """What every method returns.

    image: ``(S, H, W)`` complex or real coil-combined image at the k-space matrix size.
    maps: extra per-voxel maps keyed by name (``g_factor``, ``uncertainty``,
        ``dc_residual``, ``sensitivities``...), each ``(S, H, W)`` or ``(S, C, H, W)``.
    timings: seconds per named step.
    info: JSON-friendly facts about the run (iterations, lambda, model sha256...).
    """

    image: torch.Tensor
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """A reconstruction (or super-resolution) method the platform can offer."""

    name: str
    title: str
    family: str
    description: str
    run: Callable[[ReconInput, dict], ReconOutput]
    params: tuple[Param, ...] = ()
    vendor_names: dict[str, str] = field(default_factory=dict)
    needs_acs: bool = False
    references: tuple[str, ...] = ()
    # A method that loses to its non-learned baseline (zero-filled, its own input) on the
    # held-out test data is a demonstration: it says so wherever methods are listed, with
    # ``caveat`` as the reason, and is kept out of default protocols.
    demonstration_only: bool = False
    caveat: str = ""
    # Optional autograd forward for instability tests (recon_engine.fidelity.instability):
    # ``differentiable(params, device)`` returns ``f(kspace (S, C, H, W), mask) -> (S, H, W)``
    # real magnitude, differentiable in ``kspace``. None: the method can't be differentiated.
    differentiable: Callable[[dict, torch.device], Callable] | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"method {self.name!r}: unknown family {self.family!r}")
        if self.demonstration_only and not self.caveat:
            raise ValueError(f"method {self.name!r}: a demonstration-only method needs a caveat")

    @property
    def label(self) -> str:
        """The title as method lists show it, marked when the method is a demonstration."""
        if self.demonstration_only:
            return f"{self.title} [demonstration only: loses to its baseline on test data]"
        return self.title

    def validate(self, params: dict | None) -> dict:
        """Return ``params`` coerced, range-checked and completed with defaults."""
        if params is not None and not isinstance(params, dict):
            raise ParameterError(
                f"{self.name}: parameters must be a mapping of name to value, "
                f"got {type(params).__name__}"
            )
        params = dict(params or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ParameterError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(known) or 'none'}"
            )
        return {name: p.coerce(params.get(name, p.default)) for name, p in known.items()}

    def to_dict(self) -> dict:
        """JSON-friendly description (what ``python -m recon_engine methods --json`` prints)."""
        return {
            "name": self.name,
            "title": self.title,
            "family": self.family,
            "description": self.description,
            "needs_acs": self.needs_acs,
            "demonstration_only": self.demonstration_only,
            "caveat": self.caveat,
            "vendor_names": dict(self.vendor_names),
            "references": list(self.references),
            "params": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(p).items()}
                for p in self.params
            ],
        }


_REGISTRY: dict[str, MethodSpec] = {}
_LOADED = False
_REFRESH_LOCK = threading.Lock()


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the registry (called at import time by each method module)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    from recon_engine import methods

    for module in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"{methods.__name__}.{module.name}")
    _LOADED = True
    refresh_external_methods()


def refresh_external_methods() -> list[str]:
    """(Re-)register the site's external models found on ``RECON_MODEL_PATH``.

    Called when the registry first loads, and again after a model is added or removed so
    a long-running process sees it. Returns the external method names now registered.
    """
    global _REGISTRY
    from recon_engine.dl.external import METHOD_PREFIX, external_specs

    with _REFRESH_LOCK:
        specs = external_specs()
        fresh = {n: s for n, s in _REGISTRY.items() if not n.startswith(METHOD_PREFIX)}
        fresh.update({spec.name: spec for spec in specs})
        # One rebinding: a reader in another thread sees the old or the new registry whole.
        _REGISTRY = fresh
    return [spec.name for spec in specs]


def all_methods() -> list[MethodSpec]:
    """Every registered method, sorted by family then name."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda s: (FAMILIES.index(s.family), s.name))


def get_method(name: str) -> MethodSpec:
    """The method called ``name``; raises ``KeyError`` listing the known names."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown method {name!r}; known methods: {known}") from None
