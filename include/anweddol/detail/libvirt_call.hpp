//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_LIBVIRT_CALL_HPP
#define ANWEDDOL_DETAIL_LIBVIRT_CALL_HPP

#include <anweddol/error.hpp>

#include <boost/system/system_error.hpp>

#include <libvirt/virterror.h>

#include <string>
#include <string_view>

namespace anweddol::detail {

/// Throws libvirt's last error on this thread as a system_error in
/// libvirt_category(), with libvirt's message after `what`. libvirt keeps the
/// error per thread: call this on the worker, right after the failing call.
[[noreturn]] inline void throw_last_libvirt_error(std::string_view what) {
    const virError* error = virGetLastError();
    const int code = error ? error->code : VIR_ERR_INTERNAL_ERROR;
    std::string message(what);
    message += ": ";
    message += error && error->message ? error->message : "libvirt reported no error message";
    virResetLastError();
    throw boost::system::system_error(boost::system::error_code(code, libvirt_category()), message);
}

} // namespace anweddol::detail

#endif
