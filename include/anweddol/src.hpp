//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_SRC_HPP
#define ANWEDDOL_SRC_HPP

// The separate-compilation mode: include this file in exactly one .cpp of a
// program whose every translation unit defines ANWEDDOL_SEPARATE_COMPILATION
// (the CMake target anweddol::compiled does both). The function bodies of
// impl/ are then compiled there, once, instead of in every file that
// includes the library.

#ifndef ANWEDDOL_SEPARATE_COMPILATION
#error                                                                                             \
    "anweddol/src.hpp is for the separate-compilation mode: define ANWEDDOL_SEPARATE_COMPILATION in every translation unit"
#endif

#include <anweddol/virtualization.hpp>

#include <anweddol/impl/boot_admission.ipp>
#include <anweddol/impl/container_capacity.ipp>
#include <anweddol/impl/container_instance.ipp>
#include <anweddol/impl/container_pool.ipp>
#include <anweddol/impl/container_sweep.ipp>
#include <anweddol/impl/endpoint_shell_instance.ipp>
#include <anweddol/impl/error.ipp>
#include <anweddol/impl/hypervisor_connection.ipp>
#include <anweddol/impl/hypervisor_pool.ipp>
#include <anweddol/impl/lease_file.ipp>
#include <anweddol/impl/libvirt_event_hooks.ipp>
#include <anweddol/impl/libvirt_event_loop.ipp>
#include <anweddol/impl/provisioning.ipp>
#include <anweddol/impl/runtime.ipp>
#include <anweddol/impl/snapshot_slot.ipp>
#include <anweddol/impl/ssh_jump.ipp>
#include <anweddol/impl/virtualization_interface.ipp>

#endif
