//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_ERROR_HPP
#define ANWEDDOL_DETAIL_SSH_ERROR_HPP

#include <anweddol/error.hpp>

#include <boost/system/system_error.hpp>

#include <libssh/libssh.h>

#include <string>
#include <string_view>

namespace anweddol::detail {

/// Throws libssh's last error on `session` in libssh_category(), with
/// ssh_get_error's message after `what`. libssh keeps the error per session:
/// call this right after the failing call.
[[noreturn]] inline void throw_libssh_error(ssh_session session, std::string_view what) {
    int code = session ? ssh_get_error_code(session) : SSH_FATAL;
    if (code == SSH_NO_ERROR)
        code = SSH_FATAL;
    std::string message(what);
    const char* detail = session ? ssh_get_error(session) : nullptr;
    message += ": ";
    message += detail && *detail ? detail : "libssh reported no error message";
    throw boost::system::system_error(boost::system::error_code(code, libssh_category()), message);
}

} // namespace anweddol::detail

#endif
