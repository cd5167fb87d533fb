"""ISMRMRD XML headers: a minimal valid header for simulated data, and the facts we read.

Built and parsed with the ``ismrmrd`` package's schema classes (``ismrmrd.xsd``), so the
XML follows the ISMRMRD schema. fastMRI stores this XML in its ``ismrmrd_header``
dataset; ISMRMRD raw files store it in ``/dataset/xml``.
"""

from __future__ import annotations

from dataclasses import dataclass

from recon_engine.registry import ReconError

__all__ = ["HeaderInfo", "make_ismrmrd_header", "parse_ismrmrd_header"]


@dataclass
class HeaderInfo:
    """Encoding facts from an ISMRMRD header (first encoding).

    encoded_matrix / recon_matrix: ``(x, y, z)`` = (readout, phase encode, partitions).
    encoded_fov_mm / recon_fov_mm: ``(x, y, z)`` in millimetres.
    trajectory: e.g. ``"cartesian"``.
    acceleration: ``(R_step1, R_step2)`` from ``parallelImaging`` (``(1, 1)`` if absent).
    center_line: ``kspace_encoding_step_1`` centre (index of the DC line), or ``None``.
    n_slices: ``slice.maximum + 1`` from the encoding limits (1 if absent).
    n_coils: ``receiverChannels`` or ``None``.
    last_line: ``kspace_encoding_step_1`` maximum, or ``None``.
    """

    encoded_matrix: tuple[int, int, int]
    recon_matrix: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float]
    recon_fov_mm: tuple[float, float, float]
    trajectory: str
    acceleration: tuple[int, int]
    center_line: int | None
    n_slices: int
    n_coils: int | None
    tr_ms: float | None
    te_ms: float | None
    last_line: int | None = None  # kspace_encoding_step_1 maximum


def make_ismrmrd_header(
    matrix: tuple[int, int],
    n_coils: int,
    n_slices: int = 1,
    fov_mm: tuple[float, float] = (220.0, 220.0),
    slice_thickness_mm: float = 5.0,
    recon_matrix: tuple[int, int] | None = None,
    acceleration: tuple[int, int] = (1, 1),
    field_strength_t: float = 3.0,
    tr_ms: float | None = None,
    te_ms: float | None = None,
    protocol: str = "simulated",
) -> str:
    """A minimal, schema-valid ISMRMRD header (XML string) for Cartesian 2D data.

    ``matrix`` is ``(H, W)`` in fastMRI terms: ``H`` = readout samples (ISMRMRD ``x``),
    ``W`` = phase-encode lines (``y``, encoding step 1, DC line at ``W // 2``).
    ``fov_mm`` is ``(readout, phase)``. ``acceleration`` is ``(R_step1, R_step2)``.
    """
    from ismrmrd import xsd

    h, w = (int(v) for v in matrix)
    rh, rw = (int(v) for v in (recon_matrix or matrix))
    if min(h, w, rh, rw, n_coils, n_slices) < 1:
        raise ReconError(f"invalid header geometry: matrix {matrix}, coils {n_coils}")

    def space(x: int, y: int) -> xsd.encodingSpaceType:
        return xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=x, y=y, z=1),
            fieldOfView_mm=xsd.fieldOfViewMm(
                x=float(fov_mm[0]), y=float(fov_mm[1]), z=float(slice_thickness_mm)
            ),
        )

    encoding = xsd.encodingType(
        encodedSpace=space(h, w),
        reconSpace=space(rh, rw),
        encodingLimits=xsd.encodingLimitsType(
            kspace_encoding_step_0=xsd.limitType(minimum=0, maximum=h - 1, center=h // 2),
            kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=w - 1, center=w // 2),
            kspace_encoding_step_2=xsd.limitType(minimum=0, maximum=0, center=0),
            slice=xsd.limitType(minimum=0, maximum=n_slices - 1, center=0),
        ),
        trajectory=xsd.trajectoryType.CARTESIAN,
        parallelImaging=xsd.parallelImagingType(
            accelerationFactor=xsd.accelerationFactorType(
                kspace_encoding_step_1=int(acceleration[0]),
                kspace_encoding_step_2=int(acceleration[1]),
            )
        ),
    )
    sequence = xsd.sequenceParametersType(
        TR=[float(tr_ms)] if tr_ms is not None else [],
        TE=[float(te_ms)] if te_ms is not None else [],
    )
    header = xsd.ismrmrdHeader(
        version=1,
        measurementInformation=xsd.measurementInformationType(
            patientPosition=xsd.patientPositionType.HFS, protocolName=protocol
        ),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemVendor="ReconTrial simulation",
            systemFieldStrength_T=float(field_strength_t),
            receiverChannels=int(n_coils),
        ),
        experimentalConditions=xsd.experimentalConditionsType(
            H1resonanceFrequency_Hz=round(42.577478518e6 * field_strength_t)
        ),
        encoding=[encoding],
        sequenceParameters=sequence,
    )
    return xsd.ToXML(header)


def parse_ismrmrd_header(xml: str | bytes) -> HeaderInfo:
    """Read the first encoding of an ISMRMRD header; :class:`ReconError` if invalid."""
    from ismrmrd import xsd

    try:
        header = xsd.CreateFromDocument(xml)
    except Exception as exc:  # xsdata raises parser-specific errors
        raise ReconError(f"invalid ISMRMRD header: {exc}") from None
    if not header.encoding:
        raise ReconError("ISMRMRD header has no <encoding>")
    enc = header.encoding[0]

    def triple(space, attr: str, cast):
        v = getattr(space, attr)
        return (cast(v.x), cast(v.y), cast(v.z))

    limits = enc.encodingLimits
    step1 = limits.kspace_encoding_step_1 if limits else None
    slices = limits.slice if limits else None
    pi = enc.parallelImaging
    accel = (1, 1)
    if pi is not None and pi.accelerationFactor is not None:
        accel = (
            int(pi.accelerationFactor.kspace_encoding_step_1),
            int(pi.accelerationFactor.kspace_encoding_step_2),
        )
    system = header.acquisitionSystemInformation
    seq = header.sequenceParameters
    traj = enc.trajectory
    return HeaderInfo(
        encoded_matrix=triple(enc.encodedSpace, "matrixSize", int),
        recon_matrix=triple(enc.reconSpace, "matrixSize", int),
        encoded_fov_mm=triple(enc.encodedSpace, "fieldOfView_mm", float),
        recon_fov_mm=triple(enc.reconSpace, "fieldOfView_mm", float),
        trajectory=getattr(traj, "value", str(traj)),
        acceleration=accel,
        center_line=int(step1.center) if step1 is not None else None,
        n_slices=int(slices.maximum) + 1 if slices is not None else 1,
        n_coils=int(system.receiverChannels)
        if system is not None and system.receiverChannels
        else None,
        tr_ms=float(seq.TR[0]) if seq is not None and seq.TR else None,
        te_ms=float(seq.TE[0]) if seq is not None and seq.TE else None,
        last_line=int(step1.maximum) if step1 is not None else None,
    )


def image_geometry(info: HeaderInfo, matrix: tuple[int, int]) -> tuple[tuple[float, float], float]:
    """``((row spacing, column spacing) mm, slice thickness mm)`` of images reconstructed
    on the k-space ``matrix`` (H = readout, W = phase encode).

    The image grid spans the *encoded* field of view: fastMRI oversamples the readout 2x,
    so dividing the (smaller) recon FOV by the k-space matrix would halve the spacing.
    Cropping to the recon size later does not change the spacing.
    """
    fov = info.encoded_fov_mm
    return (fov[0] / matrix[0], fov[1] / matrix[1]), fov[2]


def acquired_window(info: HeaderInfo | None, width: int) -> tuple[int, int]:
    """Phase-encode columns ``[left, right)`` of a fastMRI k-space that were acquired.

    fastMRI stores k-space zero-padded to the encoded matrix; the acquired lines sit where
    the encoding limits put them (fastMRI's data loader: ``left = encoded_y // 2 -
    center``, ``right = left + maximum + 1``). Without usable limits every column counts.
    """
    if info is None or info.center_line is None or info.last_line is None:
        return 0, width
    encoded_y = info.encoded_matrix[1]
    left = encoded_y // 2 - info.center_line
    right = left + info.last_line + 1
    if encoded_y != width or not 0 <= left < right <= width:
        return 0, width
    return left, right
