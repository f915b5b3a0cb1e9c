/*
 * glibc's _dl_find_object for static musl binaries, written for kata-image.
 *
 * Debian's libgcc_eh.a (used here as Rust's libunwind.a) is built against
 * glibc >= 2.35 and finds unwind tables by calling _dl_find_object, which
 * musl does not have. This implements it over dl_iterate_phdr: find the
 * module whose PT_LOAD segment holds the address and report that module's
 * PT_GNU_EH_FRAME (.eh_frame_hdr) in glibc's struct layout for 64-bit
 * targets without DLFO_STRUCT_HAS_EH_DBASE / _EH_COUNT (x86_64, aarch64,
 * powerpc64le, s390x).
 */
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct dl_find_object {
	unsigned long long dlfo_flags;
	void *dlfo_map_start;
	void *dlfo_map_end;
	void *dlfo_link_map;
	void *dlfo_eh_frame;
	unsigned long long dlfo_reserved[7];
};

struct lookup {
	uintptr_t pc;
	struct dl_find_object *out;
	int found;
};

static int visit(struct dl_phdr_info *info, size_t size, void *data)
{
	struct lookup *l = data;
	const ElfW(Phdr) *hit = NULL, *eh = NULL;
	(void)size;
	for (ElfW(Half) i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t start = info->dlpi_addr + ph->p_vaddr;
		if (ph->p_type == PT_LOAD && l->pc >= start &&
		    l->pc - start < ph->p_memsz)
			hit = ph;
		else if (ph->p_type == PT_GNU_EH_FRAME)
			eh = ph;
	}
	if (hit == NULL)
		return 0; /* keep looking in the next module */
	l->out->dlfo_flags = 0;
	l->out->dlfo_map_start = (void *)(info->dlpi_addr + hit->p_vaddr);
	l->out->dlfo_map_end =
		(void *)(info->dlpi_addr + hit->p_vaddr + hit->p_memsz);
	l->out->dlfo_link_map = NULL;
	l->out->dlfo_eh_frame =
		eh ? (void *)(info->dlpi_addr + eh->p_vaddr) : NULL;
	l->found = 1;
	return 1;
}

int _dl_find_object(void *address, struct dl_find_object *result)
{
	struct lookup l = { (uintptr_t)address, result, 0 };
	dl_iterate_phdr(visit, &l);
	return l.found ? 0 : -1;
}

/*
 * libgcc_eh reaches these through weak references (gthr-posix.h). In a
 * static link nothing else pulls them out of musl's libc.a, so the weak
 * references would resolve to 0 and the first backtrace would jump there.
 * Referencing them strongly from this object (which the link always pulls
 * in, for _dl_find_object) makes them real.
 */
__attribute__((used)) void *const kata_image_unwind_pthread_refs[] = {
	(void *)pthread_once,	     (void *)pthread_mutex_lock,
	(void *)pthread_mutex_unlock, (void *)pthread_key_create,
	(void *)pthread_getspecific,  (void *)pthread_setspecific,
};
