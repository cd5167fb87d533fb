"""Builders of small raw k-space files (fastMRI and ISMRMRD HDF5) shared by the case tests.

Every identifying header field holds a marker (``PHIMARK``, the accession number
``987654``, the study date 2001-02-03 and birth date 1970-03-15) so that tests can search
the output bytes for them.
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np

MARK = "PHIMARK"
ACCESSION = "987654"
BIRTHDATE = "1970-03-15"
STUDY_DATE = "2001-02-03"
UID_ROOT = "1.2.826.0.1.3680043.99999."


def ismrmrd_header(
    matrix: tuple[int, int] = (16, 12),
    slices: int = 3,
    coils: int = 4,
    center: int | None = None,
    maximum: int | None = None,
) -> str:
    """An ISMRMRD XML header with every identifying field marked.

    ``center``/``maximum`` are the phase-encode encoding limits (default: all columns).
    """
    height, width = matrix
    center = width // 2 if center is None else center
    maximum = width - 1 if maximum is None else maximum
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xsi:schemaLocation="http://www.ismrm.org/ISMRMRD ismrmrd.xsd">
  <!-- exported for {MARK}COMMENT -->
  <subjectInformation>
    <patientName>{MARK}^JANE</patientName>
    <patientWeight_kg>70.5</patientWeight_kg>
    <patientHeight_m>1.75</patientHeight_m>
    <patientID>{MARK}ID123</patientID>
    <patientBirthdate>{BIRTHDATE}</patientBirthdate>
    <patientGender>F</patientGender>
  </subjectInformation>
  <studyInformation>
    <studyDate>{STUDY_DATE}</studyDate>
    <studyTime>10:11:12</studyTime>
    <studyID>{MARK}STUDY</studyID>
    <accessionNumber>{ACCESSION}</accessionNumber>
    <referringPhysicianName>{MARK}^DOCTOR</referringPhysicianName>
    <studyDescription>Knee {MARK}ID123</studyDescription>
    <studyInstanceUID>{UID_ROOT}1</studyInstanceUID>
    <bodyPartExamined>KNEE</bodyPartExamined>
  </studyInformation>
  <measurementInformation>
    <measurementID>{MARK}_45211_1</measurementID>
    <seriesDate>{STUDY_DATE}</seriesDate>
    <seriesTime>10:15:00</seriesTime>
    <patientPosition>FFS</patientPosition>
    <initialSeriesNumber>3</initialSeriesNumber>
    <protocolName>CORPD_FBK {MARK}^JANE</protocolName>
    <seriesDescription>Coronal PD {ACCESSION}</seriesDescription>
    <measurementDependency>
      <dependencyType>Noise</dependencyType>
      <measurementID>{MARK}_45211_0</measurementID>
    </measurementDependency>
    <frameOfReferenceUID>{UID_ROOT}2</frameOfReferenceUID>
    <seriesInstanceUIDRoot>{UID_ROOT}3</seriesInstanceUIDRoot>
    <referencedImageSequence>
      <referencedSOPInstanceUID>{UID_ROOT}4</referencedSOPInstanceUID>
    </referencedImageSequence>
  </measurementInformation>
  <acquisitionSystemInformation>
    <systemVendor>SIEMENS</systemVendor>
    <systemModel>Skyra</systemModel>
    <systemFieldStrength_T>2.89362</systemFieldStrength_T>
    <receiverChannels>{coils}</receiverChannels>
    <institutionName>{MARK} HOSPITAL</institutionName>
    <stationName>{MARK}STATION</stationName>
    <deviceID>{MARK}DEVICE</deviceID>
    <deviceSerialNumber>{MARK}45211</deviceSerialNumber>
  </acquisitionSystemInformation>
  <experimentalConditions>
    <H1resonanceFrequency_Hz>123251815</H1resonanceFrequency_Hz>
  </experimentalConditions>
  <encoding>
    <encodedSpace>
      <matrixSize><x>{height}</x><y>{width}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>140</y><z>4.5</z></fieldOfView_mm>
    </encodedSpace>
    <reconSpace>
      <matrixSize><x>{height // 2}</x><y>{width}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3</z></fieldOfView_mm>
    </reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1>
        <minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center>
      </kspace_encoding_step_1>
      <slice><minimum>0</minimum><maximum>{slices - 1}</maximum><center>0</center></slice>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
  <sequenceParameters><TR>2750</TR><TE>27</TE></sequenceParameters>
  <userParameters>
    <userParameterLong><name>EmbeddedRefLinesE1</name><value>4</value></userParameterLong>
    <userParameterString><name>Operator</name><value>{MARK}OPERATOR</value></userParameterString>
  </userParameters>
</ismrmrdHeader>
"""


def random_kspace(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def write_fastmri(
    target: str | Path | io.BytesIO,
    shape: tuple[int, ...] = (3, 4, 16, 12),
    mask: np.ndarray | None = None,
    header: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Write a fastMRI-style file (with marked header and attributes); return its k-space."""
    kspace = random_kspace(shape, seed)
    with h5py.File(target, "w") as h5:
        data = h5.create_dataset("kspace", data=kspace, chunks=True, compression="gzip")
        data.attrs["operator"] = f"{MARK}DATASETATTR"
        if mask is not None:
            h5.create_dataset("mask", data=mask)
        rss = np.sqrt((np.abs(kspace) ** 2).sum(axis=1)).astype(np.float32)
        h5.create_dataset("reconstruction_rss", data=rss)
        h5.create_dataset(
            "ismrmrd_header",
            data=np.bytes_(
                header or ismrmrd_header(shape[-2:], shape[0], shape[1] if len(shape) == 4 else 1)
            ),
        )
        h5.create_dataset("notes", data=np.bytes_(f"{MARK}NOTES"))
        h5.attrs["patient_id"] = f"{MARK}ID123"
        h5.attrs["acquisition"] = "CORPD_FBK"
        h5.attrs["max"] = float(rss.max())
        h5.attrs["norm"] = float(np.linalg.norm(rss))
        h5.attrs["scanned_by"] = f"{MARK}ROOTATTR"
    return kspace


def write_ismrmrd(
    path: str | Path,
    slices: int = 2,
    coils: int = 3,
    samples: int = 16,
    width: int = 12,
    lines: list[int] | None = None,
    seed: int = 1,
    center: int | None = None,
    maximum: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Write an ISMRMRD file with the ``ismrmrd`` package: a noise readout, then ``lines``
    of every slice, line 0 of slice 0 twice (an average). Returns the expected fastMRI
    k-space (S, C, H, W) and mask (W,): line k at column k + width // 2 - center.

    ``width`` is the encoded matrix y; ``center``/``maximum`` the encoding limits of the
    phase-encode lines (partial Fourier when maximum + 1 < width)."""
    import ismrmrd

    center = width // 2 if center is None else center
    maximum = width - 1 if maximum is None else maximum
    offset = width // 2 - center
    lines = list(range(maximum + 1)) if lines is None else lines
    rng = np.random.default_rng(seed)
    expected = np.zeros((slices, coils, samples, width), np.complex64)
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header(ismrmrd_header((samples, width), slices, coils, center, maximum))
    noise = ismrmrd.Acquisition.from_array(random_kspace((coils, samples), seed + 1) * 100)
    noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    dataset.append_acquisition(noise)
    for slc in range(slices):
        for line in lines:
            repeats = 2 if (slc, line) == (0, lines[0]) else 1
            readouts = []
            for _ in range(repeats):
                shape = (coils, samples)
                readout = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(
                    np.complex64
                )
                acq = ismrmrd.Acquisition.from_array(readout)
                acq.idx.kspace_encode_step_1 = line
                acq.idx.slice = slc
                acq.idx.average = len(readouts)
                dataset.append_acquisition(acq)
                readouts.append(readout)
            expected[slc, :, :, line + offset] = np.mean(readouts, axis=0)
    dataset.close()
    mask = np.zeros(width, np.float32)
    mask[np.asarray(lines) + offset] = 1
    return expected, mask
