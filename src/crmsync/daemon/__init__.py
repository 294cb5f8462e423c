"""The daemon: the root nursery that opens the store and runs the control server, the webhook
server and one supervisor per connection."""
