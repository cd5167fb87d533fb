"""Deep-learning reconstruction: fastMRI-compatible networks and weight loading."""
