"""The fidelity lab: what a reconstruction does to small findings, before readers see it.

- :mod:`.lesions`: synthetic MSK-like findings with a truth mask, inserted into the image
  before coil weighting (so every coil's k-space agrees), as lesion-present/absent twins.
- :mod:`.observers`: model observers (non-prewhitening matched filter, channelized
  Hotelling) giving d' and AUC over noise realisations.
"""
