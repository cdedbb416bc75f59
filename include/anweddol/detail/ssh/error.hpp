//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_ERROR_HPP
#define ANWEDDOL_DETAIL_SSH_ERROR_HPP

#include <anweddol/detail/diagnostics.hpp>

#include <libssh/libssh.h>

#include <string>

namespace anweddol::detail {

/// Throws libssh's last error on `session` in libssh_category(): `what`
/// (anweddol's account) as the client message, ssh_get_error's text as the
/// server message. libssh keeps the error per session: call this right after
/// the failing call.
[[noreturn]] inline void throw_libssh_error(ssh_session session, std::string what) {
    int code = session ? ssh_get_error_code(session) : SSH_FATAL;
    if (code == SSH_NO_ERROR)
        code = SSH_FATAL;
    const char* message = session ? ssh_get_error(session) : nullptr;
    throw error_with_diagnostics(
        boost::system::error_code(code, libssh_category()),
        diagnostics(std::move(what),
                    message && *message ? message : "libssh reported no error message"));
}

/// libssh's last message on `session`, or empty: the server's side of the
/// diagnostics of errors that anweddol names itself (a refused password).
inline std::string libssh_message(ssh_session session) {
    const char* message = session ? ssh_get_error(session) : nullptr;
    return message ? message : "";
}

} // namespace anweddol::detail

#endif
