# Runs at install time (cmake/install.cmake's install(CODE)): the units, configs and worker.env
# of config/ with the paths of the prefix being installed to. The files name the Debian
# package's: /usr/bin for the binaries, /etc/elastic-ep for the configs and keys.
# In: EEP_SOURCE_DIR, EEP_STAGING_DIR, EEP_BINDIR, EEP_SYSTEMD_UNIT_DIR, CMAKE_INSTALL_PREFIX.

# GNUInstallDirs' rule for the system configuration directory: /etc for the prefix /usr (and /),
# PREFIX/etc otherwise.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr" OR CMAKE_INSTALL_PREFIX STREQUAL "/")
  set(sysconf_dir "/etc")
else()
  set(sysconf_dir "${CMAKE_INSTALL_PREFIX}/etc")
endif()
if(IS_ABSOLUTE "${EEP_BINDIR}")
  set(bin_dir "${EEP_BINDIR}")
else()
  set(bin_dir "${CMAKE_INSTALL_PREFIX}/${EEP_BINDIR}")
endif()

function(eep_install_with_paths source destination)
  file(READ "${EEP_SOURCE_DIR}/${source}" text)
  string(REPLACE "/usr/bin/" "${bin_dir}/" text "${text}")
  string(REPLACE "/etc/elastic-ep" "${sysconf_dir}/elastic-ep" text "${text}")
  get_filename_component(name "${source}" NAME)
  file(MAKE_DIRECTORY "${EEP_STAGING_DIR}")
  file(WRITE "${EEP_STAGING_DIR}/${name}" "${text}")
  file(INSTALL "${EEP_STAGING_DIR}/${name}" DESTINATION "${destination}"
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endfunction()

eep_install_with_paths(config/eep-coordinator.service
                       "${CMAKE_INSTALL_PREFIX}/${EEP_SYSTEMD_UNIT_DIR}")
eep_install_with_paths(config/eep-worker@.service "${CMAKE_INSTALL_PREFIX}/${EEP_SYSTEMD_UNIT_DIR}")
eep_install_with_paths(config/coordinator.toml "${sysconf_dir}/elastic-ep")
eep_install_with_paths(config/worker.toml "${sysconf_dir}/elastic-ep")
eep_install_with_paths(config/worker.env "${sysconf_dir}/elastic-ep")
