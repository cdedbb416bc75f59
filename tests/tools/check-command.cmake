# Runs a program and checks how it ends, for the tests of a tool's command
# line:
#   cmake -DEXPECTED_STATUS=N -DEXPECTED_OUTPUT=REGEX [-DFORBIDDEN_OUTPUT=REGEX]
#         -P check-command.cmake -- PROGRAM [ARGUMENT...]
# Passes when PROGRAM exits with N and its standard error and output, taken
# together, match REGEX and not FORBIDDEN_OUTPUT. (CTest's own
# PASS_REGULAR_EXPRESSION ignores the exit status.)
cmake_minimum_required(VERSION 3.20)

set(command)
set(after_separator FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(after_separator)
    list(APPEND command "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_separator TRUE)
  endif()
endforeach()
if(NOT command OR NOT DEFINED EXPECTED_STATUS OR NOT DEFINED EXPECTED_OUTPUT)
  message(FATAL_ERROR "usage: cmake -DEXPECTED_STATUS=N -DEXPECTED_OUTPUT=REGEX "
                      "[-DFORBIDDEN_OUTPUT=REGEX] -P check-command.cmake -- PROGRAM [ARGUMENT...]")
endif()

execute_process(COMMAND ${command}
  RESULT_VARIABLE status OUTPUT_VARIABLE output ERROR_VARIABLE output TIMEOUT 60)
set(failures)
if(NOT status STREQUAL EXPECTED_STATUS)
  list(APPEND failures "exit status ${status}, not ${EXPECTED_STATUS}")
endif()
if(NOT output MATCHES "${EXPECTED_OUTPUT}")
  list(APPEND failures "no match for: ${EXPECTED_OUTPUT}")
endif()
if(DEFINED FORBIDDEN_OUTPUT AND output MATCHES "${FORBIDDEN_OUTPUT}")
  list(APPEND failures "a match for what must not be there: ${FORBIDDEN_OUTPUT}")
endif()
if(failures)
  list(JOIN failures "\n  " why)
  list(JOIN command " " shown)
  message(FATAL_ERROR "${shown}\n  ${why}\nits output:\n${output}")
endif()
