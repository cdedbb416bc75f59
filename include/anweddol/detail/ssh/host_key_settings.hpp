//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_SSH_HOST_KEY_SETTINGS_HPP
#define ANWEDDOL_DETAIL_SSH_HOST_KEY_SETTINGS_HPP

#include <anweddol/detail/diagnostics.hpp>
#include <anweddol/detail/ssh/fingerprint_text.hpp>
#include <anweddol/detail/ssh/host_key_policy.hpp>
#include <anweddol/detail/ssh/login_params.hpp>

#include <string>
#include <utility>
#include <vector>

namespace anweddol::detail {

/// Turns a public host_key_policy and its settings into what a login checks,
/// for an endpoint shell and a jump host alike: the same policy must mean
/// the same check. Errors: errc::invalid_argument when the policy lacks its
/// file or fingerprints, or a fingerprint of a set is malformed; nothing is
/// sent to any server then.
inline void apply_host_key_policy(ssh_login_params& params, host_key_policy policy,
                                  const std::string& known_hosts_file,
                                  const std::string& fingerprint,
                                  const std::vector<std::string>& fingerprints) {
    if (policy == host_key_policy::known_hosts && known_hosts_file.empty())
        throw_error(errc::invalid_argument,
                    "host_key_policy::known_hosts needs a known_hosts_file");
    if (policy == host_key_policy::pinned_fingerprint && fingerprint.empty())
        throw_error(errc::invalid_argument,
                    "host_key_policy::pinned_fingerprint needs a fingerprint");
    std::vector<std::string> pinned;
    if (policy == host_key_policy::pinned_fingerprint) {
        // As it always was: a malformed pin is not refused, it never matches.
        std::string expected = fingerprint;
        if (expected.rfind("SHA256:", 0) != 0)
            expected.insert(0, "SHA256:");
        while (!expected.empty() && expected.back() == '=')
            expected.pop_back(); // OpenSSH and libssh print it unpadded
        pinned.push_back(std::move(expected));
    } else if (policy == host_key_policy::pinned_fingerprints) {
        if (fingerprints.empty())
            throw_error(errc::invalid_argument,
                        "host_key_policy::pinned_fingerprints needs at least one "
                        "fingerprint in host_key_fingerprints (an empty set would "
                        "refuse every server)");
        for (const auto& each : fingerprints) {
            auto normalized = normalize_sha256_fingerprint(each);
            if (!normalized)
                throw_error(errc::invalid_argument,
                            "host_key_fingerprints holds '" + each +
                                "', which is no SHA-256 fingerprint: expected "
                                "\"SHA256:\" and 43 base64 characters, as ssh-keygen "
                                "-l prints it");
            pinned.push_back(std::move(*normalized));
        }
    }
    switch (policy) {
    case host_key_policy::accept_new:
        params.host_keys = host_key_check::accept_new;
        break;
    case host_key_policy::known_hosts:
        params.host_keys = host_key_check::known_hosts;
        break;
    case host_key_policy::pinned_fingerprint:
    case host_key_policy::pinned_fingerprints:
        params.host_keys = host_key_check::fingerprint;
        break;
    default: // not a policy: refuse rather than accept whatever key
        throw_error(errc::invalid_argument, "unknown host_key_policy value");
    }
    params.known_hosts_file = known_hosts_file;
    params.fingerprints = std::move(pinned);
}

} // namespace anweddol::detail

#endif
