//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_SECRET_HPP
#define ANWEDDOL_SECRET_HPP

/// anweddol::secret, a string of sensitive bytes that wipes itself and never
/// prints, and anweddol::wipe, which wipes a std::string or a byte range.
///
/// Some of anweddol's results are plain std::string for compatibility
/// (provisioned_container::password, the credentials that
/// endpoint_shell_instance returns): those copies are the caller's to wipe,
/// with anweddol::wipe, or to take into a secret at once:
///
/// @code
/// anweddol::provisioned_container c = co_await anweddol::provision(container, options);
/// anweddol::secret password(std::move(c.password)); // c.password is wiped
/// send_to_client(c.username, password.reveal());
/// // password's bytes are overwritten when it goes out of scope
/// @endcode

#include <anweddol/detail/secret.hpp>

// wipe() and secret are defined in detail/secret.hpp, where the detail code
// that holds and wipes credentials (the SSH logins, the generated
// passwords) can include it.

#endif
