//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_ERROR_HPP
#define ANWEDDOL_ERROR_HPP

/// Errors: `anweddol::errc` and the categories of anweddol, libvirt and
/// libssh codes (see detail/errc.hpp), and the diagnostics that travel beside
/// an `error_code` (see detail/diagnostics.hpp). Defined in detail/ so that
/// the library's internals can use them without including a public header.
#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/errc.hpp>

#endif
