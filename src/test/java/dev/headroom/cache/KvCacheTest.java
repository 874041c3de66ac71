package dev.headroom.cache;

import dev.headroom.memory.OffHeap;
import dev.headroom.memory.TrackedArena;
import dev.headroom.tensor.Matrix;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The block bookkeeping of the paged KV cache: references, copy-on-write, prefix reuse, budget, memory. */
class KvCacheTest {
    static final KvCache.Shape SHAPE = new KvCache.Shape(2, 2, 4, 4, KvDtype.F32);

    @Test
    void blockLayoutAndBudget() {
        // (2 layers · 2 heads) · (K 4×4 + V 4×4 floats) = 4 · 128 B = 512 B per block
        assertEquals(512, SHAPE.blockBytes());
        assertEquals(128.0, SHAPE.bytesPerToken());
        KvCache.Shape int8 = new KvCache.Shape(2, 2, 4, 4, KvDtype.INT8);
        assertEquals(8 * 64, int8.blockBytes()); // 8 parts of 4·4 bytes and 4 scales, each rounded up to 64 B
        assertEquals(2, KvCache.sequencesThatFit(SHAPE, 10 * 512, 13)); // 13 tokens take 4 blocks: 10 blocks hold 2 such sequences
    }

    @Test
    void anAppendThatDoesNotFitChangesNothing() {
        try (KvCache cache = new KvCache(SHAPE, 5 * 512)) {
            int a = cache.create(), b = cache.create();
            cache.append(a, 9, null);                     // 3 blocks
            cache.append(b, 4, null);                     // 1 block
            KvCache.Stats before = cache.stats();
            int[] ta = cache.blockTable(a), tb = cache.blockTable(b);
            KvCacheFullException e = assertThrows(KvCacheFullException.class, () -> cache.append(new int[]{a, b}, new int[]{3, 5}, null));
            assertEquals(2, e.blocksNeeded());            // a: 12 tokens still fit in 3 blocks; b: 9 tokens need 2 more
            assertEquals(1, e.blocksAvailable());
            assertTrue(e.getMessage().contains("needs 2 blocks"), e.getMessage());
            KvCache.Stats after = cache.stats();
            assertEquals(before.usedBlocks(), after.usedBlocks());
            assertEquals(before.tokens(), after.tokens());
            assertEquals(before.refusals() + 1, after.refusals());
            assertEquals(9, cache.length(a));
            assertEquals(4, cache.length(b));
            assertArrayEquals(ta, cache.blockTable(a));
            assertArrayEquals(tb, cache.blockTable(b));
            cache.append(b, 4, null);                     // what does fit still works
        }
    }

    @Test
    void wasteAndSharingAreCounted() {
        try (KvCache cache = new KvCache(SHAPE, 100 * 512)) {
            int a = cache.create();
            cache.append(a, 5, null);                     // 2 blocks, 3 empty slots
            assertEquals(3 * 128, cache.stats().wastedBytes());
            int b = cache.fork(a);
            assertEquals(2, cache.stats().sharedBlocks());
            assertEquals(2, cache.stats().usedBlocks());
            cache.append(b, 1, null);                     // copies the shared half block
            assertEquals(1, cache.stats().sharedBlocks());
            assertEquals(3, cache.stats().usedBlocks());
            assertEquals((3 + 2) * 128, cache.stats().wastedBytes());
            assertEquals(3 * 512, OffHeap.kvCacheUsedBytes() - otherCaches(cache));
            cache.free(a);
            cache.free(b);
            assertEquals(0, cache.stats().usedBlocks());
            assertEquals(0, cache.stats().wastedBytes());
        }
    }

    /**
     * The capacity figures, from the cache's own accounting (no timing): 64 sequences
     * whose lengths are drawn uniformly from [256, 4096] waste at most 4 % of the memory they use
     * (a partly filled last block each); and 64 sequences that share a 1,000-token prefix use less
     * memory by the shared fraction when the prefix is reused.
     */
    @Test
    void wasteIsSmallAndASharedPrefixIsStoredOnce() {
        // fractions do not depend on layers or heads: a small block (1 KiB) keeps the test light
        KvCache.Shape shape = new KvCache.Shape(1, 1, 8, 16, KvDtype.F32);
        SplittableRandom rnd = new SplittableRandom(64);
        try (KvCache cache = new KvCache(shape, 64L * shape.blocksFor(4096) * shape.blockBytes())) {
            long tokens = 0;
            for (int s = 0; s < 64; s++) {
                int n = 256 + rnd.nextInt(4096 - 256 + 1);
                cache.append(cache.create(), n, null);
                tokens += n;
            }
            KvCache.Stats st = cache.stats();
            System.out.printf("64 sequences, %d tokens: %s used, %s wasted (%.2f%%)%n", tokens, OffHeap.format(st.usedBytes()),
                    OffHeap.format(st.wastedBytes()), 100 * st.wasteFraction());
            assertTrue(st.wasteFraction() <= 0.04, "waste " + st.wasteFraction());
            assertEquals(st.usedBlocks() * 16L - tokens, st.wastedBytes() / (long) shape.bytesPerToken(), "waste counts the empty slots");
        }
        int prefix = 1000, own = 200;
        long[] used = new long[2];
        for (int reuse = 0; reuse < 2; reuse++) {
            try (KvCache cache = new KvCache(shape, 64L * shape.blocksFor(prefix + own) * shape.blockBytes())) {
                for (int s = 0; s < 64; s++) {
                    int[] prompt = new int[prefix + own];
                    for (int t = 0; t < prompt.length; t++) prompt[t] = t < prefix ? t % 251 : 1000 + s;
                    int id = reuse == 1 ? cache.create(prompt) : cache.create();
                    int have = cache.length(id);
                    cache.append(id, prompt.length - have, java.util.Arrays.copyOfRange(prompt, have, prompt.length));
                    cache.seal(id); // keys and values written: its full blocks become reusable
                }
                used[reuse] = cache.stats().usedBytes();
            }
        }
        double saved = 1 - (double) used[1] / used[0];
        double sharedFraction = (double) (prefix / 16 * 16) / (prefix + own); // only whole blocks of the prefix are shared
        System.out.printf("64 sequences sharing a %d-token prefix: %s without reuse, %s with (%.1f%% less; the shared fraction of "
                + "each sequence is %.1f%%)%n", prefix, OffHeap.format(used[0]), OffHeap.format(used[1]), 100 * saved, 100 * sharedFraction);
        assertEquals(sharedFraction * 63 / 64, saved, 0.01, "the first sequence stores the prefix; the other 63 share it");
    }

    /** The cache's accounting shows in JDK Flight Recorder: a KvCache event per open cache, at every period and when it closes. */
    @Test
    void accountingIsRecordedByFlightRecorder(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        java.nio.file.Path file = dir.resolve("cache.jfr");
        try (jdk.jfr.Recording recording = new jdk.jfr.Recording()) {
            recording.enable(dev.headroom.jfr.KvCacheEvent.NAME).withPeriod(java.time.Duration.ofMillis(100));
            recording.start();
            try (KvCache cache = new KvCache(SHAPE, 10 * 512)) {
                int a = cache.create();
                cache.append(a, 9, null);
                cache.fork(a);
                Thread.sleep(300);
            }
            recording.stop();
            recording.dump(file);
        }
        List<jdk.jfr.consumer.RecordedEvent> events = jdk.jfr.consumer.RecordingFile.readAllEvents(file).stream()
                .filter(e -> e.getEventType().getName().equals(dev.headroom.jfr.KvCacheEvent.NAME)).toList();
        assertTrue(!events.isEmpty(), "KvCache events recorded");
        jdk.jfr.consumer.RecordedEvent last = events.getLast();
        assertEquals(3 * 512, last.getLong("usedBytes"));
        assertEquals(3 * 512, last.getLong("sharedBytes"));
        assertEquals(10 * 512, last.getLong("reservedBytes"));
        assertEquals(2, last.getInt("sequences"));
        assertEquals(3 * 128, last.getLong("wastedBytes"));
    }

    private static long otherCaches(KvCache mine) {
        return OffHeap.kvCacheUsedBytes() - mine.usedBytes();
    }

    /**
     * 10 000 random operations (create, create on a prompt, append with and without token ids,
     * fork, truncate, evict, free, seal) against a model of what every sequence holds: after each
     * one, every block's reference count equals the number of block tables that hold it, and the
     * used/shared counts agree; every 200 operations and at the end, every sequence reads back the
     * values written for its positions (so copy-on-write and prefix reuse never mix sequences up).
     * At the end every sequence is freed, the cache closed, and off-heap memory is back where it was.
     */
    @Test
    void randomOperationsKeepTheBookkeepingRight() {
        long baseline = OffHeap.currentBytes();
        SplittableRandom rnd = new SplittableRandom(2024);
        KvCache.Shape shape = new KvCache.Shape(1, 1, 2, 4, KvDtype.F32);
        // slabs of 7 blocks: 60 blocks make 8 full slabs and a last one of 4, so blocks cross slab borders
        try (Arena arena = TrackedArena.ofShared(); KvCache cache = new KvCache(shape, 60 * shape.blockBytes(), 7 * shape.blockBytes())) {
            Map<Integer, List<Float>> values = new HashMap<>();  // per sequence, the key written at each position (NaN: evicted)
            Map<Integer, List<Integer>> tokens = new HashMap<>(); // per sequence, token ids (null entries: unknown)
            Matrix kT = Matrix.of(arena.allocate(2 * 4 * 64), 0, 2, 64), vRows = Matrix.of(arena.allocate(2 * 4 * 64), 0, 64, 2);
            int refused = 0;
            for (int op = 0; op < 10_000; op++) {
                List<Integer> live = new ArrayList<>(values.keySet());
                int kind = live.isEmpty() ? 0 : rnd.nextInt(9);
                int s = live.isEmpty() ? -1 : live.get(rnd.nextInt(live.size()));
                try {
                    switch (kind) {
                        case 0 -> { values.put(cache.create(), new ArrayList<>()); tokens.put(lastId(values), new ArrayList<>()); }
                        case 1 -> { // a prompt over a tiny alphabet, so prefixes repeat
                            int[] prompt = new int[1 + rnd.nextInt(14)];
                            for (int t = 0; t < prompt.length; t++) prompt[t] = rnd.nextInt(2);
                            int id = cache.create(prompt);
                            List<Integer> tok = new ArrayList<>();
                            List<Float> val = new ArrayList<>();
                            for (int t = 0; t < cache.length(id); t++) {
                                tok.add(prompt[t]);
                                val.add(valueOf(tok));
                            }
                            values.put(id, val);
                            tokens.put(id, tok);
                        }
                        case 2, 3, 4 -> { // append 1–6 tokens, with ids when the sequence's ids are all known
                            int n = 1 + rnd.nextInt(6);
                            List<Integer> tok = tokens.get(s);
                            boolean known = tok != null && rnd.nextInt(5) > 0;
                            int[] ids = new int[n];
                            for (int t = 0; t < n; t++) ids[t] = rnd.nextInt(2);
                            int start = cache.append(s, n, known ? ids : null);
                            assertEquals(values.get(s).size(), start);
                            for (int t = 0; t < n; t++) {
                                float v;
                                if (known) {
                                    tok.add(ids[t]);
                                    v = valueOf(tok);
                                } else {
                                    tokens.put(s, null);
                                    v = 1000 + rnd.nextInt(1_000_000);
                                }
                                kT.set(0, t, v);
                                kT.set(1, t, -v);
                                vRows.set(t, 0, v + 0.5f);
                                vRows.set(t, 1, v - 0.5f);
                                values.get(s).add(v);
                            }
                            cache.write(s, 0, start, n, kT, 0, vRows, 0);
                        }
                        case 5 -> {
                            int f = cache.fork(s);
                            values.put(f, new ArrayList<>(values.get(s)));
                            tokens.put(f, tokens.get(s) == null ? null : new ArrayList<>(tokens.get(s)));
                        }
                        case 6 -> {
                            int len = rnd.nextInt(values.get(s).size() + 1);
                            if (rnd.nextInt(3) == 0) {
                                int from = rnd.nextInt(len + 1);
                                cache.evict(s, from, len);
                                int bs = shape.blockSize();
                                for (int k = (from + bs - 1) / bs; (k + 1) * bs <= len; k++) {
                                    for (int t = k * bs; t < (k + 1) * bs; t++) values.get(s).set(t, Float.NaN);
                                }
                            } else if (!values.get(s).contains(Float.NaN)) {
                                cache.truncate(s, len);
                                values.put(s, new ArrayList<>(values.get(s).subList(0, len)));
                                if (tokens.get(s) != null) tokens.put(s, new ArrayList<>(tokens.get(s).subList(0, len)));
                            }
                        }
                        case 7 -> {
                            cache.free(s);
                            values.remove(s);
                            tokens.remove(s);
                        }
                        default -> cache.seal(s);
                    }
                } catch (KvCacheFullException e) {
                    refused++;
                    if (values.size() > 3) { // make room, as a scheduler would preempt
                        cache.free(live.get(0));
                        values.remove(live.get(0));
                        tokens.remove(live.get(0));
                    }
                }
                checkReferences(cache, values.keySet());
                if (op % 200 == 0) checkValues(cache, values, arena);
            }
            checkValues(cache, values, arena);
            assertTrue(refused > 0, "the budget was reached at least once");
            for (int s : new ArrayList<>(values.keySet())) cache.free(s);
            assertEquals(0, cache.stats().usedBlocks());
            assertEquals(0, cache.stats().sequences());
        }
        assertEquals(baseline, OffHeap.currentBytes(), "all cache memory returned");
    }

    private static int lastId(Map<Integer, ?> m) {
        return m.keySet().stream().mapToInt(Integer::intValue).max().orElseThrow();
    }

    /** A value that depends only on the tokens up to this position: equal prefixes, equal keys (as in a model). */
    private static float valueOf(List<Integer> tokens) {
        return (float) (Math.floorMod(tokens.hashCode(), 999_983) + 1);
    }

    private static void checkReferences(KvCache cache, Iterable<Integer> live) {
        Map<Integer, Integer> expected = new HashMap<>();
        for (int s : live) for (int b : cache.blockTable(s)) if (b >= 0) expected.merge(b, 1, Integer::sum);
        KvCache.Stats st = cache.stats();
        for (int b = 0; b < st.capacityBlocks(); b++) {
            assertEquals(expected.getOrDefault(b, 0).intValue(), cache.references(b), "references of block " + b);
        }
        assertEquals(expected.size(), st.usedBlocks());
        assertEquals(expected.values().stream().filter(r -> r > 1).count(), st.sharedBlocks());
        assertEquals(st.capacityBlocks(), st.usedBlocks() + st.cachedBlocks() + st.freeBlocks());
    }

    private static void checkValues(KvCache cache, Map<Integer, List<Float>> values, Arena arena) {
        for (Map.Entry<Integer, List<Float>> e : values.entrySet()) {
            int n = e.getValue().size();
            if (n == 0) continue;
            Matrix k = Matrix.of(arena.allocate(8L * n), 0, 2, n), v = Matrix.of(arena.allocate(8L * n), 0, n, 2);
            cache.gather(e.getKey(), 0, 0, 0, n, k, v);
            for (int t = 0; t < n; t++) {
                float x = e.getValue().get(t);
                if (Float.isNaN(x)) continue; // evicted
                assertEquals(x, k.get(0, t), "sequence " + e.getKey() + " key at " + t + " of " + Arrays.toString(cache.blockTable(e.getKey())));
                assertEquals(-x, k.get(1, t));
                assertEquals(x + 0.5f, v.get(t, 0));
                assertEquals(x - 0.5f, v.get(t, 1));
            }
        }
    }
}
