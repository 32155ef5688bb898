# kiln: what `kiln vision` needs beyond the library; included at the end of CMakeLists.txt.
# The confusion-matrix heat map (tools/kiln/heatmap.c) draws with PLplot directly, so the CLI
# links it when the library does (cmake/sched.cmake found it). The end-to-end test runs the
# kiln binary it was built with (KILN_CLI_PATH) and writes PNG/IDX fixtures with libspng.
if(TARGET PkgConfig::PLPLOT AND KILN_PLPLOT AND PLPLOT_FOUND)
  target_link_libraries(kiln_cli PRIVATE PkgConfig::PLPLOT)
  target_compile_definitions(kiln_cli PRIVATE KILN_HAVE_PLPLOT=1)
endif()
if(KILN_TESTS AND TARGET test_vision_cli)
  target_compile_definitions(test_vision_cli PRIVATE KILN_CLI_PATH="$<TARGET_FILE:kiln_cli>")
  add_dependencies(test_vision_cli kiln_cli)
  target_link_libraries(test_vision_cli PRIVATE PkgConfig::KILN_SPNG)
endif()
