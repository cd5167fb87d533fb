"""File formats: fastMRI HDF5, ISMRMRD raw data and headers, DICOM series, NIfTI.

Readers validate their input and raise :class:`~recon_engine.registry.ReconError` with a
message naming the file and problem (never a raw h5py/pydicom traceback).
"""

from recon_engine.io.dicom import DicomSeries, read_dicom_series, write_dicom_series
from recon_engine.io.fastmri import (
    FastMRIData,
    mask_to_tensor,
    read_fastmri,
    read_maps,
    read_reconstruction,
    write_fastmri,
    write_reconstruction,
)
from recon_engine.io.ismrmrd_header import HeaderInfo, make_ismrmrd_header, parse_ismrmrd_header
from recon_engine.io.ismrmrd_raw import IsmrmrdData, read_ismrmrd, write_ismrmrd
from recon_engine.io.nifti import read_nifti

__all__ = [
    "DicomSeries",
    "FastMRIData",
    "HeaderInfo",
    "IsmrmrdData",
    "make_ismrmrd_header",
    "mask_to_tensor",
    "parse_ismrmrd_header",
    "read_dicom_series",
    "read_fastmri",
    "read_ismrmrd",
    "read_maps",
    "read_nifti",
    "read_reconstruction",
    "write_dicom_series",
    "write_fastmri",
    "write_ismrmrd",
    "write_reconstruction",
]
