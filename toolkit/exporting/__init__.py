"""`toolkit export`: validation, one variant's life, the pipeline that commits them."""
