# kiln: what `kiln vision` needs beyond the library; included at the end of CMakeLists.txt.
# The CLI draws through the library only (the confusion-matrix heat map is kiln_plot_heatmap
# in src/report/heatmap.c), so it needs no PLplot of its own. The end-to-end test runs the
# kiln binary it was built with (KILN_CLI_PATH) and writes PNG/IDX fixtures with libspng.
if(KILN_TESTS AND TARGET test_vision_cli)
  target_compile_definitions(test_vision_cli PRIVATE KILN_CLI_PATH="$<TARGET_FILE:kiln_cli>")
  add_dependencies(test_vision_cli kiln_cli)
  target_link_libraries(test_vision_cli PRIVATE PkgConfig::KILN_SPNG)
endif()
if(KILN_TESTS AND TARGET test_kill_resume)
  target_compile_definitions(test_kill_resume PRIVATE KILN_CLI_PATH="$<TARGET_FILE:kiln_cli>")
  add_dependencies(test_kill_resume kiln_cli)
endif()
if(KILN_TESTS AND TARGET test_disk_full_cli)
  target_compile_definitions(test_disk_full_cli PRIVATE KILN_CLI_PATH="$<TARGET_FILE:kiln_cli>")
  add_dependencies(test_disk_full_cli kiln_cli)
endif()
if(KILN_TESTS AND TARGET test_apps)
  target_compile_definitions(test_apps PRIVATE KILN_CLI_PATH="$<TARGET_FILE:kiln_cli>"
                                               KILN_TEST_DATA="${CMAKE_SOURCE_DIR}/tests/data")
  add_dependencies(test_apps kiln_cli)
endif()
if(KILN_TESTS AND TARGET test_text_cli)
  target_compile_definitions(test_text_cli PRIVATE KILN_CLI_PATH="$<TARGET_FILE:kiln_cli>")
  add_dependencies(test_text_cli kiln_cli)
endif()
