"""The pipeline's plumbing: params checked as DVC reads them, inputs checked, outputs all or nothing, one-line errors."""
