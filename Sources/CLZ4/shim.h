// The LZ4 block API (Debian liblz4-dev), for the KV store's pages.
#include <lz4.h>
