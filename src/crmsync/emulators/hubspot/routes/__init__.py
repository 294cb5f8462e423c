"""HTTP handlers, one module per API family; `app.py` mounts them."""
