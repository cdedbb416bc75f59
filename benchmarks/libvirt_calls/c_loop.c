/* The peer to beat: the same create+destroy pairs as a plain sequential
 * loop on libvirt's C API. Prints the microseconds per pair. */
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    const char *uri = argc > 1 ? argv[1] : "test:///default";
    const long pairs = argc > 2 ? atol(argv[2]) : 10000;
    virConnectPtr connection = virConnectOpen(uri);
    if (!connection) {
        fprintf(stderr, "c loop: cannot connect to %s: %s\n", uri, virGetLastErrorMessage());
        return 1;
    }
    char xml[256];
    const double start = now_seconds();
    for (long i = 0; i < pairs; ++i) {
        snprintf(xml, sizeof xml,
                 "<domain type='test'><name>bench-c-%ld</name><memory>65536</memory>"
                 "<os><type>hvm</type></os></domain>",
                 i);
        virDomainPtr domain = virDomainCreateXML(connection, xml, 0);
        if (!domain || virDomainDestroy(domain) < 0) {
            fprintf(stderr, "c loop: pair %ld failed: %s\n", i, virGetLastErrorMessage());
            return 1;
        }
        virDomainFree(domain);
    }
    const double elapsed = now_seconds() - start;
    virConnectClose(connection);
    printf("%.3f\n", elapsed / (double)pairs * 1e6);
    return 0;
}
