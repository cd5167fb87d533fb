"""ReconTrial reconstruction engine: a pure Python library (no Django).

Conventions, stated once and used everywhere:

* k-space arrays follow fastMRI: ``(slices, coils, readout, phase_encode)``, i.e.
  ``(S, C, H, W)``, complex64. Undersampling is along the last axis (phase encode);
  2D-accelerated (3D) data uses ``(S, C, H, W)`` with both H and W undersampled
  where the mask says so.
* The coil axis is axis 1 for multi-slice data and axis 0 for a single slice.
* Images are ``(S, H, W)`` (coil-combined) or ``(S, C, H, W)`` (coil images).
* FFTs are centred and orthonormal: ``ifftc(fftc(x)) == x`` and Parseval holds
  (see :mod:`recon_engine.fft`).
* Sampling masks are real float32 0/1 tensors broadcastable against k-space,
  normally ``(1, 1, 1, W)`` for 1D and ``(1, 1, H, W)`` for 2D sampling.
"""

__version__ = "0.1.0"
