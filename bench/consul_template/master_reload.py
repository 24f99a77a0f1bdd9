"""Send ``reload`` to an HAProxy master CLI socket (HAProxy 2.6 management guide, 9.4).

Fallback for consul-template's command in bench/consul_template_compare.py when ``socat`` is
not installed. Standard library only, so it runs with ``python -I -S`` (fast start).

    python -I -S master_reload.py <master socket>
"""

import socket
import sys


def main() -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        sock.connect(sys.argv[1])
        sock.sendall(b"reload\n")
        sock.shutdown(socket.SHUT_WR)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass  # the master re-executes itself and may drop the connection
    return 0


if __name__ == "__main__":
    sys.exit(main())
