# kiln: what the vision data sources (src/data/vision/) need; included at the end of
# CMakeLists.txt. zlib reads gzip'd IDX files, libspng decodes PNG, libturbojpeg decodes JPEG
# (Debian zlib1g-dev libspng-dev libturbojpeg0-dev, installed by scripts/setup.sh); the loader
# threads are pthreads. The tests also encode PNG/JPEG files with the same libraries.
pkg_check_modules(KILN_ZLIB REQUIRED IMPORTED_TARGET zlib)
pkg_check_modules(KILN_SPNG REQUIRED IMPORTED_TARGET spng)
pkg_check_modules(KILN_TURBOJPEG REQUIRED IMPORTED_TARGET libturbojpeg)
find_package(Threads REQUIRED)
kiln_dep(COMPILE PkgConfig::KILN_ZLIB LINK ${KILN_ZLIB_LINK_LIBRARIES} PC zlib)
kiln_dep(COMPILE PkgConfig::KILN_SPNG LINK ${KILN_SPNG_LINK_LIBRARIES} PC spng)
kiln_dep(COMPILE PkgConfig::KILN_TURBOJPEG LINK ${KILN_TURBOJPEG_LINK_LIBRARIES} PC libturbojpeg)
kiln_dep(COMPILE Threads::Threads LINK Threads::Threads)
message(STATUS "kiln: zlib        ${KILN_ZLIB_VERSION}")
message(STATUS "kiln: libspng     ${KILN_SPNG_VERSION}")
message(STATUS "kiln: turbojpeg   ${KILN_TURBOJPEG_VERSION}")
