// VIADUCT_API marks what libviaduct.so exports. The library builds with hidden visibility: only
// the public API (the headers under include/viaduct/) is visible to applications, so internals
// can change without breaking them, and the dynamic linker resolves fewer symbols at start-up.
#pragma once

#if defined(VIADUCT_BUILDING_LIBRARY)
#define VIADUCT_API [[gnu::visibility("default")]]
#else
#define VIADUCT_API
#endif
