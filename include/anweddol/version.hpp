//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_VERSION_HPP
#define ANWEDDOL_VERSION_HPP

/// anweddol's version as MAJOR * 10000 + MINOR * 100 + PATCH.
#define ANWEDDOL_VERSION 100

namespace anweddol {

/// The version this header belongs to, as "MAJOR.MINOR.PATCH".
inline constexpr const char* version_string = "0.1.0";

} // namespace anweddol

#endif
