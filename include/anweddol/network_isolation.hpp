//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_NETWORK_ISOLATION_HPP
#define ANWEDDOL_NETWORK_ISOLATION_HPP

// How a container's network is cut off from the other containers on its
// bridge, asked for in container_instance::options and reported for each
// start. Containers are handed to strangers: by default no guest can reach
// another, nor pretend to be one.

#include <anweddol/detail/libvirt/network_isolation.hpp>

// isolation_requirement, network_isolation_options and network_isolation
// are defined in detail/libvirt/network_isolation.hpp, where the detail code
// that applies them can include it.

#endif
