# Compiler flags shared by every muxgate target (not by third-party code).
add_library(muxgate_flags INTERFACE)
target_compile_options(muxgate_flags INTERFACE -Wall -Wextra -Wno-unused-parameter)
target_compile_definitions(muxgate_flags INTERFACE
  BOOST_ASIO_NO_DEPRECATED
  BOOST_DLL_USE_STD_FS
  BOOST_BEAST_USE_STD_STRING_VIEW)

if(MUXGATE_SANITIZE)
  set(_san -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    # clang's -fsanitize=function misfires on coroutine frames and on calls
    # through the plugin C ABI.
    list(APPEND _san -fno-sanitize=function)
  endif()
  add_compile_options(${_san})
  add_link_options(${_san})
endif()

if(MUXGATE_FUZZ AND NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "MUXGATE_FUZZ needs clang (libFuzzer)")
endif()
