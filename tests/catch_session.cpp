// Catch's own implementation, compiled once for both test programs, whose
// main()s call run_catch_session.
#define CATCH_CONFIG_RUNNER
#include "catch_session.hpp"

#include <catch2/catch.hpp>

int anweddol::test::run_catch_session(int argc, char** argv) {
    return Catch::Session().run(argc, argv);
}
