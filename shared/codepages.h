/*
 * codepages.h -- give back the resident pages of code and read-only data that start-up touched.
 *
 * A long-running process touches much of its code once, at start-up (configuration, gRPC
 * core's and the libraries' initialisation), and never again; those clean file pages stay
 * mapped and count in its resident set, and the kernel maps up to 64 KiB of the file around
 * every page fault. sn_codepages_release drops the process's mappings of every loaded object's
 * read-only, file-backed segments (code, read-only data; never writable data, the relocated
 * RELRO part or the vDSO): the pages stay in the page cache and whatever runs later faults
 * back in what it uses. Nothing changes for the program but a page fault per code page it
 * touches next; the contents cannot differ (the pages were never written).
 *
 * Linux only. Thread-safe (dl_iterate_phdr and madvise); no state.
 */
#ifndef SN_CODEPAGES_H
#define SN_CODEPAGES_H

#include <stddef.h>

/* Drops the read-only segments' pages of the program and its shared libraries (madvise
 * MADV_DONTNEED). Sets *advised (may be NULL) to the bytes of address space advised. Returns 0,
 * or the negative errno of the first madvise that failed (the other ranges are still advised).
 * Allocates nothing. */
int sn_codepages_release(size_t *advised);

#endif
