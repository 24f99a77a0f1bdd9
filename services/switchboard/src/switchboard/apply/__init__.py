"""The shell's outputs: the HAProxy config file, its master CLI, the certificate directory."""
