//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_HANDLE_HPP
#define ANWEDDOL_DETAIL_SSH_HANDLE_HPP

#include <libssh/libssh.h>

#include <memory>

namespace anweddol::detail {

// Owners of libssh objects. A channel must be freed before its session; keep
// the session handle declared before the channels that use it.

struct session_deleter {
    void operator()(ssh_session session) const noexcept { ssh_free(session); }
};
struct channel_deleter {
    void operator()(ssh_channel channel) const noexcept { ssh_channel_free(channel); }
};
struct ssh_key_deleter {
    void operator()(ssh_key key) const noexcept { ssh_key_free(key); }
};

using session_handle = std::unique_ptr<ssh_session_struct, session_deleter>;
using channel_handle = std::unique_ptr<ssh_channel_struct, channel_deleter>;
using ssh_key_handle = std::unique_ptr<ssh_key_struct, ssh_key_deleter>;

} // namespace anweddol::detail

#endif
