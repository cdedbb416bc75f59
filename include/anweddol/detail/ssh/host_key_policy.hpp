//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_HOST_KEY_POLICY_HPP
#define ANWEDDOL_DETAIL_SSH_HOST_KEY_POLICY_HPP

// anweddol::host_key_policy, a public name: defined here, below the public
// headers, for the detail code that applies it (host_key_settings.hpp);
// <anweddol/endpoint_shell_options.hpp> brings it in.

namespace anweddol {

/// How open_shell() checks the container's SSH host key.
enum class host_key_policy {
    /// Accept whatever key the server presents, as the reference does
    /// (paramiko's AutoAddPolicy): containers make new keys at every boot.
    accept_new,
    /// Check against `known_hosts_file` (OpenSSH format, "[ip]:port" for a
    /// port other than 22); a host not in it is added, a changed key fails
    /// with errc::host_key_mismatch.
    known_hosts,
    /// The key's SHA-256 fingerprint must be `host_key_fingerprint`
    /// ("SHA256:<base64>", as ssh-keygen -l prints it), or open_shell() fails
    /// with errc::host_key_mismatch.
    pinned_fingerprint,
    /// The key's SHA-256 fingerprint must be one of `host_key_fingerprints`
    /// (a guest has several keys, ed25519 and ECDSA, and the server picks
    /// which it presents), or open_shell() fails with
    /// errc::host_key_mismatch, naming the key seen and those expected.
    /// Checked after the key exchange and before the password is sent, so
    /// an impostor never receives it. Learn the set out of band: a guest
    /// prints it on its serial console at boot, as cloud-init does.
    pinned_fingerprints,
};

} // namespace anweddol

#endif
