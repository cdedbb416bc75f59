//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_VIRTUALIZATION_HPP
#define ANWEDDOL_VIRTUALIZATION_HPP

/// Brings in every public part of anweddol.

#include <anweddol/boot_admission.hpp>
#include <anweddol/container_capacity.hpp>
#include <anweddol/container_instance.hpp>
#include <anweddol/container_options.hpp>
#include <anweddol/container_pool.hpp>
#include <anweddol/container_sweep.hpp>
#include <anweddol/endpoint_shell_instance.hpp>
#include <anweddol/endpoint_shell_options.hpp>
#include <anweddol/error.hpp>
#include <anweddol/hypervisor_connection.hpp>
#include <anweddol/hypervisor_pool.hpp>
#include <anweddol/provisioning.hpp>
#include <anweddol/runtime.hpp>
#include <anweddol/secret.hpp>
#include <anweddol/snapshot_slot.hpp>
#include <anweddol/ssh_jump.hpp>
#include <anweddol/version.hpp>
#include <anweddol/virtualization_interface.hpp>

#endif
