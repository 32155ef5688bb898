# kiln: what the schedules, plots and `kiln schedule` need; included at the end of
# CMakeLists.txt (after the kiln, kiln_cli and test targets exist).
# PLplot (pkg-config plplot; Debian libplplot-dev + plplot-driver-cairo at run time) draws
# the PNG plots in src/report/ (plot.c, grid.c, heatmap.c). Without it kiln still builds
# and kiln_plot_* return KILN_STATUS_UNSUPPORTED; -DKILN_PLPLOT=OFF forces that.
option(KILN_PLPLOT "PNG plots through PLplot" ON)
if(KILN_PLPLOT)
  pkg_check_modules(PLPLOT IMPORTED_TARGET plplot)
endif()
if(KILN_PLPLOT AND PLPLOT_FOUND)
  kiln_dep(COMPILE PkgConfig::PLPLOT LINK ${PLPLOT_LINK_LIBRARIES} PC plplot)
  target_compile_definitions(kiln_obj PRIVATE KILN_HAVE_PLPLOT=1)
  message(STATUS "kiln: PLplot      ${PLPLOT_VERSION} (plots on)")
else()
  message(STATUS "kiln: PLplot      off, no plots (apt-get install libplplot-dev plplot-driver-cairo)")
endif()
# src/report/plsession.c serialises PLplot calls with a mutex
find_package(Threads REQUIRED)
kiln_dep(COMPILE Threads::Threads LINK Threads::Threads PC_LIBS ${CMAKE_THREAD_LIBS_INIT})

# The CLI end-to-end test runs the kiln binary it was built with.
if(KILN_TESTS AND TARGET test_schedule_cli)
  target_compile_definitions(test_schedule_cli PRIVATE KILN_CLI_PATH="$<TARGET_FILE:kiln_cli>")
  add_dependencies(test_schedule_cli kiln_cli)
endif()
