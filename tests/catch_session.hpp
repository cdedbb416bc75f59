// Runs the Catch tests of the program: Catch's implementation is compiled
// once (catch_session.cpp) for every test program.
#ifndef ANWEDDOL_TESTS_CATCH_SESSION_HPP
#define ANWEDDOL_TESTS_CATCH_SESSION_HPP

namespace anweddol::test {

int run_catch_session(int argc, char** argv);

/// For tests that need a test bed: runs them when `in_bed` says the program
/// runs inside it. Elsewhere they report themselves skipped (exit 77,
/// CTest's SKIP_RETURN_CODE), printing `skipped`, except with CI=true, where
/// a missing bed is a failure printing `missing` (CI must never skip them
/// silently). Listing the tests (catch_discover_tests, at build time) needs
/// no bed.
int run_catch_session_in_bed(int argc, char** argv, bool in_bed, const char* skipped,
                             const char* missing);

} // namespace anweddol::test

#endif
