// The library's own sources name Status and Result by their old path; the public header is
// <viaduct/status.hpp>.
#pragma once

#include <viaduct/status.hpp>
