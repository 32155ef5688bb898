# kiln: what `cmake --install` puts under the prefix (GNUInstallDirs); included last in
# CMakeLists.txt, once every kiln_dep has run.
#   bin/kiln                          the CLI (linked to libkiln.a)
#   lib/libkiln.a, lib/libkiln.so*    the library, static and shared
#   include/kiln.h, include/kiln/     the public headers
#   lib/pkgconfig/kiln.pc             pkg-config --cflags --libs kiln (--static for libkiln.a)
#   lib/cmake/kiln/                   find_package(kiln): kiln::kiln, kiln::kiln_static
# (lib is CMAKE_INSTALL_LIBDIR: lib/x86_64-linux-gnu under /usr on Debian.)
# scripts/check_install.sh installs into a temporary prefix and builds examples/ both ways.
include(CMakePackageConfigHelpers)
set(KILN_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/kiln)

install(TARGETS kiln_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS ${KILN_LIB_TARGETS} EXPORT kilnTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")

install(EXPORT kilnTargets NAMESPACE kiln:: DESTINATION ${KILN_CMAKE_DIR})
configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/kilnConfig.cmake.in ${CMAKE_BINARY_DIR}/kilnConfig.cmake
                              INSTALL_DESTINATION ${KILN_CMAKE_DIR})
# 0.x: a minor version may change the API
write_basic_package_version_file(${CMAKE_BINARY_DIR}/kilnConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/kilnConfig.cmake ${CMAKE_BINARY_DIR}/kilnConfigVersion.cmake
        DESTINATION ${KILN_CMAKE_DIR})

# kiln.pc is written at install time, straight into the prefix given to `cmake --install
# --prefix` (under DESTDIR when set, for packaging; DESTDIR is not part of the paths it holds).
get_property(KILN_PC_REQUIRES GLOBAL PROPERTY KILN_PC_REQUIRES)
get_property(KILN_PC_LIBS GLOBAL PROPERTY KILN_PC_LIBS)
list(REMOVE_DUPLICATES KILN_PC_REQUIRES)
list(JOIN KILN_PC_REQUIRES ", " KILN_PC_REQUIRES)
list(JOIN KILN_PC_LIBS " " KILN_PC_LIBS)
foreach(d LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${d}}")
    set(KILN_PC_${d} "${CMAKE_INSTALL_${d}}")
  else()
    set(KILN_PC_${d} "\${prefix}/${CMAKE_INSTALL_${d}}")
  endif()
endforeach()
install(CODE "
  set(PROJECT_VERSION [=[${PROJECT_VERSION}]=])
  set(KILN_PC_REQUIRES [=[${KILN_PC_REQUIRES}]=])
  set(KILN_PC_LIBS [=[${KILN_PC_LIBS}]=])
  set(KILN_PC_LIBDIR [=[${KILN_PC_LIBDIR}]=])
  set(KILN_PC_INCLUDEDIR [=[${KILN_PC_INCLUDEDIR}]=])
  set(KILN_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(pc [=[${CMAKE_INSTALL_LIBDIR}/pkgconfig/kiln.pc]=])
  if(NOT IS_ABSOLUTE \"\${pc}\")
    set(pc \"\${CMAKE_INSTALL_PREFIX}/\${pc}\")
  endif()
  set(pc \"\$ENV{DESTDIR}\${pc}\")
  message(STATUS \"Installing: \${pc}\")
  configure_file([=[${CMAKE_SOURCE_DIR}/cmake/kiln.pc.in]=] \"\${pc}\" @ONLY)
  list(APPEND CMAKE_INSTALL_MANIFEST_FILES \"\${pc}\")
")

# The ctest test `install` (label install): scripts/check_install.sh on this build. Not in
# sanitizer builds: the examples it builds do not link the sanitizer runtimes.
if(KILN_TESTS AND KILN_SHARED AND NOT KILN_SANITIZE)
  add_test(NAME install COMMAND sh ${CMAKE_SOURCE_DIR}/scripts/check_install.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(install PROPERTIES LABELS install SKIP_RETURN_CODE 77 TIMEOUT 600)
endif()
