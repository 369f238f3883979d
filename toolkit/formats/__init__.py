"""Facts about model files, shared by exporters and runners and importing neither."""
