package dev.headroom.memory;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.util.Locale;
import java.util.Optional;

/**
 * Large off-heap allocations on transparent huge pages (Linux): anonymous memory from
 * {@code mmap}, advised with {@code madvise(MADV_HUGEPAGE)} before any page of it is touched,
 * aligned to 2 MiB, then touched once per 4 KiB so that the kernel backs all of it now, huge pages
 * or not ({@code madvise} succeeds even where THP is set to "never"), and no later caller pays for
 * the faults. A KV cache's blocks are scattered over its whole budget (prefixes
 * stay cached, new blocks come from anywhere), so with 4 KiB pages nearly every block of a decode
 * step missed the TLB; 2 MiB pages cover a 2 GiB budget with 1,024 entries. PyTorch does the same
 * for large CPU tensors ({@code THP_MEM_ALLOC_ENABLE}); the JVM's own heap has
 * {@code -XX:+UseTransparentHugePages}, which off-heap memory does not get.
 *
 * <p>Three libc calls through the FFM linker, written here by hand: jextract for three POSIX
 * functions would add generated code and a build step for less than it replaces. The constants
 * are Linux's (the same on x86-64 and AArch64). Anywhere else, or when a call fails, callers fall
 * back to an ordinary allocation: the advice is a speed-up, never a requirement. The system
 * property {@code headroom.hugePages=false} turns it off (for measuring, or a kernel that
 * misbehaves with it).
 */
final class HugePages {
    /** A huge page on x86-64 and AArch64 with 4 KiB base pages. */
    static final long SIZE = 2L << 20;
    /** The base page, which every page of an allocation is touched at. */
    private static final long BASE_PAGE = 4096;

    private static final int PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20, MADV_HUGEPAGE = 14;
    private static final MethodHandle MMAP, MADVISE, MUNMAP;

    static {
        MethodHandle mmap = null, madvise = null, munmap = null;
        if (System.getProperty("os.name", "").toLowerCase(Locale.ROOT).contains("linux")
                && !"false".equals(System.getProperty("headroom.hugePages"))) {
            try {
                Linker linker = Linker.nativeLinker();
                SymbolLookup libc = linker.defaultLookup();
                Optional<MemorySegment> m = libc.find("mmap"), a = libc.find("madvise"), u = libc.find("munmap");
                if (m.isPresent() && a.isPresent() && u.isPresent()) {
                    mmap = linker.downcallHandle(m.get(), FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.ADDRESS,
                            ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG));
                    madvise = linker.downcallHandle(a.get(), FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                            ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT));
                    munmap = linker.downcallHandle(u.get(), FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                            ValueLayout.JAVA_LONG));
                }
            } catch (RuntimeException | LinkageError e) {
                mmap = madvise = munmap = null; // no native access, or an unusual libc: ordinary allocations
            }
        }
        MMAP = mmap;
        MADVISE = madvise;
        MUNMAP = munmap;
    }

    private HugePages() {}

    /** Whether this JVM can ask for huge pages at all (Linux, libc found, native access allowed). */
    static boolean available() {
        return MMAP != null;
    }

    /**
     * {@code byteSize} zeroed bytes, 2 MiB aligned and advised for huge pages, unmapped when
     * {@code arena} closes; empty when the system refuses (the caller allocates otherwise).
     */
    static Optional<MemorySegment> allocate(Arena arena, long byteSize) {
        if (MMAP == null || byteSize <= 0) return Optional.empty();
        long length = byteSize + SIZE; // room to align the start to a huge page
        long address;
        try {
            MemorySegment raw = (MemorySegment) MMAP.invokeExact(MemorySegment.NULL, length, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0L);
            address = raw.address();
        } catch (Throwable t) {
            return Optional.empty();
        }
        if (address == -1L || address == 0L) return Optional.empty(); // MAP_FAILED: the caller's allocation reports it
        long start = (address + SIZE - 1) & -SIZE;
        int advised;
        try {
            advised = (int) MADVISE.invokeExact(MemorySegment.ofAddress(start), byteSize, MADV_HUGEPAGE);
        } catch (Throwable t) {
            advised = -1;
        }
        if (advised != 0) { // THP compiled out of this kernel: an ordinary allocation does as well
            unmap(address, length);
            return Optional.empty();
        }
        MemorySegment owned;
        try {
            owned = MemorySegment.ofAddress(address).reinterpret(length, arena, s -> unmap(s.address(), length));
        } catch (RuntimeException e) { // a closed arena, or a confined one used from another thread: nothing may outlive this
            unmap(address, length);
            throw e;
        }
        MemorySegment segment = owned.asSlice(start - address, byteSize);
        // back every page now, as zeroing an ordinary allocation does: where the kernel gave no huge page (THP set to
        // "never", or none free) each 4 KiB page would otherwise fault in the middle of a later decode step
        for (long at = 0; at < byteSize; at += BASE_PAGE) segment.set(ValueLayout.JAVA_BYTE, at, (byte) 0);
        return Optional.of(segment);
    }

    private static void unmap(long address, long length) {
        try {
            int ignored = (int) MUNMAP.invokeExact(MemorySegment.ofAddress(address), length);
        } catch (Throwable t) {
            throw new IllegalStateException("munmap of " + length + " bytes at 0x" + Long.toHexString(address) + " failed", t);
        }
    }
}
