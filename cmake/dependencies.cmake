# Every external library is found here, once (docs/dependencies.md says why each one).
find_package(Threads REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(cppzmq REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Boost 1.74 REQUIRED)

# Gloo: Debian ships headers, libgloo.so and a CMake config; the GPU machine gets them unpacked
# from the same packages into a prefix, so find the pieces rather than trusting the config's paths.
find_path(GLOO_INCLUDE_DIR gloo/context.h REQUIRED)
find_library(GLOO_LIBRARY gloo REQUIRED)
add_library(eep_gloo INTERFACE)
target_include_directories(eep_gloo SYSTEM INTERFACE ${GLOO_INCLUDE_DIR})
target_link_libraries(eep_gloo INTERFACE ${GLOO_LIBRARY} Threads::Threads)

# PCRE2 (8-bit; UTF, UCP, JIT) for the tokenizer's pre-tokenizer regexes. pkg-config's paths are
# hints, so that a prefix unpacked from .deb files (scripts/gpu/env.sh) is found too.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND)
  pkg_check_modules(PC_PCRE2 QUIET libpcre2-8)
endif()
find_path(PCRE2_INCLUDE_DIR pcre2.h HINTS ${PC_PCRE2_INCLUDE_DIRS} REQUIRED)
find_library(PCRE2_LIBRARY pcre2-8 HINTS ${PC_PCRE2_LIBRARY_DIRS} REQUIRED)
add_library(eep_pcre2 INTERFACE)
target_include_directories(eep_pcre2 SYSTEM INTERFACE ${PCRE2_INCLUDE_DIR})
target_link_libraries(eep_pcre2 INTERFACE ${PCRE2_LIBRARY})
# ICU for the tokenizer's Unicode normalization (NFC) and character classes.
find_package(ICU 70 REQUIRED COMPONENTS uc)

# libsystemd (sd_notify: readiness and watchdog under the Type=notify units; common/src/
# service_notifier.cpp). Optional: without it the daemons run as before and say so when systemd
# expects notifications (docs/dependencies.md: the GPU machine's image has no libsystemd-dev).
set(EEP_SYSTEMD_ENABLED OFF)
if(NOT EEP_SYSTEMD STREQUAL "OFF")
  if(PkgConfig_FOUND)
    pkg_check_modules(PC_LIBSYSTEMD QUIET libsystemd)
  endif()
  find_path(LIBSYSTEMD_INCLUDE_DIR systemd/sd-daemon.h HINTS ${PC_LIBSYSTEMD_INCLUDE_DIRS})
  find_library(LIBSYSTEMD_LIBRARY systemd HINTS ${PC_LIBSYSTEMD_LIBRARY_DIRS})
  if(LIBSYSTEMD_INCLUDE_DIR AND LIBSYSTEMD_LIBRARY)
    set(EEP_SYSTEMD_ENABLED ON)
    add_library(eep_libsystemd INTERFACE)
    target_include_directories(eep_libsystemd SYSTEM INTERFACE ${LIBSYSTEMD_INCLUDE_DIR})
    target_link_libraries(eep_libsystemd INTERFACE ${LIBSYSTEMD_LIBRARY})
  elseif(EEP_SYSTEMD STREQUAL "ON")
    message(FATAL_ERROR "EEP_SYSTEMD=ON but libsystemd was not found: apt-get install libsystemd-dev")
  else()
    message(STATUS "elastic-ep: libsystemd not found (apt-get install libsystemd-dev): the daemons "
                   "are built without sd_notify; the Type=notify units need it")
  endif()
endif()
message(STATUS "elastic-ep: sd_notify through libsystemd ${EEP_SYSTEMD_ENABLED}")

# CUDA: AUTO switches it on when nvcc, the CUDA toolkit and NCCL are all found.
set(EEP_CUDA_ENABLED OFF)
if(NOT EEP_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  find_package(CUDAToolkit QUIET)
  find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})
  find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR})
  if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND AND NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
    set(EEP_CUDA_ENABLED ON)
  elseif(EEP_CUDA STREQUAL "ON")
    message(FATAL_ERROR "EEP_CUDA=ON but nvcc (${CMAKE_CUDA_COMPILER}), the CUDA toolkit "
                        "(${CUDAToolkit_FOUND}) or NCCL (${NCCL_INCLUDE_DIR} ${NCCL_LIBRARY}) is missing")
  endif()
endif()
if(EEP_CUDA_ENABLED)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)  # H100 / H200
  endif()
  enable_language(CUDA)
  # CMake 3.25 does not know nvcc's C++20 flag (nvcc has it since CUDA 12.0) and would refuse
  # CUDA_STANDARD 20 ("does not support this dialect").
  if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  add_library(eep_nccl INTERFACE)
  target_include_directories(eep_nccl SYSTEM INTERFACE ${NCCL_INCLUDE_DIR})
  target_link_libraries(eep_nccl INTERFACE ${NCCL_LIBRARY})
endif()
