"""C{voipgw-admin}: provisioning and operations from the shell."""
