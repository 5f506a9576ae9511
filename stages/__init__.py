"""One thin script a DVC stage: parse params, load inputs, call fmproto, write outputs and metrics."""
