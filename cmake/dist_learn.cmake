# The data-parallel learner's tests (issue 13), registered only when kiln is built with MPI:
# dist_learn (tests/mpi/dist_learn.c: 2 ranks against one process, resume) and dist_cli
# (tests/mpi/dist_cli.sh: `mpiexec -np 2 kiln vision fit`), both under
# `mpiexec --allow-run-as-root --oversubscribe -np 2`. Not tests/test_*.c: those run alone.
if(KILN_MPI AND TARGET kiln_testutil)
  if(NOT MPIEXEC_EXECUTABLE)
    find_program(MPIEXEC_EXECUTABLE NAMES mpiexec mpirun)
  endif()
  add_executable(dist_learn ${CMAKE_SOURCE_DIR}/tests/mpi/dist_learn.c)
  target_link_libraries(dist_learn PRIVATE kiln_testutil)
  add_test(NAME dist_learn COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe -np 2
                                   $<TARGET_FILE:dist_learn>)
  add_test(NAME dist_cli COMMAND sh ${CMAKE_SOURCE_DIR}/tests/mpi/dist_cli.sh ${MPIEXEC_EXECUTABLE}
                                 $<TARGET_FILE:kiln_cli> $<TARGET_FILE:dist_learn>)
  set_tests_properties(dist_learn dist_cli PROPERTIES TIMEOUT 300 LABELS "unit;mpi"
                       ENVIRONMENT "OMP_NUM_THREADS=1")
  set_tests_properties(dist_cli PROPERTIES LABELS "e2e;mpi")
endif()
