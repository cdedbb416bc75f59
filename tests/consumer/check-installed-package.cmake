# Installs anweddol into a scratch prefix, then configures, builds and runs
# tests/consumer against it: find_package(anweddol CONFIG) must be all a
# separate project needs.
#   cmake -DSOURCE_DIR=... -DWORK_DIR=... -DGENERATOR=... -P check-installed-package.cmake
file(REMOVE_RECURSE ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "failed (${result}): ${ARGV}")
  endif()
endfunction()

# The library's package alone: anweddol-server is a program to build before
# it can be installed, and no part of what a consumer compiles against.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/library -G ${GENERATOR}
    -DANWEDDOL_BUILD_TESTS=OFF -DANWEDDOL_BUILD_EXAMPLES=OFF -DANWEDDOL_BUILD_BENCHMARKS=OFF
    -DANWEDDOL_BUILD_SERVER=OFF -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/library)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/consumer -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run(${WORK_DIR}/consumer/consumer)
