package dev.headroom.cache;

import dev.headroom.jfr.KvCacheEvent;
import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
import jdk.jfr.FlightRecorder;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A paged KV cache in off-heap memory (vLLM's PagedAttention, on the JVM): keys and values of
 * every layer and key/value head, for many sequences, in fixed-size blocks of {@code blockSize}
 * tokens. The cache owns all of its memory, at most a byte budget fixed at construction;
 * sequences own nothing but a block table (logical block → physical block) and their token ids.
 *
 * <p><b>One block</b> holds, for each layer l and key/value head g, two parts:
 * <pre>
 *   K part: Kᵀ (headDim, blockSize) elements, feature-major: feature f of token slot t at f·blockSize + t,
 *           then (int8 only) the keys' scales, (blockSize) floats
 *   V part: V (blockSize, headDim) elements in tiles of {@value #VALUE_TILE} features (the last
 *           one narrower when headDim is not a multiple): tile c holds features [64c, 64c + w_c)
 *           of every token slot, token-major, so feature f of slot t is at
 *           64c·blockSize + t·w_c + (f − 64c), c = f / 64 ({@link #valueElement});
 *           then (int8 only) the values' scales, (blockSize) floats
 * </pre>
 * in {@link KvDtype} elements, each part rounded up to 64 bytes. Kᵀ is feature-major so that the
 * decode kernel forms the scores of a block's tokens with one vector per feature; V is
 * token-major within a tile so that the weighted sum adds rows of the tile. The tiles are there
 * for the weighted sum's reads: it keeps (query rows × one tile's features) in registers, and
 * with plain (blockSize, headDim) rows it read the first 64 features of every token, then the
 * next 64, skipping half of each 512-byte row (head dim 128), which one core read from memory
 * at 12 GB/s against 20 GB/s for the same kernel over tiles and 25 GB/s for a plain streaming
 * read (AMD EPYC Zen 5, 512-bit vectors; a scratch probe, the decode benchmarks give the
 * whole step). A block's parts are not next to each
 * other: memory is allocated in slabs of many blocks, and within a slab each part has a region of
 * its own, (layer, head, K|V) after (layer, head, K|V), holding that part of every block of the
 * slab in block order. So one head's keys of consecutive blocks (a prefilled sequence's, say) are
 * one contiguous stream, which the decode kernel reads at full bandwidth: 8 KiB parts of blocks
 * 16 KiB apart streamed at 9.6 GB/s on one core here, consecutive ones at 26 GB/s.
 *
 * <p><b>Sharing.</b> Blocks are reference-counted. {@link #fork} gives a new sequence every block
 * of another (copy-on-write: the first write into a shared block copies it). Full blocks whose
 * token ids are known are registered by their tokens and their prefix; {@link #create(int[])}
 * starts a sequence on the longest registered prefix of its prompt. Registered blocks nobody uses
 * stay cached and are evicted least recently used first, only when a block is needed.
 *
 * <p><b>Writing.</b> {@link #append} reserves slots for new tokens (allocating blocks, copying
 * shared ones) or refuses with {@link KvCacheFullException}, changing nothing. The caller then
 * writes every layer's keys and values for those slots ({@link #write}) before the sequence's next
 * {@code append}, {@code fork}, {@code free} or {@link #seal}: full blocks are registered for
 * reuse only then, when their contents are complete.
 *
 * <p><b>Threads.</b> Every structural operation (create, append, fork, truncate, evict, free, seal)
 * is synchronized. {@link #write} and {@link #gather} copy outside the lock (so that layers of
 * different sequences write at once) and take it only to check and to record what was written;
 * attention reads block memory from any thread while no structural operation runs on that
 * sequence.
 */
public final class KvCache implements AutoCloseable, OffHeap.CacheUsage {
    private static final ValueLayout.OfFloat F = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfShort S = ValueLayout.JAVA_SHORT_UNALIGNED;
    /** Blocks are allocated in slabs of about this many bytes, as they are first needed. */
    static final long SLAB_BYTES = 64L << 20;
    private static final AtomicInteger IDS = new AtomicInteger();
    private static final Set<KvCache> OPEN = ConcurrentHashMap.newKeySet();

    static {
        FlightRecorder.addPeriodicEvent(KvCacheEvent.class, () -> {
            for (KvCache c : OPEN) c.emitEvent();
        });
    }

    /**
     * What the cache stores: {@code layers} × {@code kvHeads} heads of {@code headDim} features
     * for keys and for values, in blocks of {@code blockSize} tokens, as {@code dtype}.
     */
    public record Shape(int layers, int kvHeads, int headDim, int blockSize, KvDtype dtype) {
        public Shape {
            if (layers < 1 || kvHeads < 1 || headDim < 1 || blockSize < 1) {
                throw new IllegalArgumentException("KV cache needs layers, kv_heads, head_dim and block size >= 1, got "
                        + layers + ", " + kvHeads + ", " + headDim + ", " + blockSize);
            }
            if (dtype == null) throw new IllegalArgumentException("KV dtype must be given");
        }

        /** Bytes of one part of a block (the keys, or the values, of one layer and head), with int8 scales, rounded up to 64. */
        public long partBytes() {
            long raw = (long) headDim * blockSize * dtype.bytes() + (dtype == KvDtype.INT8 ? (long) blockSize * Float.BYTES : 0);
            return (raw + 63) / 64 * 64;
        }

        /** Parts of a block: keys and values of every layer and head. */
        public int parts() {
            return 2 * layers * kvHeads;
        }

        /** Bytes of one block. */
        public long blockBytes() {
            return parts() * partBytes();
        }

        /** Bytes of keys and values (and int8 scales) one token of one layer takes, all heads: what decode reads per token. */
        public double layerBytesPerToken() {
            return 2.0 * kvHeads * partBytes() / blockSize;
        }

        /** Bytes one token takes in a full block (all layers, heads, K and V, scales). */
        public double bytesPerToken() {
            return (double) blockBytes() / blockSize;
        }

        /** Blocks that {@code tokens} tokens of one sequence take. */
        public long blocksFor(long tokens) {
            return (tokens + blockSize - 1) / blockSize;
        }
    }

    /**
     * The cache's accounting at one moment.
     *
     * @param capacityBlocks blocks the budget allows
     * @param blockBytes     bytes per block
     * @param allocatedBytes bytes of blocks allocated so far (slabs are allocated as first needed)
     * @param usedBlocks     blocks some sequence references
     * @param sharedBlocks   blocks more than one sequence references
     * @param cachedBlocks   registered blocks nobody references, kept for prefix reuse (evicted first)
     * @param freeBlocks     blocks holding nothing (allocated or not)
     * @param sequences      live sequences
     * @param tokens         tokens over all sequences (a shared token counts once per sequence)
     * @param wastedBytes    bytes of token slots inside used blocks that hold no token
     * @param refusals       appends refused since the cache was made
     * @param saturated      float16 values clipped to ±65504 since the cache was made
     */
    public record Stats(int capacityBlocks, long blockBytes, long allocatedBytes, int usedBlocks, int sharedBlocks,
                        int cachedBlocks, int freeBlocks, int sequences, long tokens, long wastedBytes, long refusals,
                        long saturated) {
        public long reservedBytes() {
            return capacityBlocks * blockBytes;
        }

        public long usedBytes() {
            return usedBlocks * blockBytes;
        }

        public long sharedBytes() {
            return sharedBlocks * blockBytes;
        }

        public long cachedBytes() {
            return cachedBlocks * blockBytes;
        }

        /** Wasted bytes as a share of used bytes (0 when nothing is used). */
        public double wasteFraction() {
            return usedBlocks == 0 ? 0 : (double) wastedBytes / usedBytes();
        }

        @Override
        public String toString() {
            return "KV cache: " + usedBlocks + " of " + capacityBlocks + " blocks used (" + OffHeap.format(usedBytes()) + " of "
                    + OffHeap.format(reservedBytes()) + "), " + sharedBlocks + " shared, " + cachedBlocks + " cached, "
                    + sequences + " sequences, " + tokens + " tokens, " + OffHeap.format(wastedBytes) + " wasted";
        }
    }

    /**
     * The new tokens of one step of a batch, in the order their rows are concatenated: sequence
     * {@code sequences[i]} gets {@code counts[i]} tokens at positions {@code starts[i]} onwards.
     */
    public static final class Step {
        private final int cache;
        private final int[] sequences, starts, counts;

        /** Made by {@link KvCache#step} only, so that a step always names slots its cache reserved. */
        private Step(int cache, int[] sequences, int[] starts, int[] counts) {
            this.cache = cache;
            this.sequences = sequences.clone();
            this.starts = starts.clone();
            this.counts = counts.clone();
        }

        /** Whether this step was reserved in {@code c} (sequence ids are per cache: another cache may use the same). */
        public boolean of(KvCache c) {
            return c.id == cache;
        }

        public int sequence(int i) {
            return sequences[i];
        }

        public int start(int i) {
            return starts[i];
        }

        public int count(int i) {
            return counts[i];
        }

        public int[] sequences() {
            return sequences.clone();
        }

        public int[] starts() {
            return starts.clone();
        }

        public int[] counts() {
            return counts.clone();
        }

        /** New tokens over all sequences: the rows of the step's input. */
        public int tokens() {
            int t = 0;
            for (int c : counts) t += c;
            return t;
        }

        /** Row of sequence i's first new token in the step's input. */
        public int row(int i) {
            int r = 0;
            for (int k = 0; k < i; k++) r += counts[k];
            return r;
        }

        /** Keys sequence i attends to after this step's tokens are in: starts[i] + counts[i]. */
        public int keys(int i) {
            return starts[i] + counts[i];
        }

        public int size() {
            return sequences.length;
        }

        @Override
        public String toString() {
            return "Step(sequences " + Arrays.toString(sequences) + ", starts " + Arrays.toString(starts) + ", counts "
                    + Arrays.toString(counts) + ")";
        }
    }

    /** The identity of a full block's contents: its tokens after the prefix registered as {@code parent}. */
    private record PrefixKey(long parent, int[] tokens) {
        @Override
        public boolean equals(Object o) {
            return o instanceof PrefixKey k && k.parent == parent && Arrays.equals(k.tokens, tokens);
        }

        @Override
        public int hashCode() {
            return Long.hashCode(parent) * 31 + Arrays.hashCode(tokens);
        }
    }

    /** One sequence: its length, block table, token ids (null once unknown) and registered prefix. */
    private static final class Sequence {
        int length;
        /** Physical block of each logical block; −1 where evicted (a mask that still lets a query see it is refused). */
        int[] table = new int[4];
        int blocks;
        /** Token ids of every position, or null when some append gave none (no prefix registration then). */
        int[] tokens = new int[16];
        /** Per full block, the registration id of its prefix (its own or an equal registered block's). */
        long[] prefix = new long[4];
        /** Full blocks already considered for registration. */
        int sealed;
        /**
         * Per layer, the tokens [0, written) whose keys and values have been written: only full
         * blocks below every layer's mark may be registered for reuse (a step that failed half-way
         * leaves unwritten slots, which no other request may ever read).
         */
        int[] written;

        Sequence(int layers) {
            written = new int[layers];
        }

        Sequence copy() {
            Sequence s = new Sequence(written.length);
            s.written = written.clone();
            s.length = length;
            s.table = table.clone();
            s.blocks = blocks;
            s.tokens = tokens == null ? null : tokens.clone();
            s.prefix = prefix.clone();
            s.sealed = sealed;
            return s;
        }
    }

    private final int id = IDS.incrementAndGet();
    private final Shape shape;
    private final long blockBytes;
    private final int capacity;
    private final int slabBlocks;
    private final TrackedArena arena = TrackedArena.ofShared();
    /** Slab i holds blocks [i·slabBlocks, (i+1)·slabBlocks); allocated when first needed. */
    private final MemorySegment[] slabs;
    /** Blocks [fresh, capacity) were never handed out. */
    private int fresh;
    private final ArrayDeque<Integer> free = new ArrayDeque<>();
    /** Per block: references, token slots holding data, registration. */
    private final int[] refs, filled;
    private final long[] registration;
    private final PrefixKey[] registeredAs;
    private final Map<PrefixKey, Integer> registry = new HashMap<>();
    /** Registered blocks nobody references, least recently released first. */
    private final LinkedHashSet<Integer> cached = new LinkedHashSet<>();
    private long nextRegistration = 1;
    private final Map<Integer, Sequence> sequences = new HashMap<>();
    private int nextSequence = 1;
    private int used, shared;
    private long wastedSlots, tokens, refusals, saturated;
    private boolean closed;

    /** A cache of {@code shape} that may hold up to {@code budgetBytes} (whole blocks). */
    public KvCache(Shape shape, long budgetBytes) {
        this(shape, budgetBytes, SLAB_BYTES);
    }

    /** As above, allocating slabs of about {@code slabBytes} (tests use small ones to cross slab borders often). */
    KvCache(Shape shape, long budgetBytes, long slabBytes) {
        this.shape = shape;
        this.blockBytes = shape.blockBytes();
        long blocks = budgetBytes / blockBytes;
        if (blocks < 1) {
            throw new IllegalArgumentException("a KV cache budget of " + OffHeap.format(budgetBytes) + " holds no block of "
                    + OffHeap.format(blockBytes) + " (" + shape + ")");
        }
        if (blocks > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("KV cache budget too large: " + blocks + " blocks");
        long machine = dev.headroom.memory.MemoryLimits.defaultBudget();
        if (budgetBytes > machine) {
            throw new IllegalArgumentException("a KV cache budget of " + OffHeap.format(budgetBytes) + " is more than this process "
                    + "can be given (" + dev.headroom.memory.MemoryLimits.explain() + "): blocks are allocated as they are first "
                    + "needed, so such a cache would fail half-way through a step instead of refusing it up front");
        }
        this.capacity = (int) blocks;
        this.slabBlocks = (int) Math.max(1, Math.min(capacity, slabBytes / blockBytes));
        this.slabs = new MemorySegment[(capacity + slabBlocks - 1) / slabBlocks];
        this.refs = new int[capacity];
        this.filled = new int[capacity];
        this.registration = new long[capacity];
        this.registeredAs = new PrefixKey[capacity];
        OffHeap.register(this);
        OPEN.add(this);
    }

    /** Bytes a cache of {@code shape} needs for {@code sequences} sequences of {@code tokens} tokens each (no sharing). */
    public static long bytesFor(Shape shape, long sequences, long tokens) {
        return sequences * shape.blocksFor(tokens) * shape.blockBytes();
    }

    /** Sequences of {@code tokens} tokens each that a budget of {@code budgetBytes} holds (no sharing). */
    public static long sequencesThatFit(Shape shape, long budgetBytes, long tokens) {
        return budgetBytes / shape.blockBytes() / Math.max(1, shape.blocksFor(tokens));
    }

    public Shape shape() {
        return shape;
    }

    public int blockSize() {
        return shape.blockSize();
    }

    // ---- sequences ------------------------------------------------------------------------

    /** A new empty sequence; returns its id. */
    public synchronized int create() {
        checkOpen();
        int s = nextSequence++;
        sequences.put(s, new Sequence(shape.layers()));
        return s;
    }

    /**
     * A new sequence that starts on the longest registered prefix of {@code prompt} made of whole
     * blocks, always leaving at least the prompt's last token to compute (its output is what the
     * caller wants). Returns the sequence id; {@link #length} says how many tokens were reused, and
     * the caller appends the rest of the prompt.
     */
    public synchronized int create(int[] prompt) {
        checkOpen();
        int s = nextSequence++;
        Sequence seq = new Sequence(shape.layers());
        int bs = shape.blockSize(), reusable = Math.max(0, prompt.length - 1) / bs;
        long parent = 0;
        for (int k = 0; k < reusable; k++) {
            Integer block = registry.get(new PrefixKey(parent, Arrays.copyOfRange(prompt, k * bs, (k + 1) * bs)));
            if (block == null) break;
            retain(block);
            addBlock(seq, block);
            parent = registration[block];
            setPrefix(seq, k, parent);
            seq.sealed = k + 1;
            seq.length = (k + 1) * bs;
        }
        seq.tokens = Arrays.copyOf(prompt, Math.max(16, seq.length));
        Arrays.fill(seq.written, seq.length); // reused blocks were written by the sequence that registered them
        tokens += seq.length;
        sequences.put(s, seq);
        return s;
    }

    /** Tokens cached for sequence s: the position its next token takes. */
    public synchronized int length(int s) {
        return seq(s).length;
    }

    /** Live sequences. */
    public synchronized int sequences() {
        return sequences.size();
    }

    /**
     * Reserves slots for {@code count} new tokens of sequence s (token ids {@code ids}, or null when
     * unknown: such a sequence's blocks are never registered for reuse); returns the position of
     * the first. Allocates the blocks it needs and copies a shared last block before it is written
     * into. When there are not enough blocks, throws {@link KvCacheFullException} and changes nothing.
     */
    public synchronized int append(int s, int count, int[] ids) {
        return append(new int[]{s}, new int[]{count}, ids == null ? null : new int[][]{ids})[0];
    }

    /**
     * Reserves slots for new tokens of several sequences at once (one step of a batch): all or
     * nothing. Returns each sequence's first new position.
     */
    public synchronized int[] append(int[] seqs, int[] counts, int[][] ids) {
        checkOpen();
        if (seqs.length != counts.length || (ids != null && ids.length != seqs.length)) {
            throw new IllegalArgumentException("append of " + seqs.length + " sequences got " + counts.length + " counts"
                    + (ids == null ? "" : " and " + ids.length + " token lists"));
        }
        Set<Integer> distinct = new java.util.HashSet<>();
        int needed = 0;
        for (int i = 0; i < seqs.length; i++) {
            Sequence seq = seq(seqs[i]);
            if (!distinct.add(seqs[i])) throw new IllegalArgumentException("sequence " + seqs[i] + " appears twice in one append");
            if (counts[i] < 0) throw new IllegalArgumentException("cannot append " + counts[i] + " tokens");
            if (ids != null && ids[i] != null && ids[i].length != counts[i]) {
                throw new IllegalArgumentException("append of " + counts[i] + " tokens to sequence " + seqs[i] + " got "
                        + ids[i].length + " token ids");
            }
            if ((long) seq.length + counts[i] > Integer.MAX_VALUE - shape.blockSize()) {
                throw new IllegalArgumentException("sequence " + seqs[i] + " would exceed " + Integer.MAX_VALUE + " tokens");
            }
            if (counts[i] > 0 && seq.length % shape.blockSize() != 0 && seq.table[seq.blocks - 1] < 0) {
                throw new IllegalStateException("sequence " + seqs[i] + " ends inside an evicted block (evicted, then truncated "
                        + "into it): nothing can be appended to it");
            }
            needed += blocksNeeded(seq, counts[i]);
        }
        int available = free.size() + (capacity - fresh) + cached.size();
        if (needed > available) {
            refusals++;
            throw new KvCacheFullException("KV cache full: appending " + Arrays.toString(counts) + " tokens to sequences "
                    + Arrays.toString(seqs) + " needs " + needed + " blocks of " + OffHeap.format(blockBytes) + ", "
                    + available + " are free or evictable (" + stats() + ")", needed, available);
        }
        // Allocate the slabs of the never-used blocks this step will take before changing anything, so
        // that an allocation the machine refuses leaves the cache as it was.
        int freshNeeded = Math.min(capacity - fresh, Math.max(0, needed - free.size()));
        for (int b = fresh; b < fresh + freshNeeded; b += slabBlocks - b % slabBlocks) slabFor(b);
        int[] starts = new int[seqs.length];
        for (int i = 0; i < seqs.length; i++) {
            Sequence seq = seq(seqs[i]);
            seal(seq);
            starts[i] = seq.length;
            grow(seq, counts[i], ids == null ? null : ids[i]);
        }
        return starts;
    }

    /**
     * Appends for one step of a batch ({@link #append(int[], int[], int[][])}: all or nothing) and
     * returns it as a {@link Step}, for the attention layers to run over.
     */
    public synchronized Step step(int[] seqs, int[] counts, int[][] ids) {
        int[] starts = append(seqs, counts, ids);
        return new Step(id, seqs, starts, counts);
    }

    /** Blocks an append of {@code count} tokens to seq needs: new blocks, and a copy of a shared last block. */
    private int blocksNeeded(Sequence seq, int count) {
        if (count == 0) return 0;
        int bs = shape.blockSize();
        int need = (int) (shape.blocksFor((long) seq.length + count) - seq.blocks);
        if (seq.length % bs != 0 && !writable(seq.table[seq.blocks - 1])) need++;
        return need;
    }

    private boolean writable(int block) {
        return block >= 0 && refs[block] == 1 && registration[block] == 0;
    }

    private void grow(Sequence seq, int count, int[] ids) {
        if (count == 0) return;
        int bs = shape.blockSize();
        if (seq.length % bs != 0) { // the new tokens start inside the last block: it must be ours alone
            int last = seq.table[seq.blocks - 1];
            if (last < 0) throw new IllegalStateException("cannot append after an evicted block");
            if (!writable(last)) {
                int copy = take();
                for (int part = 0; part < shape.parts(); part++) {
                    MemorySegment.copy(slab(last), address(last, part), slab(copy), address(copy, part), shape.partBytes());
                }
                retain(copy);
                setFilled(copy, filled[last]);
                release(last);
                seq.table[seq.blocks - 1] = copy;
            }
        }
        int end = seq.length + count;
        while (seq.blocks < shape.blocksFor(end)) {
            int b = take();
            retain(b);
            addBlock(seq, b);
        }
        for (int k = seq.length / bs; k < seq.blocks; k++) {
            int slots = Math.min(bs, end - k * bs);
            if (seq.table[k] >= 0 && slots > filled[seq.table[k]]) setFilled(seq.table[k], slots);
        }
        if (seq.tokens != null && ids != null) {
            if (seq.tokens.length < end) seq.tokens = Arrays.copyOf(seq.tokens, Math.max(end, 2 * seq.tokens.length));
            System.arraycopy(ids, 0, seq.tokens, seq.length, count);
        } else {
            seq.tokens = null;
        }
        seq.length = end;
        tokens += count;
    }

    /**
     * A new sequence with every block of sequence s (shared, copy-on-write), its tokens and its
     * registered prefix. Returns the new id. Costs no block until one of the two writes into a
     * shared block.
     */
    public synchronized int fork(int s) {
        checkOpen();
        Sequence from = seq(s);
        seal(from);
        Sequence copy = from.copy();
        for (int k = 0; k < copy.blocks; k++) if (copy.table[k] >= 0) retain(copy.table[k]);
        int id = nextSequence++;
        sequences.put(id, copy);
        tokens += copy.length;
        return id;
    }

    /**
     * Cuts sequence s back to {@code length} tokens (rollback of rejected speculative tokens, or a
     * context shift): blocks past it are released; a later append writes into the (then copied, if
     * shared) last block as if the cut tokens had never been appended.
     */
    public synchronized void truncate(int s, int length) {
        checkOpen();
        Sequence seq = seq(s);
        if (length < 0 || length > seq.length) {
            throw new IllegalArgumentException("cannot truncate sequence " + s + " of " + seq.length + " tokens to " + length);
        }
        int bs = shape.blockSize(), keep = (int) shape.blocksFor(length);
        if (length % bs != 0 && seq.table[keep - 1] < 0) {
            throw new IllegalArgumentException("cannot truncate sequence " + s + " to " + length + " tokens: that ends inside an "
                    + "evicted block");
        }
        seal(seq);
        for (int k = seq.blocks - 1; k >= keep; k--) if (seq.table[k] >= 0) release(seq.table[k]); // leaves first: see free
        seq.blocks = keep;
        int tail = length % bs;
        if (tail != 0 && writable(seq.table[keep - 1])) setFilled(seq.table[keep - 1], tail);
        seq.sealed = Math.min(seq.sealed, length / bs);
        for (int l = 0; l < seq.written.length; l++) seq.written[l] = Math.min(seq.written[l], length);
        tokens -= seq.length - length;
        seq.length = length;
    }

    /**
     * Releases the blocks that lie wholly inside token range [from, to) of sequence s: attention
     * will never look at those tokens again (StreamingLLM's evicted middle). Positions do not
     * change: later tokens keep theirs.
     */
    public synchronized void evict(int s, int from, int to) {
        checkOpen();
        Sequence seq = seq(s);
        if (from < 0 || to > seq.length || from > to) {
            throw new IllegalArgumentException("cannot evict tokens [" + from + ", " + to + ") of a sequence of " + seq.length);
        }
        seal(seq);
        int bs = shape.blockSize();
        for (int k = (from + bs - 1) / bs; (long) (k + 1) * bs <= to; k++) {
            if (seq.table[k] < 0) continue;
            release(seq.table[k]);
            seq.table[k] = -1;
        }
    }

    /** Ends sequence s: its blocks are released (registered ones stay cached for reuse). */
    public synchronized void free(int s) {
        checkOpen();
        Sequence seq = seq(s);
        seal(seq);
        // Last block first: released blocks queue for eviction in this order, so a cached prefix
        // loses its tail before its root, and what remains is still reachable from the root.
        for (int k = seq.blocks - 1; k >= 0; k--) if (seq.table[k] >= 0) release(seq.table[k]);
        tokens -= seq.length;
        sequences.remove(s);
    }

    /**
     * Ends sequence s like {@link #free}, but registers none of its blocks that is not registered
     * yet, not even those every layer has written: for a sequence whose last step failed part-way,
     * so that nothing of a failed request is offered for reuse. Blocks registered before stay
     * registered.
     */
    public synchronized void discard(int s) {
        checkOpen();
        Sequence seq = seq(s);
        seq.tokens = null; // no known ids: seal registers nothing
        free(s);
    }

    /**
     * Registers sequence s's full blocks with known token ids whose keys and values every layer
     * has written ({@link #write}) for reuse by later sequences. (Append, fork, truncate, evict and
     * free do this themselves; blocks not written by every layer are never registered.)
     */
    public synchronized void seal(int s) {
        checkOpen();
        seal(seq(s));
    }

    private void seal(Sequence seq) {
        if (seq.tokens == null) return;
        int written = seq.length;
        for (int w : seq.written) written = Math.min(written, w);
        int bs = shape.blockSize(), full = written / bs;
        for (int k = seq.sealed; k < full; k++) {
            long parent = k == 0 ? 0 : seq.prefix[k - 1];
            int block = seq.table[k];
            if (parent < 0 || block < 0) {
                setPrefix(seq, k, -1);
                continue;
            }
            PrefixKey key = new PrefixKey(parent, Arrays.copyOfRange(seq.tokens, k * bs, (k + 1) * bs));
            Integer known = registry.get(key);
            if (known != null) {
                setPrefix(seq, k, registration[known]);
            } else if (registration[block] != 0) {
                setPrefix(seq, k, registration[block]); // already registered (reused from a prefix)
            } else {
                long r = nextRegistration++;
                registration[block] = r;
                registeredAs[block] = key;
                registry.put(key, block);
                setPrefix(seq, k, r);
            }
        }
        seq.sealed = Math.max(seq.sealed, full);
    }

    // ---- block bookkeeping ----------------------------------------------------------------

    private Sequence seq(int s) {
        Sequence seq = sequences.get(s);
        if (seq == null) throw new IllegalArgumentException("no sequence " + s + " in this KV cache");
        return seq;
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("KV cache is closed");
    }

    private static void addBlock(Sequence seq, int block) {
        if (seq.blocks == seq.table.length) seq.table = Arrays.copyOf(seq.table, 2 * seq.table.length);
        seq.table[seq.blocks++] = block;
    }

    private static void setPrefix(Sequence seq, int k, long id) {
        if (k >= seq.prefix.length) seq.prefix = Arrays.copyOf(seq.prefix, Math.max(k + 1, 2 * seq.prefix.length));
        seq.prefix[k] = id;
    }

    /**
     * Allocates the memory of the whole budget now, instead of slab by slab as blocks are first
     * needed: what a server does when it starts, so that memory is found (or not) once, up front,
     * and no later step pays for allocating and zeroing a slab (64 MiB took tens of milliseconds
     * inside a decode step here). Idempotent.
     */
    public synchronized void allocateAll() {
        checkOpen();
        for (int slab = 0; slab < slabs.length; slab++) slabFor(slab * slabBlocks);
    }

    /** A block with no reference: a freed one, a never used one, or the least recently used cached prefix. */
    private int take() {
        if (!free.isEmpty()) return free.pop();
        if (fresh < capacity) {
            slabFor(fresh);
            return fresh++;
        }
        var oldest = cached.iterator();
        int b = oldest.next();
        oldest.remove();
        registry.remove(registeredAs[b]);
        registration[b] = 0;
        registeredAs[b] = null;
        setFilled(b, 0);
        return b;
    }

    /**
     * Allocates the slab of block b if it is not there yet. An allocation the machine refuses is a
     * {@link KvCacheFullException} (nothing has changed yet: {@link #append} calls this first).
     */
    private void slabFor(int b) {
        int slab = b / slabBlocks;
        if (slabs[slab] != null) return;
        long blocks = Math.min(slabBlocks, capacity - (long) slab * slabBlocks);
        try {
            slabs[slab] = arena.allocateLarge(blocks * blockBytes); // huge pages where it can: blocks are read from all over it
        } catch (OutOfMemoryError e) {
            // malloc refused the slab: the cache's own budget was not reached, the machine's was
            refusals++;
            throw new KvCacheFullException("KV cache: the machine refused " + OffHeap.format(blocks * blockBytes) + " for a slab of "
                    + blocks + " blocks (" + e.getMessage() + "); " + stats(), (int) blocks, 0);
        }
    }

    private void retain(int b) {
        if (refs[b] == 0) {
            cached.remove(b);
            used++;
            wastedSlots += shape.blockSize() - filled[b];
        } else if (refs[b] == 1) {
            shared++;
        }
        refs[b]++;
    }

    private void release(int b) {
        refs[b]--;
        if (refs[b] == 1) shared--;
        if (refs[b] > 0) return;
        used--;
        wastedSlots -= shape.blockSize() - filled[b];
        if (registration[b] != 0) {
            cached.add(b);
        } else {
            setFilled(b, 0);
            free.push(b);
        }
    }

    private void setFilled(int b, int slots) {
        if (refs[b] > 0) wastedSlots += filled[b] - slots;
        filled[b] = slots;
    }

    // ---- reading and writing keys and values ----------------------------------------------

    /** The slab that holds block b (every address below is a byte offset into it). */
    public MemorySegment slab(int block) {
        checkBlock(block);
        return slabs[block / slabBlocks];
    }

    /** Refuses −1 (an evicted block of {@link #blockTable}) and numbers past the cache's blocks: native reads check nothing else. */
    private void checkBlock(int block) {
        if (block < 0 || block >= capacity) {
            throw new IllegalArgumentException("block " + block + " is not a block of this cache (" + capacity + " blocks"
                    + (block == -1 ? "; −1 marks an evicted block" : "") + ")");
        }
    }

    private void checkHead(int layer, int g) {
        if (layer < 0 || layer >= shape.layers() || g < 0 || g >= shape.kvHeads()) {
            throw new IllegalArgumentException("layer " + layer + ", head " + g + " outside the cache's " + shape.layers()
                    + " layers of " + shape.kvHeads() + " heads");
        }
    }

    /**
     * Byte offset of part {@code part} of block b in its slab: the part's region (as many parts as
     * the slab holds blocks: the last slab may hold fewer), then the block's place in it.
     */
    private long address(int block, int part) {
        int slab = block / slabBlocks, blocksInSlab = Math.min(slabBlocks, capacity - slab * slabBlocks);
        return ((long) part * blocksInSlab + block % slabBlocks) * shape.partBytes();
    }

    /** Byte offset in {@link #slab} of block b's Kᵀ (headDim, blockSize) of layer l, head g. */
    public long keys(int block, int layer, int g) {
        checkBlock(block);
        checkHead(layer, g);
        return address(block, 2 * (layer * shape.kvHeads() + g));
    }

    /** Features per tile of a block's V part (see the class comment). */
    public static final int VALUE_TILE = 64;

    /**
     * Element index, within a block's V part of head dim d and block size bs, of feature f of token
     * slot t: the tiles of {@value #VALUE_TILE} features, token-major within each.
     */
    public static long valueElement(int d, int bs, int t, int f) {
        int c = f / VALUE_TILE, first = c * VALUE_TILE, width = Math.min(VALUE_TILE, d - first);
        return (long) first * bs + (long) t * width + (f - first);
    }

    /** Byte offset in {@link #slab} of block b's V (blockSize, headDim, in tiles: {@link #valueElement}) of layer l, head g. */
    public long values(int block, int layer, int g) {
        checkBlock(block);
        checkHead(layer, g);
        return address(block, 2 * (layer * shape.kvHeads() + g) + 1);
    }

    /** Byte offset of block b's key scales (int8: blockSize floats) of layer l, head g. */
    public long keyScales(int block, int layer, int g) {
        return keys(block, layer, g) + (long) shape.headDim() * shape.blockSize() * shape.dtype().bytes();
    }

    /** Byte offset of block b's value scales (int8: blockSize floats) of layer l, head g. */
    public long valueScales(int block, int layer, int g) {
        return values(block, layer, g) + (long) shape.headDim() * shape.blockSize() * shape.dtype().bytes();
    }

    /** A copy of sequence s's block table: physical block per logical block, −1 where evicted. */
    public synchronized int[] blockTable(int s) {
        Sequence seq = seq(s);
        return Arrays.copyOf(seq.table, seq.blocks);
    }

    /**
     * Writes layer {@code layer}'s keys and values of tokens [from, from + n) of sequence s: keys
     * from columns [c0, c0 + n) of {@code kT}, (G·d, ·) features × tokens, values from rows
     * [r0, r0 + n) of {@code v}, (·, G·d) tokens × features. The slots must have been reserved by
     * {@link #append} (which made their blocks this sequence's own). float32 is copied in runs;
     * float16 and int8 are converted element by element.
     */
    public void write(int s, int layer, int from, int n, Matrix kT, int c0, Matrix v, int r0) {
        int[] table;
        int bs = shape.blockSize(), d = shape.headDim(), G = shape.kvHeads();
        synchronized (this) {
            checkOpen();
            Sequence seq = seq(s);
            if (layer < 0 || layer >= shape.layers()) throw new IllegalArgumentException("layer " + layer + " outside [0, " + shape.layers() + ")");
            if (from < 0 || n < 0 || from + n > seq.length) {
                throw new IllegalArgumentException("tokens [" + from + ", " + (from + n) + ") were not appended to sequence " + s
                        + " of " + seq.length);
            }
            if (kT.rows() != G * d || kT.cols() < c0 + n || v.cols() != G * d || v.rows() < r0 + n) {
                throw new IllegalArgumentException("keys " + kT + " must be (G·d = " + G * d + ", ≥ " + (c0 + n) + ") and values "
                        + v + " (≥ " + (r0 + n) + ", " + G * d + ")");
            }
            table = Arrays.copyOf(seq.table, seq.blocks);
            for (long k = from / bs; k < shape.blocksFor(from + n); k++) {
                if (!writable(table[(int) k])) {
                    throw new IllegalStateException("block " + k + " of sequence " + s + " is shared or registered; append "
                            + "reserves (and copies) blocks before they are written");
                }
            }
        }
        long clipped = 0;
        for (int pos = from; pos < from + n; ) {
            int block = table[pos / bs], slot = pos % bs, run = Math.min(bs - slot, from + n - pos), t = pos - from;
            MemorySegment mem = slab(block);
            for (int g = 0; g < G; g++) {
                long keys = keys(block, layer, g), values = values(block, layer, g);
                if (shape.dtype() == KvDtype.F32) {
                    for (int f = 0; f < d; f++) {         // Kᵀ row f: a run of tokens, contiguous on both sides
                        MemorySegment.copy(kT.segment(), kT.index(g * d + f, c0 + t) * Float.BYTES, mem,
                                keys + ((long) f * bs + slot) * Float.BYTES, (long) run * Float.BYTES);
                    }
                    for (int u = 0; u < run; u++) {       // V row of each token: its part in each tile, contiguous on both sides
                        for (int f = 0; f < d; f += VALUE_TILE) {
                            MemorySegment.copy(v.segment(), v.index(r0 + t + u, g * d + f) * Float.BYTES, mem,
                                    values + valueElement(d, bs, slot + u, f) * Float.BYTES,
                                    (long) Math.min(VALUE_TILE, d - f) * Float.BYTES);
                        }
                    }
                    continue;
                }
                long keyScales = keyScales(block, layer, g), valueScales = valueScales(block, layer, g);
                for (int u = 0; u < run; u++) {
                    clipped += store(kT.segment(), kT.index(g * d, c0 + t + u), kT.ld(), mem, keys, slot + u, false, keyScales);
                    clipped += store(v.segment(), v.index(r0 + t + u, g * d), 1, mem, values, slot + u, true, valueScales);
                }
            }
            pos += run;
        }
        synchronized (this) {
            saturated += clipped;
            // the layer's written mark moves only over slots written contiguously from its start
            Sequence seq = sequences.get(s);
            if (seq != null && from <= seq.written[layer]) seq.written[layer] = Math.max(seq.written[layer], Math.min(from + n, seq.length));
        }
    }

    /**
     * Undoes a step that failed before every layer wrote it (cancelled, non-finite, out of
     * memory): each of its sequences is cut back to where the step started, so no slot it
     * reserved is ever read or registered. A step whose sequences have since changed is refused.
     */
    public synchronized void rollback(Step step) {
        checkOpen();
        if (!step.of(this)) throw new IllegalArgumentException("the step " + step + " was reserved in another KV cache");
        for (int i = 0; i < step.size(); i++) {
            Sequence seq = sequences.get(step.sequence(i));
            if (seq == null) continue; // already freed
            if (seq.length != step.keys(i)) {
                throw new IllegalStateException("sequence " + step.sequence(i) + " holds " + seq.length + " tokens, not the "
                        + step.keys(i) + " this step left it with: it changed since, and cannot be rolled back");
            }
        }
        for (int i = 0; i < step.size(); i++) {
            if (sequences.containsKey(step.sequence(i))) truncate(step.sequence(i), step.start(i));
        }
    }

    /**
     * Stores d floats of {@code src} (float index {@code first}, then every {@code stride}) as token
     * slot {@code slot} of a block's K part (feature f at f·blockSize + slot) or V part
     * ({@link #valueElement}), in elements of the dtype from byte offset {@code elements} of
     * {@code mem}; int8 puts the slot's scale (max |x| / 127) at byte offset {@code scales} + 4·slot.
     * Returns how many values float16 clipped to ±65504.
     */
    private int store(MemorySegment src, long first, long stride, MemorySegment mem, long elements, int slot, boolean value,
                      long scales) {
        int d = shape.headDim(), clipped = 0;
        switch (shape.dtype()) {
            case F32 -> throw new IllegalStateException("float32 keys and values are copied in runs, not stored one by one");
            case F16 -> {
                for (int f = 0; f < d; f++) {
                    float x = src.getAtIndex(F, first + f * stride);
                    if (Math.abs(x) > 65504f && Float.isFinite(x)) { // ±∞ and NaN stay what they are, for finite checks to see
                        x = Math.copySign(65504f, x);
                        clipped++;
                    }
                    mem.set(S, elements + element(slot, f, value) * 2, Float.floatToFloat16(x));
                }
            }
            case INT8 -> {
                float max = 0;
                for (int f = 0; f < d; f++) max = Math.max(max, Math.abs(src.getAtIndex(F, first + f * stride)));
                float scale = max / 127f, inverse = max == 0 ? 0 : 127f / max;
                mem.set(F, scales + (long) slot * Float.BYTES, scale);
                for (int f = 0; f < d; f++) {
                    int q = Math.round(src.getAtIndex(F, first + f * stride) * inverse);
                    mem.set(ValueLayout.JAVA_BYTE, elements + element(slot, f, value), (byte) Math.clamp(q, -127, 127));
                }
            }
        }
        return clipped;
    }

    /**
     * Reads layer {@code layer} / head g's keys and values of tokens [from, to) of sequence s, as
     * float32 (dequantised): keys into {@code kT}, (d, to − from), values into {@code v},
     * (to − from, d). Tokens of evicted blocks read as 0.
     */
    public void gather(int s, int layer, int g, int from, int to, Matrix kT, Matrix v) {
        int[] table;
        synchronized (this) {
            checkOpen();
            Sequence seq = seq(s);
            if (from < 0 || from > to || to > seq.length) {
                throw new IllegalArgumentException("cannot gather tokens [" + from + ", " + to + ") of sequence " + s + " of "
                        + seq.length + " tokens");
            }
            checkHead(layer, g);
            table = Arrays.copyOf(seq.table, seq.blocks);
        }
        int bs = shape.blockSize(), d = shape.headDim();
        if (kT.rows() != d || kT.cols() != to - from || v.rows() != to - from || v.cols() != d) {
            throw new IllegalArgumentException("gather of " + (to - from) + " tokens needs keys (" + d + ", " + (to - from)
                    + ") and values (" + (to - from) + ", " + d + "), got " + kT + " and " + v);
        }
        for (int pos = from; pos < to; ) {
            int slot = pos % bs, run = Math.min(bs - slot, to - pos), col = pos - from, block = table[pos / bs];
            if (block < 0) {
                for (int f = 0; f < d; f++) for (int t = 0; t < run; t++) kT.set(f, col + t, 0f);
                for (int t = 0; t < run; t++) for (int f = 0; f < d; f++) v.set(col + t, f, 0f);
                pos += run;
                continue;
            }
            MemorySegment mem = slab(block);
            long keys = keys(block, layer, g), values = values(block, layer, g);
            long ks = keyScales(block, layer, g), vs = valueScales(block, layer, g);
            if (shape.dtype() == KvDtype.F32) {
                for (int f = 0; f < d; f++) {
                    MemorySegment.copy(mem, keys + ((long) f * bs + slot) * Float.BYTES, kT.segment(), kT.index(f, col) * Float.BYTES,
                            (long) run * Float.BYTES);
                }
                for (int t = 0; t < run; t++) {
                    for (int f = 0; f < d; f += VALUE_TILE) {
                        MemorySegment.copy(mem, values + valueElement(d, bs, slot + t, f) * Float.BYTES, v.segment(),
                                v.index(col + t, f) * Float.BYTES, (long) Math.min(VALUE_TILE, d - f) * Float.BYTES);
                    }
                }
            } else {
                for (int f = 0; f < d; f++) {
                    for (int t = 0; t < run; t++) kT.set(f, col + t, load(mem, keys, (long) f * bs + slot + t, ks, slot + t));
                }
                for (int t = 0; t < run; t++) {
                    for (int f = 0; f < d; f++) v.set(col + t, f, load(mem, values, valueElement(d, bs, slot + t, f), vs, slot + t));
                }
            }
            pos += run;
        }
    }

    /** Element index of feature f of token slot {@code slot} in a block's K part, or its V part when {@code value}. */
    private long element(int slot, int f, boolean value) {
        return value ? valueElement(shape.headDim(), shape.blockSize(), slot, f) : (long) f * shape.blockSize() + slot;
    }

    /** Element i (of the dtype) from byte offset {@code at}, dequantised with the scale of {@code slot}. */
    private float load(MemorySegment mem, long at, long i, long scales, int slot) {
        return switch (shape.dtype()) {
            case F32 -> mem.get(F, at + i * Float.BYTES);
            case F16 -> Float.float16ToFloat(mem.get(S, at + i * 2));
            case INT8 -> mem.get(ValueLayout.JAVA_BYTE, at + i) * mem.get(F, scales + (long) slot * Float.BYTES);
        };
    }

    // ---- accounting -----------------------------------------------------------------------

    /** References to block b (for tests of the bookkeeping). */
    synchronized int references(int block) {
        return refs[block];
    }

    /** The cache's accounting now. */
    public synchronized Stats stats() {
        int freeBlocks = capacity - used - cached.size();
        return new Stats(capacity, blockBytes, arena.allocatedBytes(), used, shared, cached.size(), freeBlocks,
                sequences.size(), tokens, (long) (wastedSlots * shape.bytesPerToken()), refusals, saturated);
    }

    @Override
    public long reservedBytes() {
        return (long) capacity * blockBytes;
    }

    @Override
    public synchronized long usedBytes() {
        return used * blockBytes;
    }

    @Override
    public synchronized long sharedBytes() {
        return shared * blockBytes;
    }

    @Override
    public synchronized long wastedBytes() {
        return (long) (wastedSlots * shape.bytesPerToken());
    }

    private void emitEvent() {
        KvCacheEvent e = new KvCacheEvent();
        if (!e.shouldCommit()) return;
        Stats st;
        synchronized (this) {
            if (closed) return;
            st = stats();
        }
        e.cache = id;
        e.blockSize = shape.blockSize();
        e.sequences = st.sequences();
        e.reservedBytes = st.reservedBytes();
        e.allocatedBytes = st.allocatedBytes();
        e.usedBytes = st.usedBytes();
        e.sharedBytes = st.sharedBytes();
        e.cachedBytes = st.cachedBytes();
        e.wastedBytes = st.wastedBytes();
        e.refusals = st.refusals();
        e.commit();
    }

    /** Frees all of the cache's memory; every sequence ends. */
    @Override
    public synchronized void close() {
        if (closed) return;
        emitEvent();
        closed = true;
        OPEN.remove(this);
        OffHeap.unregister(this);
        sequences.clear();
        arena.close();
    }

    @Override
    public String toString() {
        return "KvCache(" + shape + ", " + capacity + " blocks of " + OffHeap.format(blockBytes) + ")";
    }
}
