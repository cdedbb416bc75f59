// The library's function bodies, compiled once for the project's own tests,
// examples, tools and benchmarks (anweddol::compiled).
#include <anweddol/src.hpp>
