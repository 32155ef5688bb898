# kiln: the fuzz targets in fuzz/ (docs/fuzzing.md); included at the end of CMakeLists.txt.
#   KILN_FUZZ=ON (clang only): every target is a libFuzzer binary fuzz_<name>, the library
#     and targets built with -fsanitize=fuzzer-no-link,address,undefined (set in
#     CMakeLists.txt).
#   make_seeds (either build, not built by default) writes the seeds in fuzz/corpus/.
#   otherwise, with the tests: fuzz_<name>_replay runs the same entry point over the committed
#     seeds (fuzz/corpus/<name>/) and minimised crashers (fuzz/regress/<name>/) as a ctest test.
set(KILN_FUZZ_TARGETS safetensors idx image csv checkpoint modeljson pth text table)
set(KILN_FUZZ_DIR ${CMAKE_SOURCE_DIR}/fuzz)
set(KILN_FUZZ_EXTRA_image)
set(KILN_FUZZ_EXTRA_csv ${KILN_FUZZ_DIR}/kf_images.c)
set(KILN_FUZZ_EXTRA_checkpoint ${KILN_FUZZ_DIR}/kf_learner.c)
# more inputs a replay runs: the .pth test fixtures (every crafted hostile and broken file)
set(KILN_FUZZ_REPLAY_pth ${CMAKE_SOURCE_DIR}/tests/fixtures/pth)

function(kiln_fuzz_exe exe name)
  add_executable(${exe} ${KILN_FUZZ_DIR}/fuzz_${name}.c ${KILN_FUZZ_DIR}/fuzz_common.c ${KILN_FUZZ_EXTRA_${name}} ${ARGN})
  target_include_directories(${exe} PRIVATE ${CMAKE_SOURCE_DIR}/src ${KILN_FUZZ_DIR})
  target_link_libraries(${exe} PRIVATE kiln)
endfunction()

add_executable(make_seeds ${KILN_FUZZ_DIR}/make_seeds.c ${KILN_FUZZ_DIR}/kf_images.c ${KILN_FUZZ_DIR}/kf_learner.c)
target_include_directories(make_seeds PRIVATE ${KILN_FUZZ_DIR})
target_link_libraries(make_seeds PRIVATE kiln)
set_target_properties(make_seeds PROPERTIES EXCLUDE_FROM_ALL ON)

if(KILN_FUZZ)
  foreach(t ${KILN_FUZZ_TARGETS})
    kiln_fuzz_exe(fuzz_${t} ${t})
    target_link_options(fuzz_${t} PRIVATE -fsanitize=fuzzer)
  endforeach()
elseif(KILN_TESTS)
  foreach(t ${KILN_FUZZ_TARGETS})
    kiln_fuzz_exe(fuzz_${t}_replay ${t} ${KILN_FUZZ_DIR}/replay.c)
    set(dirs ${KILN_FUZZ_DIR}/corpus/${t})
    if(EXISTS ${KILN_FUZZ_DIR}/regress/${t})
      list(APPEND dirs ${KILN_FUZZ_DIR}/regress/${t})
    endif()
    list(APPEND dirs ${KILN_FUZZ_REPLAY_${t}})
    add_test(NAME fuzz_${t}_replay COMMAND fuzz_${t}_replay ${dirs})
    set_tests_properties(fuzz_${t}_replay PROPERTIES TIMEOUT 300 LABELS fuzz)
  endforeach()
endif()
