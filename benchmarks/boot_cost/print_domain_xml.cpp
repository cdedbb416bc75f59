// Prints the domain XML that anweddol gives a container, so that
// boot_cost.py measures the library's own definition and its variants.
//
//   print_domain_xml NAME TYPE MEMORY_MIB ISO BRIDGE MAC
#include <anweddol/detail/libvirt/domain_xml.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
    if (argc != 7) {
        std::fprintf(stderr, "usage: print_domain_xml UUID TYPE MEMORY_MIB ISO BRIDGE MAC\n");
        return 2;
    }
    anweddol::detail::domain_definition d;
    d.uuid = argv[1];
    d.type = argv[2];
    d.memory_mib = static_cast<unsigned>(std::stoul(argv[3]));
    d.vcpus = 1;
    d.iso_path = argv[4];
    d.bridge = argv[5];
    d.mac = argv[6];
    d.owner = "boot_cost";
    std::fputs(anweddol::detail::domain_xml(d).c_str(), stdout);
    return 0;
}
