// Runs the Catch tests of the program: Catch's implementation is compiled
// once (catch_session.cpp) for both test programs.
#ifndef ANWEDDOL_TESTS_CATCH_SESSION_HPP
#define ANWEDDOL_TESTS_CATCH_SESSION_HPP

namespace anweddol::test {
int run_catch_session(int argc, char** argv);
} // namespace anweddol::test

#endif
