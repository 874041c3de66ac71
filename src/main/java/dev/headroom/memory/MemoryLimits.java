package dev.headroom.memory;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * How much off-heap memory this process can be given, read from the machine and from the limits
 * it runs under, for the default memory budget of a forward call: a call whose estimate exceeds
 * it is refused before it allocates anything, instead of failing half-way with
 * {@link OutOfMemoryError} or being killed.
 *
 * <p>The default budget is 90 % of the least of:
 * <ul>
 *   <li>physical memory (or the container's limit, which the JVM reports in its place) less the
 *       Java heap's maximum, which the heap may still grow to;</li>
 *   <li>the least cgroup memory limit of this process's cgroup and its ancestors ({@code memory.max}
 *       or {@code memory.high}, v2; {@code memory.limit_in_bytes}, v1) less the same heap maximum;</li>
 *   <li>the address-space limit ({@code ulimit -v}) less the address space already in use, plus
 *       what Headroom itself already holds (counted in a call's estimate as well).</li>
 * </ul>
 * It is read once per JVM and is a per-call limit: it does not subtract what is already held
 * (the caller's KV caches, other layers' weights, other calls running at once). 90 %: the rest is
 * left for the JVM's own native memory and the operating system.
 */
public final class MemoryLimits {
    /** Share of what is available that the default budget takes. */
    static final double SHARE = 0.9;
    /** The smallest default budget, whatever the readings say. */
    static final long FLOOR = 64L << 20;

    private MemoryLimits() {}

    private static final class Holder {
        static final Reading READING = read();
    }

    /** The limits read at startup, and the default budget they give. */
    public record Reading(long physical, long cgroup, long addressSpace, long addressSpaceUsed, long maxHeap, long budget,
                          String reason) {}

    /** The default memory budget of a forward call, in bytes. */
    public static long defaultBudget() {
        return Holder.READING.budget();
    }

    /** What the default budget was computed from, in words, for messages. */
    public static String explain() {
        return Holder.READING.reason();
    }

    public static Reading reading() {
        return Holder.READING;
    }

    static Reading read() {
        long physical = physicalMemory(), cgroup = cgroupLimit(), as = addressSpaceLimit(), used = addressSpaceUsed();
        long heap = Runtime.getRuntime().maxMemory();
        List<String> parts = new ArrayList<>();
        long available = Long.MAX_VALUE;
        if (physical > 0) {
            available = Math.max(0, physical - heap);
            parts.add("physical memory " + OffHeap.format(physical) + " less the " + OffHeap.format(heap) + " maximum Java heap");
        }
        if (cgroup > 0 && cgroup - heap < available) {
            available = Math.max(0, cgroup - heap);
            parts.add("the cgroup limit " + OffHeap.format(cgroup) + " less the heap");
        }
        if (as > 0 && used > 0 && as - used + OffHeap.currentBytes() < available) {
            available = Math.max(0, as - used + OffHeap.currentBytes());
            parts.add("the address-space limit (ulimit -v) " + OffHeap.format(as) + " less the " + OffHeap.format(used) + " in use");
        }
        long budget = available == Long.MAX_VALUE ? Long.MAX_VALUE : Math.max(FLOOR, (long) (SHARE * available));
        String reason = "default memory budget " + (budget == Long.MAX_VALUE ? "unlimited (no limit could be read)"
                : OffHeap.format(budget) + ": 90% of " + String.join(", then of ", parts));
        return new Reading(physical, cgroup, as, used, heap, budget, reason);
    }

    /** Total physical memory as the JVM sees it (a container's limit when it runs in one), or 0. */
    static long physicalMemory() {
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os) {
            return os.getTotalMemorySize();
        }
        return 0;
    }

    /**
     * The cgroup memory limit of this process, or 0 when there is none: the least limit of its own
     * cgroup and every ancestor (a limit on a parent slice binds the child too), found through
     * /proc/self/cgroup and the cgroup mounts in /proc/self/mountinfo; v2's {@code memory.max}
     * and {@code memory.high} (where the kernel starts reclaiming hard), or v1's
     * {@code memory.limit_in_bytes}.
     */
    static long cgroupLimit() {
        try {
            List<String> cgroups = Files.readAllLines(Path.of("/proc/self/cgroup"));
            List<String> mounts = Files.readAllLines(Path.of("/proc/self/mountinfo"));
            long least = 0;
            for (String line : cgroups) {
                String[] f = line.split(":", 3);
                if (f.length < 3) continue;
                boolean v2 = f[0].equals("0") && f[1].isEmpty(), v1 = Arrays.asList(f[1].split(",")).contains("memory");
                if (!v2 && !v1) continue;
                for (String mount : mounts) {
                    // "id parent major:minor root mountpoint options - fstype source superoptions"
                    String[] m = mount.split(" ");
                    int dash = Arrays.asList(m).indexOf("-");
                    if (dash < 0 || dash + 1 >= m.length) continue;
                    String fs = m[dash + 1];
                    boolean matches = v2 ? fs.equals("cgroup2")
                            : fs.equals("cgroup") && dash + 3 < m.length && Arrays.asList(m[dash + 3].split(",")).contains("memory");
                    if (!matches) continue;
                    String root = m[3], mountPoint = m[4], path = f[2];
                    if (!path.startsWith(root)) continue;
                    Path dir = Path.of(mountPoint, path.substring(root.length()).replaceFirst("^/", ""));
                    for (Path d = dir; d != null && d.startsWith(mountPoint); d = d.getParent()) {
                        for (String file : v2 ? List.of("memory.max", "memory.high") : List.of("memory.limit_in_bytes")) {
                            long limit = readLimit(d.resolve(file));
                            if (limit > 0 && (least == 0 || limit < least)) least = limit;
                        }
                    }
                }
            }
            return least;
        } catch (IOException | RuntimeException e) {
            return 0; // not Linux, or no cgroups: no limit known
        }
    }

    /** A cgroup limit file's value in bytes, or 0 for "max", an absent file or v1's "no limit" (a huge number). */
    private static long readLimit(Path file) {
        try {
            String v = Files.readString(file).trim();
            if (v.equals("max")) return 0;
            long limit = Long.parseLong(v);
            return limit >= (1L << 60) ? 0 : limit;
        } catch (IOException | NumberFormatException e) {
            return 0;
        }
    }

    /** The soft address-space limit (ulimit -v) in bytes, or 0 when unlimited or unknown. */
    static long addressSpaceLimit() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/limits"))) {
                if (!line.startsWith("Max address space")) continue;
                String soft = line.substring("Max address space".length()).trim().split("\\s+")[0];
                return soft.equals("unlimited") ? 0 : Long.parseLong(soft);
            }
        } catch (IOException | NumberFormatException e) {
            // not Linux
        }
        return 0;
    }

    /** Virtual memory this process uses now (VmSize), or 0 when unknown. */
    static long addressSpaceUsed() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (line.startsWith("VmSize:")) return Long.parseLong(line.substring(7).trim().split("\\s+")[0]) * 1024;
            }
        } catch (IOException | NumberFormatException e) {
            // not Linux
        }
        return 0;
    }
}
