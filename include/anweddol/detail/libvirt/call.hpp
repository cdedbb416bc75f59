//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_CALL_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_CALL_HPP

#include <anweddol/detail/diagnostics.hpp>

#include <libvirt/virterror.h>

#include <string>

namespace anweddol::detail {

/// Throws libvirt's last error on this thread as error_with_diagnostics in
/// libvirt_category(): `what` (what anweddol was doing) as the client
/// message, libvirt's own message as the server message. libvirt keeps the
/// error per thread: call this on the worker, right after the failing call.
[[noreturn]] inline void throw_last_libvirt_error(std::string what) {
    const virError* error = virGetLastError();
    const int code = error ? error->code : VIR_ERR_INTERNAL_ERROR;
    std::string message =
        error && error->message ? error->message : "libvirt reported no error message";
    virResetLastError();
    throw error_with_diagnostics(boost::system::error_code(code, libvirt_category()),
                                 diagnostics(std::move(what), std::move(message)));
}

} // namespace anweddol::detail

#endif
