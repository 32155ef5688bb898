# kiln: MPI for the communicator (src/dist/, include/kiln/dist.h; issue 13), when KILN_MPI is
# on: MPI::MPI_C into libkiln (kiln.pc: Requires.private ompi-c; the CMake package finds MPI
# again for kiln::kiln_static), and the tests that need 2 ranks under mpiexec (label mpi):
#   dist_mpi          sums, buckets in flight, bcast, agree (tests/mpi/test_dist_mpi.c)
#   dist_mpi_timeout  a rank that skips a collective: the other fails after 2 s with a message
#   dist_mpi_nofree   a program that never frees the world: MPI is finalised at exit
#   dist_mpi_kill     a rank that dies or aborts in a collective: mpiexec ends non-zero within 20 s
# Open MPI as root needs --allow-run-as-root; --oversubscribe lets 2 ranks run on fewer
# cores. KILN_MPIEXEC_FLAGS holds both (and whatever else a machine needs).
if(KILN_MPI)
  kiln_dep(COMPILE MPI::MPI_C LINK MPI::MPI_C PC ompi-c)
  target_compile_definitions(kiln_obj PRIVATE KILN_HAVE_MPI=1)
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE v ERROR_QUIET TIMEOUT 10)
  string(REGEX MATCH "^[^\n]*" v "${v}")
  message(STATUS "kiln: MPI yes (MPI ${MPI_C_VERSION}, ${MPIEXEC_EXECUTABLE}: ${v})")
elseif(MPI_C_FOUND)
  message(STATUS "kiln: MPI no (KILN_MPI=OFF)")
else()
  message(STATUS "kiln: MPI no (not found: apt-get install libopenmpi-dev openmpi-bin)")
endif()

if(TARGET test_dist) # tests/test_dist.c checks kiln_comm_mpi_built() against the option
  target_compile_definitions(test_dist PRIVATE KILN_TEST_MPI_BUILT=$<BOOL:${KILN_MPI}>)
endif()
if(KILN_MPI AND KILN_TESTS)
  set(KILN_MPIEXEC_FLAGS --allow-run-as-root --oversubscribe CACHE STRING "mpiexec flags of the 2-rank tests")
  add_executable(test_dist_mpi ${CMAKE_SOURCE_DIR}/tests/mpi/test_dist_mpi.c)
  target_link_libraries(test_dist_mpi PRIVATE kiln MPI::MPI_C)
  set(run ${MPIEXEC_EXECUTABLE} ${KILN_MPIEXEC_FLAGS} ${MPIEXEC_NUMPROC_FLAG} 2)
  add_test(NAME dist_mpi COMMAND ${run} $<TARGET_FILE:test_dist_mpi>)
  add_test(NAME dist_mpi_timeout COMMAND ${run} $<TARGET_FILE:test_dist_mpi> --timeout)
  add_test(NAME dist_mpi_nofree COMMAND ${run} $<TARGET_FILE:test_dist_mpi> --nofree)
  add_test(NAME dist_mpi_kill COMMAND sh ${CMAKE_SOURCE_DIR}/tests/mpi/run_kill.sh ${run} $<TARGET_FILE:test_dist_mpi>)
  set_tests_properties(dist_mpi dist_mpi_timeout dist_mpi_nofree dist_mpi_kill PROPERTIES LABELS mpi TIMEOUT 120)
endif()
