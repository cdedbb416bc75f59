//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
// Forwarding header: the SSH internals moved to detail/ssh/. Kept only for
// tools/blocking_container.hpp; include <anweddol/detail/ssh/handle.hpp>.
#ifndef ANWEDDOL_DETAIL_SSH_HANDLE_FORWARD_HPP
#define ANWEDDOL_DETAIL_SSH_HANDLE_FORWARD_HPP

#include <anweddol/detail/ssh/handle.hpp>

#endif
