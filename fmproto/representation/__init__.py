"""Features computed from images: raw pixels, standardisation, HOG, a small network, PCA, augmented copies."""
