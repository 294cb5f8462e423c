"""The control socket: the server the daemon runs and the client `crmsync ctl` uses, with one
msgspec message schema (protocol.py) between them."""
