"""The reference's way: libvirt-python (Debian's python3-libvirt), the same
create+destroy pairs in a sequential loop. Prints the microseconds per pair.
Run it with /usr/bin/python3: that is where Debian installs the module."""
import sys
import time

import libvirt

uri = sys.argv[1] if len(sys.argv) > 1 else "test:///default"
pairs = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
connection = libvirt.open(uri)
start = time.monotonic()
for i in range(pairs):
    domain = connection.createXML(
        f"<domain type='test'><name>bench-py-{i}</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>", 0)
    domain.destroy()
elapsed = time.monotonic() - start
connection.close()
print(f"{elapsed / pairs * 1e6:.3f}")
