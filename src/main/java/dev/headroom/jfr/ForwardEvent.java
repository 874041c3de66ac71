package dev.headroom.jfr;

import jdk.jfr.Category;
import jdk.jfr.DataAmount;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;

/**
 * One forward call of a {@code MultiHeadAttention}, as a JDK Flight Recorder event, so that
 * people profiling a server see Headroom in JMC or {@code jfr print} next to GC and I/O.
 * Enabled by default in JFR's profiles through {@code @Enabled}'s default; costs nothing when
 * no recording runs.
 */
@Name(ForwardEvent.NAME)
@Label("Headroom Forward")
@Category({"Headroom"})
@Description("One multi-head attention forward call: kernel, shapes, memory")
public final class ForwardEvent extends Event {
    public static final String NAME = "dev.headroom.Forward";

    @Label("Kernel")
    public String kernel;

    @Label("Batch")
    public int batch;

    @Label("Queries")
    @Description("n_q, query positions per batch element")
    public int queries;

    @Label("Keys")
    @Description("n_k, key positions per batch element")
    public int keys;

    @Label("Heads")
    public int heads;

    @Label("Model Width")
    public int dModel;

    @Label("Threads")
    public int threads;

    @Label("Mask")
    public String mask;

    @Label("Workspace Allocated")
    @Description("Bytes this call allocated for its workspace (0 when a reused workspace was large enough)")
    @DataAmount
    public long bytesAllocated;

    @Label("Workspace Size")
    @DataAmount
    public long workspaceBytes;

    @Label("Off-heap Current")
    @Description("Bytes Headroom holds off-heap, process-wide, when the call ends")
    @DataAmount
    public long offHeapBytes;

    @Label("Off-heap Peak")
    @Description("Process-wide high-water mark of Headroom's off-heap bytes since the last reset")
    @DataAmount
    public long offHeapPeakBytes;

    /**
     * Fills the fields of a call that ran and commits the event, if a recording wants it (the
     * caller began it): the process-wide off-heap figures are read now, at the end of the call.
     */
    public void commit(String kernel, int batch, int queries, int keys, int heads, int dModel, int threads, String mask,
                       long bytesAllocated, long workspaceBytes) {
        if (!shouldCommit()) return;
        this.kernel = kernel;
        this.batch = batch;
        this.queries = queries;
        this.keys = keys;
        this.heads = heads;
        this.dModel = dModel;
        this.threads = threads;
        this.mask = mask;
        this.bytesAllocated = bytesAllocated;
        this.workspaceBytes = workspaceBytes;
        this.offHeapBytes = dev.headroom.memory.OffHeap.currentBytes();
        this.offHeapPeakBytes = dev.headroom.memory.OffHeap.peakBytes();
        commit();
    }
}
