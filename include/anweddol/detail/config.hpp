//
// anweddol: throwaway libvirt/QEMU containers administered over SSH.
//
#ifndef ANWEDDOL_DETAIL_CONFIG_HPP
#define ANWEDDOL_DETAIL_CONFIG_HPP

// Header-only by default: every function body in impl/ is inline, and each
// header includes its own. Define ANWEDDOL_SEPARATE_COMPILATION in every
// translation unit (the CMake target anweddol::compiled does) and compile
// <anweddol/src.hpp> in exactly one of them, and those bodies are compiled
// once instead: a program that includes the library in many files builds
// several times faster.
#ifdef ANWEDDOL_SEPARATE_COMPILATION
#define ANWEDDOL_DECL
#else
#define ANWEDDOL_DECL inline
#define ANWEDDOL_HEADER_ONLY 1
#endif

#endif
