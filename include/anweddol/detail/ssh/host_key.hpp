//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_HOST_KEY_HPP
#define ANWEDDOL_DETAIL_SSH_HOST_KEY_HPP

#include <anweddol/detail/ssh/error.hpp>
#include <anweddol/detail/ssh/handle.hpp>
#include <anweddol/detail/ssh/login_params.hpp>

#include <libssh/libssh.h>

#include <algorithm>
#include <string>
#include <vector>

namespace anweddol::detail {

/// The server's host key on a session past its handshake: its SHA-256
/// fingerprint, "SHA256:<base64>" (unpadded, as OpenSSH and libssh print
/// it), and its type ("ssh-ed25519"), for messages.
struct presented_host_key {
    std::string fingerprint;
    std::string type;
};

inline presented_host_key server_host_key(ssh_session session, const std::string& where) {
    ssh_key raw = nullptr;
    if (ssh_get_server_publickey(session, &raw) != SSH_OK)
        throw_libssh_error(session, "cannot read the host key of " + where);
    ssh_key_handle key(raw);
    unsigned char* hash = nullptr;
    std::size_t hash_length = 0;
    if (ssh_get_publickey_hash(key.get(), SSH_PUBLICKEY_HASH_SHA256, &hash, &hash_length) != 0)
        throw_libssh_error(session, "cannot hash the host key of " + where);
    char* text = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hash_length);
    ssh_clean_pubkey_hash(&hash);
    presented_host_key presented;
    presented.fingerprint = text ? text : "";
    ssh_string_free_char(text);
    const char* type = ssh_key_type_to_char(ssh_key_type(key.get()));
    presented.type = type ? type : "unknown";
    return presented;
}

/// "SHA256:a, SHA256:b", for messages.
inline std::string fingerprint_list(const std::vector<std::string>& fingerprints) {
    std::string list;
    for (const auto& f : fingerprints)
        list += (list.empty() ? "" : ", ") + f;
    return list;
}

/// Checks the server's host key as `params` say; returns its fingerprint.
/// Errors: errc::host_key_mismatch, libssh's.
inline std::string check_host_key(ssh_session session, const ssh_login_params& params) {
    const std::string where = endpoint_name(params);
    const presented_host_key presented = server_host_key(session, where);
    const std::string& fingerprint = presented.fingerprint;
    switch (params.host_keys) {
    case host_key_check::accept_new:
        return fingerprint;
    case host_key_check::fingerprint: {
        const auto& expected = params.fingerprints;
        if (std::find(expected.begin(), expected.end(), fingerprint) != expected.end())
            return fingerprint;
        throw error_with_diagnostics(
            errc::host_key_mismatch,
            diagnostics(where + " presented the host key " + fingerprint + " (" + presented.type +
                        "), " +
                        (expected.size() == 1 ? "not the pinned " + expected.front()
                                              : "none of the " + std::to_string(expected.size()) +
                                                    " pinned: " + fingerprint_list(expected)) +
                        (params.private_key_file.empty() ? "; the password was not sent"
                                                         : "; the key was not offered")));
    }
    case host_key_check::known_hosts:
        switch (ssh_session_is_known_server(session)) {
        case SSH_KNOWN_HOSTS_OK:
            return fingerprint;
        case SSH_KNOWN_HOSTS_CHANGED:
        case SSH_KNOWN_HOSTS_OTHER:
            throw_error(errc::host_key_mismatch, where + " presented the host key " + fingerprint +
                                                     ", which differs from its entry in " +
                                                     params.known_hosts_file);
        case SSH_KNOWN_HOSTS_NOT_FOUND:
        case SSH_KNOWN_HOSTS_UNKNOWN: // first contact: remember it, as accept-new does
            if (ssh_session_update_known_hosts(session) != SSH_OK)
                throw_libssh_error(session, "cannot add the host key of " + where + " to " +
                                                params.known_hosts_file);
            return fingerprint;
        case SSH_KNOWN_HOSTS_ERROR:
            break;
        }
        throw_libssh_error(session, "cannot check the host key of " + where + " against " +
                                        params.known_hosts_file);
    }
    return fingerprint;
}

} // namespace anweddol::detail

#endif
