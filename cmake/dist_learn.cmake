# The data-parallel learner's tests (issue 13), registered only when kiln is built with MPI,
# with cmake/dist.cmake's mpiexec line (KILN_MPIEXEC_FLAGS: --allow-run-as-root --oversubscribe):
#   dist_learn  tests/mpi/dist_learn.c: 2 ranks against one process (SGD, AdamW, one-cycle),
#               the ranks' weights equal, a checkpoint of the 2-rank run resumes
#   sync_bn     tests/mpi/sync_bn.c: SyncBatchNorm (kiln_model_sync_batchnorm), 2 ranks x batch B/2
#               against one process x batch B: one step by hand (NCHW and channels-last) and
#               a learner's training, per-rank BN as the negative check
#   dist_cli    tests/mpi/dist_cli.sh: `mpiexec -n 2 kiln vision fit` writes its files once,
#               resume with 2 ranks, 1 rank refused, --bs not divisible by 2 refused
#   dist_text   tests/mpi/dist_text.c: a dropout-free AWD-LSTM LM, 2 ranks x bs / 2 rows against
#               one process x bs (AdamW one-cycle), and a control that reads the wrong rows
#   dist_text_cli  tests/mpi/dist_text_cli.sh: `mpiexec -n 2 kiln text lm`, lr-find and fit on a
#               corpus it writes: files once, the interpretation of the whole valid split
# Not tests/test_*.c: those run as one process.
if(KILN_MPI AND KILN_TESTS)
  add_executable(dist_learn ${CMAKE_SOURCE_DIR}/tests/mpi/dist_learn.c)
  target_link_libraries(dist_learn PRIVATE kiln_testutil)
  set(run ${MPIEXEC_EXECUTABLE} ${KILN_MPIEXEC_FLAGS} ${MPIEXEC_NUMPROC_FLAG} 2)
  add_test(NAME dist_learn COMMAND ${run} $<TARGET_FILE:dist_learn>)
  add_executable(sync_bn ${CMAKE_SOURCE_DIR}/tests/mpi/sync_bn.c)
  target_link_libraries(sync_bn PRIVATE kiln_testutil)
  add_test(NAME sync_bn COMMAND ${run} $<TARGET_FILE:sync_bn>)
  add_test(NAME dist_cli COMMAND sh ${CMAKE_SOURCE_DIR}/tests/mpi/dist_cli.sh "${run}" $<TARGET_FILE:kiln_cli>
                                 $<TARGET_FILE:dist_learn>)
  add_executable(dist_text ${CMAKE_SOURCE_DIR}/tests/mpi/dist_text.c)
  target_link_libraries(dist_text PRIVATE kiln_testutil)
  add_test(NAME dist_text COMMAND ${run} $<TARGET_FILE:dist_text>)
  add_test(NAME dist_text_cli COMMAND sh ${CMAKE_SOURCE_DIR}/tests/mpi/dist_text_cli.sh "${run}" $<TARGET_FILE:kiln_cli>)
  set_tests_properties(dist_learn sync_bn dist_cli dist_text dist_text_cli PROPERTIES TIMEOUT 300 ENVIRONMENT "OMP_NUM_THREADS=1")
  set_tests_properties(dist_learn sync_bn dist_text PROPERTIES LABELS "mpi;unit")
  set_tests_properties(dist_cli dist_text_cli PROPERTIES LABELS "mpi;e2e")
endif()
