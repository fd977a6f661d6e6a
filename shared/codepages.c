/*
 * codepages.c -- see codepages.h. The segments come from dl_iterate_phdr (also in a static
 * program); a PT_LOAD segment without PF_W whose pages were never written is a plain view of
 * the file, so dropping its page-table entries loses nothing. The RELRO range (relocated, then
 * made read-only: private copies that differ from the file) is cut out in case a linker put it
 * in such a segment.
 */
#include "codepages.h"

#include <errno.h>
#include <link.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct walk {
    uintptr_t page;
    size_t advised;
    int first_error;
} walk;

/* Advises [lo, hi) (page-aligned, possibly empty). */
static void drop(walk *w, uintptr_t lo, uintptr_t hi)
{
    if (hi <= lo)
        return;
    if (madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0)
        w->advised += hi - lo;
    else if (w->first_error == 0)
        w->first_error = -errno;
}

/* dl_iterate_phdr callback: every read-only PT_LOAD segment of one object, pages wholly
 * inside it, minus the object's RELRO range (rounded outwards). */
static int one_object(struct dl_phdr_info *info, size_t size, void *ud)
{
    walk *w = ud;
    (void)size;
    if (info->dlpi_name != NULL && strncmp(info->dlpi_name, "linux-vdso", 10) == 0)
        return 0; /* the kernel's own pages, not a file */
    uintptr_t relro_lo = 0, relro_hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_RELRO) {
            relro_lo = (info->dlpi_addr + ph->p_vaddr) & ~(w->page - 1);
            relro_hi = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz + w->page - 1) & ~(w->page - 1);
        }
    }
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || (ph->p_flags & PF_W) != 0 || ph->p_filesz == 0)
            continue;
        /* Only whole pages of the file's bytes: the segment's first and last pages may be
         * shared with a neighbouring (writable) segment. */
        uintptr_t lo = (info->dlpi_addr + ph->p_vaddr + w->page - 1) & ~(w->page - 1);
        uintptr_t hi = (info->dlpi_addr + ph->p_vaddr + ph->p_filesz) & ~(w->page - 1);
        if (relro_hi > relro_lo && relro_lo < hi && relro_hi > lo) {
            drop(w, lo, relro_lo);
            drop(w, relro_hi, hi);
        } else {
            drop(w, lo, hi);
        }
    }
    return 0;
}

int sn_codepages_release(size_t *advised)
{
    long page = sysconf(_SC_PAGESIZE);
    walk w = {.page = page > 0 ? (uintptr_t)page : 4096u, .advised = 0, .first_error = 0};
    dl_iterate_phdr(one_object, &w);
    if (advised != NULL)
        *advised = w.advised;
    return w.first_error;
}
