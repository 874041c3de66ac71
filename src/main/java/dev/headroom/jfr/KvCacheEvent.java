package dev.headroom.jfr;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;
import jdk.jfr.Period;

/**
 * The state of one open KV cache, sampled every second while a recording runs (and at its end),
 * so that a server's cache pressure shows in JMC beside its GC and allocation.
 */
@Name(KvCacheEvent.NAME)
@Label("Headroom KV Cache")
@Category({"Headroom"})
@Description("Blocks and bytes of one paged KV cache: reserved, used, shared, cached for reuse, wasted")
@Period("1 s")
public final class KvCacheEvent extends Event {
    public static final String NAME = "dev.headroom.KvCache";

    @Label("Cache")
    @Description("Identity of the cache within the process")
    public int cache;

    @Label("Block Size")
    @Description("Tokens per block")
    public int blockSize;

    @Label("Sequences")
    public int sequences;

    @Label("Reserved")
    @DataAmount
    public long reservedBytes;

    @Label("Allocated")
    @Description("Bytes of blocks allocated so far (blocks are allocated in slabs as they are first needed)")
    @DataAmount
    public long allocatedBytes;

    @Label("Used")
    @DataAmount
    public long usedBytes;

    @Label("Shared")
    @DataAmount
    public long sharedBytes;

    @Label("Cached Prefixes")
    @Description("Bytes of blocks no sequence uses, kept for prefix reuse and evicted first when memory is needed")
    @DataAmount
    public long cachedBytes;

    @Label("Wasted")
    @Description("Bytes inside used blocks that hold no token")
    @DataAmount
    public long wastedBytes;

    @Label("Refusals")
    @Description("Appends refused for lack of blocks since the cache was made")
    public long refusals;
}
