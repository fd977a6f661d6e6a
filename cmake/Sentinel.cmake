# Helpers that keep every module and test declared the same way.

# sentinel_module(NAME SOURCES a.c b.c DEPS target...)
# A static library sn_NAME whose headers are reached from shared/ (and the build tree's
# generated code); DEPS are linked publicly so users of the module inherit them.
function(sentinel_module name)
    cmake_parse_arguments(M "" "" "SOURCES;DEPS" ${ARGN})
    add_library(sn_${name} STATIC ${M_SOURCES})
    target_include_directories(sn_${name} PUBLIC ${PROJECT_SOURCE_DIR}/shared)
    target_link_libraries(sn_${name} PUBLIC ${M_DEPS})
endfunction()

# sentinel_unit_test(NAME SOURCES t.c DEPS sn_x...)
# A Check test binary registered with ctest as unit.NAME.
function(sentinel_unit_test name)
    cmake_parse_arguments(T "" "" "SOURCES;DEPS" ${ARGN})
    add_executable(test_${name} ${T_SOURCES})
    target_link_libraries(test_${name} PRIVATE ${T_DEPS} PkgConfig::CHECK m)
    target_include_directories(test_${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/unit)
    add_test(NAME unit.${name} COMMAND test_${name})
    set_tests_properties(unit.${name} PROPERTIES LABELS unit TIMEOUT 300)
endfunction()
