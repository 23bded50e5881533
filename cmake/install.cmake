# `cmake --install` and the Debian package (docs/deployment.md): binaries under bin/, the systemd
# units under lib/systemd/system/, the example configs under etc/elastic-ep/ (/etc/elastic-ep for
# the prefix /usr, as GNUInstallDirs has it), the polkit rule the systemd launcher needs, and the
# deployment docs under share/doc/elastic-ep/.
include(GNUInstallDirs)

set(EEP_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where the systemd units are installed, relative to the install prefix")

install(TARGETS eep-coordinator eep-worker eepctl eep-bench eep-mkmodel eep-generate eep-keygen
                eep-eplb
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The units and configs in config/ name the Debian package's paths (/usr/bin, /etc/elastic-ep).
# install_config_files.cmake writes the paths of the prefix they are installed to instead, at
# install time, so that `cmake --install --prefix DIR` gives units whose ExecStart exists.
install(CODE "
  set(EEP_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(EEP_STAGING_DIR \"${PROJECT_BINARY_DIR}/install-staging\")
  set(EEP_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(EEP_SYSTEMD_UNIT_DIR \"${EEP_SYSTEMD_UNIT_DIR}\")
  include(\"${PROJECT_SOURCE_DIR}/cmake/install_config_files.cmake\")
")

install(FILES config/polkit/50-elastic-ep.rules
        DESTINATION ${CMAKE_INSTALL_DATADIR}/polkit-1/rules.d)
install(FILES docs/deployment.md docs/operations.md docs/security.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/elastic-ep)  # the package's name

# The .deb: `cpack -G DEB` in the build directory (tests/install/check_deb.sh checks it).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME elastic-ep)
set(CPACK_PACKAGE_VENDOR "elastic-ep")
set(CPACK_PACKAGE_CONTACT "elastic-ep developers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Serves Mixture-of-Experts models on a GPU fleet that resizes while it serves")
set(CPACK_PACKAGE_DESCRIPTION
    "eep-coordinator (membership, scaling, routing, the OpenAI-compatible API) and eep-worker (one
per GPU) with their systemd units, eepctl, eep-bench, eep-keygen and the other tools.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
# Installed with DESTDIR into the staging folder and the prefix /usr (whatever the build's
# CMAKE_INSTALL_PREFIX), so that install_config_files.cmake puts the configs in /etc.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Libraries from dpkg-shlibdeps (libzmq5, libgloo0, libsystemd0, ...); adduser for postinst,
# procps for the coordinator unit's ExecReload=/bin/kill.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, procps")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "polkitd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/packaging/debian/postinst;${PROJECT_SOURCE_DIR}/packaging/debian/prerm;${PROJECT_SOURCE_DIR}/packaging/debian/postrm;${PROJECT_SOURCE_DIR}/packaging/debian/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
