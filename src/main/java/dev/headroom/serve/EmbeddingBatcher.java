package dev.headroom.serve;

import dev.headroom.memory.TrackedArena;
import dev.headroom.model.minilm.EncoderWorkspace;
import dev.headroom.model.minilm.MiniLmEncoder;
import dev.headroom.tensor.Tensor;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Dynamic batching of sentence embeddings: requests from many threads are collected for at most
 * {@code maxWait} after the first of a batch arrives, or until {@value #MAX_BATCH} sentences are
 * in, and go through the encoder as one {@link MiniLmEncoder#embed} call (sorted by length,
 * padded to the longest of each forward, exactly as {@code headroom embed} embeds a list); each
 * caller gets its own rows back.
 *
 * <p><b>Numbers.</b> A request that is batched alone gets bitwise what {@code headroom embed}
 * gives for the same sentences in the same order. Batched with others, a sentence may be padded
 * to another length, which changes the last bits of its embedding (the encoder's comment on
 * {@link MiniLmEncoder#MAX_USEFUL_BATCH}); {@code EmbeddingBatcherTest} bounds the difference.
 *
 * <p>One batcher thread runs the encoder; callers block in {@link #embed} (virtual threads, in the
 * server). At most {@code maxPending} sentences may wait; more are refused with
 * {@link QueueFullException}.
 */
public final class EmbeddingBatcher implements AutoCloseable {
    /** Sentences per forward call: the encoder's most useful batch. */
    public static final int MAX_BATCH = MiniLmEncoder.MAX_USEFUL_BATCH;

    /** Counts since the start: calls, sentences, batches (each one {@link MiniLmEncoder#embed} call); sentences waiting now. */
    public record Stats(long requests, long sentences, long batches, int pendingSentences) {}

    private record Pending(List<String> sentences, CompletableFuture<float[][]> result) {}

    private final MiniLmEncoder encoder;
    private final long maxWaitNanos;
    private final int maxPending;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition arrived = lock.newCondition();
    /** Requests not yet taken into a batch (guarded by lock). */
    private final ArrayDeque<Pending> queue = new ArrayDeque<>();
    private int pendingSentences;
    private boolean closed;
    private final Thread thread;
    private final AtomicLong requests = new AtomicLong(), sentences = new AtomicLong(), batches = new AtomicLong();

    /** A batcher over {@code encoder} (the caller's: it closes it after this). */
    public EmbeddingBatcher(MiniLmEncoder encoder, Duration maxWait, int maxPending) {
        if (maxWait.isNegative()) throw new IllegalArgumentException("the batching wait must be >= 0, got " + maxWait);
        if (maxPending < 1) throw new IllegalArgumentException("max pending sentences must be >= 1, got " + maxPending);
        this.encoder = encoder;
        this.maxWaitNanos = maxWait.toNanos();
        this.maxPending = maxPending;
        this.thread = Thread.ofPlatform().name("headroom-embeddings").daemon(true).start(this::loop);
    }

    public MiniLmEncoder encoder() {
        return encoder;
    }

    /** Tokens the encoder sees for {@code sentence} ([CLS] and [SEP] included, after truncation). */
    public int tokens(String sentence) {
        return encoder.tokenizer().encode(sentence).length;
    }

    /**
     * The L2-normalised embedding of each sentence, (count)(E), once its batch has run.
     *
     * @throws QueueFullException   too many sentences are waiting
     * @throws InterruptedException the caller was interrupted while waiting (the sentences are still embedded)
     */
    public float[][] embed(List<String> input) throws InterruptedException {
        if (input.isEmpty()) return new float[0][];
        CompletableFuture<float[][]> result = new CompletableFuture<>();
        lock.lock();
        try {
            if (closed) throw new IllegalStateException("the embedding batcher is closed");
            if (pendingSentences + input.size() > maxPending && pendingSentences > 0) {
                throw new QueueFullException("the server is busy: " + pendingSentences + " sentences are waiting to be embedded (at most "
                        + maxPending + "); retry later", pendingSentences, maxPending);
            }
            queue.addLast(new Pending(List.copyOf(input), result));
            pendingSentences += input.size();
            arrived.signalAll();
        } finally {
            lock.unlock();
        }
        try {
            return result.get();
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            throw new IllegalStateException("embedding failed: " + e.getCause(), e.getCause());
        }
    }

    public Stats stats() {
        lock.lock();
        try {
            return new Stats(requests.get(), sentences.get(), batches.get(), pendingSentences);
        } finally {
            lock.unlock();
        }
    }

    private void loop() {
        try (EncoderWorkspace ws = new EncoderWorkspace()) {
            while (true) {
                List<Pending> batch = collect();
                if (batch == null) return;
                run(batch, ws);
            }
        }
    }

    /** The next batch: the first waiting request, then more until {@value #MAX_BATCH} sentences or the wait ends; null once closed. */
    private List<Pending> collect() {
        lock.lock();
        try {
            while (queue.isEmpty() && !closed) arrived.awaitUninterruptibly();
            if (closed) return null;
            List<Pending> batch = new ArrayList<>();
            int n = 0;
            long deadline = System.nanoTime() + maxWaitNanos;
            while (true) {
                Pending next = queue.peekFirst();
                if (next != null && (n == 0 || n + next.sentences().size() <= MAX_BATCH)) {
                    queue.removeFirst();
                    batch.add(next);
                    n += next.sentences().size();
                    pendingSentences -= next.sentences().size();
                    if (n >= MAX_BATCH) break;
                    continue;
                }
                if (next != null) break; // the next one would overfill the batch: it starts the following one
                long left = deadline - System.nanoTime();
                if (left <= 0 || closed) break;
                try {
                    arrived.awaitNanos(left);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    break;
                }
            }
            return batch;
        } finally {
            lock.unlock();
        }
    }

    /** One encoder call over every sentence of the batch; each request gets its rows. */
    private void run(List<Pending> batch, EncoderWorkspace ws) {
        List<String> all = new ArrayList<>();
        for (Pending p : batch) all.addAll(p.sentences());
        int E = encoder.config().hidden();
        try (TrackedArena arena = TrackedArena.ofConfined()) {
            /* (all sentences, E): the batch's embeddings, copied out per request below. */
            Tensor out = Tensor.allocate(arena, all.size(), E);
            encoder.embed(all, out, ws, MAX_BATCH);
            int row = 0;
            for (Pending p : batch) {
                float[][] mine = new float[p.sentences().size()][E];
                for (float[] v : mine) {
                    for (int j = 0; j < E; j++) v[j] = out.at(row, j);
                    row++;
                }
                p.result().complete(mine);
            }
            requests.addAndGet(batch.size());
            sentences.addAndGet(all.size());
            batches.incrementAndGet();
        } catch (RuntimeException e) {
            for (Pending p : batch) p.result().completeExceptionally(e);
        }
    }

    /** Stops the batcher thread; requests still waiting fail. The encoder is the caller's to close, after this. */
    @Override
    public void close() {
        List<Pending> left;
        lock.lock();
        try {
            if (closed) return;
            closed = true;
            left = new ArrayList<>(queue);
            queue.clear();
            pendingSentences = 0;
            arrived.signalAll();
        } finally {
            lock.unlock();
        }
        for (Pending p : left) p.result().completeExceptionally(new IllegalStateException("the embedding batcher was closed"));
        boolean interrupted = false;
        while (thread.isAlive()) {
            try {
                thread.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }
}
