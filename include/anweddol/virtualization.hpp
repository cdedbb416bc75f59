//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_VIRTUALIZATION_HPP
#define ANWEDDOL_VIRTUALIZATION_HPP

/// Brings in every public part of anweddol.

#include <anweddol/error.hpp>
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/version.hpp>

#endif
