//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_HOST_KEY_HPP
#define ANWEDDOL_DETAIL_SSH_HOST_KEY_HPP

#include <anweddol/detail/ssh/error.hpp>
#include <anweddol/detail/ssh/handle.hpp>
#include <anweddol/detail/ssh/login_params.hpp>

#include <libssh/libssh.h>

#include <string>

namespace anweddol::detail {

/// The server's host key on a session past its handshake, as
/// "SHA256:<base64>" (unpadded, as OpenSSH and libssh print it).
inline std::string host_key_fingerprint(ssh_session session, const std::string& where) {
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
    std::string fingerprint = text ? text : "";
    ssh_string_free_char(text);
    return fingerprint;
}

/// Checks the server's host key as `params` say; returns its fingerprint.
/// Errors: errc::host_key_mismatch, libssh's.
inline std::string check_host_key(ssh_session session, const ssh_login_params& params) {
    const std::string where = endpoint_name(params);
    std::string fingerprint = host_key_fingerprint(session, where);
    switch (params.host_keys) {
    case host_key_check::accept_new:
        return fingerprint;
    case host_key_check::fingerprint: {
        std::string expected = params.fingerprint;
        if (expected.rfind("SHA256:", 0) != 0)
            expected.insert(0, "SHA256:");
        while (!expected.empty() && expected.back() == '=')
            expected.pop_back(); // OpenSSH and libssh print it unpadded
        if (expected != fingerprint)
            throw_error(errc::host_key_mismatch, where + " presented the host key " + fingerprint +
                                                     ", not the pinned " + expected);
        return fingerprint;
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
