# Runs one libFuzzer target for $ENV{FUZZ_SECONDS} seconds (default 60) over
# a copy of its seed corpus; fails the test on any crash, leak, sanitizer
# report, broken invariant or slow input. Invoked by CTest:
#   cmake -DFUZZER=<exe> -DSEEDS=<corpus dir> -DWORK=<build dir>
#         -DMAX_LEN=<n> [-DDICT=<file>] -P run_fuzz.cmake
#
# WORK/corpus starts as a copy of the seeds and keeps what the fuzzer adds
# across runs of this build tree; the source tree is never written. A failing
# input is saved as WORK/crash-<sha1> (or leak-, timeout-, oom-), and
# reproduced with: <exe> WORK/crash-<sha1>
foreach(var FUZZER SEEDS WORK MAX_LEN)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzz.cmake: -D${var}= is required")
  endif()
endforeach()

set(seconds 60)
if(DEFINED ENV{FUZZ_SECONDS} AND NOT "$ENV{FUZZ_SECONDS}" STREQUAL "")
  set(seconds $ENV{FUZZ_SECONDS})
endif()
if(NOT seconds MATCHES "^[0-9]+$")
  message(FATAL_ERROR "FUZZ_SECONDS must be a whole number of seconds, not \"${seconds}\"")
endif()

file(MAKE_DIRECTORY ${WORK}/corpus)
file(GLOB seeds ${SEEDS}/*)
if(seeds)
  file(COPY ${seeds} DESTINATION ${WORK}/corpus)
endif()

set(args
  -max_total_time=${seconds}
  -max_len=${MAX_LEN}
  -timeout=10            # one input taking 10 s is a hang
  -rss_limit_mb=2048
  -print_final_stats=1
  -artifact_prefix=${WORK}/)
if(DICT)
  list(APPEND args -dict=${DICT})
endif()

message(STATUS "fuzzing ${FUZZER} for ${seconds} s over ${WORK}/corpus")
execute_process(
  COMMAND ${FUZZER} ${args} ${WORK}/corpus
  WORKING_DIRECTORY ${WORK}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB artifacts ${WORK}/crash-* ${WORK}/leak-* ${WORK}/timeout-* ${WORK}/oom-* ${WORK}/slow-unit-*)
  message(FATAL_ERROR "${FUZZER} failed (exit ${rc}); inputs: ${artifacts}")
endif()
