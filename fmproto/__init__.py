"""fmproto: prototype classifiers for images, as pure numpy functions driven by a DVC pipeline."""
