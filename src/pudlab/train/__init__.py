"""Training M_cnn: one model (trainer), K models in lockstep (ensemble), one run end to end (run)."""
